"""Measure an H100 (or any CUDA GPU) for tilesim's validation: GEMMs, attention, bandwidth-bound ops, decoders.

    python benchmarks/hardware/measure_h100.py --out measurements.csv [--quick]

PyTorch only, random bf16 data (never zeros), medians of CUDA-event-timed repetitions after warm-up. Inputs smaller
than a few times the L2 are rotated among several copies so repeated runs do not measure the cache. Decode steps
are captured as CUDA graphs (as serving stacks do) and replayed. Board power is sampled with nvidia-smi every
50 ms in a background process for the whole run; J/token is the mean power over a timed decode loop times its
duration over the tokens it produced. Each row: group, case, shape fields, median/p10/p90 ms, derived rates.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

DT = torch.bfloat16
FIELDS = ["group", "case", "batch", "m", "n", "k", "heads", "kv_heads", "seq", "head_dim", "context",
          "median_ms", "p10_ms", "p90_ms", "tflops", "gb_s", "power_w", "j_per_token", "sm_clock_mhz", "note"]
L2_BYTES = 50 * 2**20


def timed(fn, reps: int, warmup: int = 3) -> list[float]:
    """Milliseconds of each of `reps` calls of fn, timed with CUDA events after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends, strict=False):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=False)]


def capture(call, n: int):
    """A CUDA graph of call(0) ... call(n-1) (after a warm-up of each on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(n):
            call(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(n):
            call(i)
    return graph


def graph_timed(call, reps: int, target_ms: float = 2.0) -> tuple[list[float], int]:
    """Milliseconds per call(i), with n calls (i = 0..n-1, so inputs can rotate) captured in one CUDA graph and
    the graph replayed `reps` times: launch gaps from Python would otherwise dominate kernels of tens of us.
    n is chosen so one replay lasts about target_ms (1 for long calls)."""
    rough = statistics.median(timed(lambda: call(0), 5, warmup=2))
    n = max(1, min(64, int(target_ms / max(rough, 1e-3))))
    graph = capture(call, n)
    per_call = [t / n for t in timed(graph.replay, reps)]
    del graph
    return per_call, n


def stats(ms: list[float]) -> dict:
    """Median and 10th/90th percentiles."""
    q = sorted(ms)
    pick = lambda p: q[min(len(q) - 1, int(p * (len(q) - 1) + 0.5))]   # noqa: E731
    return {"median_ms": statistics.median(q), "p10_ms": pick(0.1), "p90_ms": pick(0.9)}


def copies_for(nbytes: int) -> int:
    """How many copies of an input set to rotate so that their total is at least 4x the L2."""
    return max(1, min(16, math.ceil(4 * L2_BYTES / max(nbytes, 1))))


class Sampler:
    """nvidia-smi in the background: (unix time, board power W, SM clock MHz) every 50 ms."""

    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "w")
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=timestamp,power.draw,clocks.sm", "--format=csv,noheader,nounits",
                 "-lms", "50"], stdout=subprocess.PIPE, text=True, bufsize=1)
        except OSError:
            self.proc = None
        self.samples: list[tuple[float, float, float]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.proc:
            self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.time(), float(parts[1]), float(parts[2])))
                self.f.write(f"{time.time():.3f},{parts[1]},{parts[2]}\n")
            except (ValueError, IndexError):
                pass

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """Mean power (W) and SM clock (MHz) of the samples taken between t0 and t1 (nan if none)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if not inside:
            return float("nan"), float("nan")
        return statistics.mean(s[1] for s in inside), statistics.mean(s[2] for s in inside)

    def stop(self):
        if self.proc:
            self.proc.terminate()
        self.f.close()


class Out:
    """CSV writer that also prints each row (the `shown` columns, all by default)."""

    def __init__(self, path, fields=FIELDS, shown=None):
        self.fields, self.shown = list(fields), list(shown or fields)
        self.f = open(path, "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=self.fields)
        self.w.writeheader()

    def row(self, **kw):
        r = {k: kw.get(k, "") for k in self.fields}
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = f"{v:.6g}"
        self.w.writerow(r)
        self.f.flush()
        print(",".join(str(r[k]) for k in self.shown), flush=True)


# ---------------------------------------------------------------- GEMMs

def gemm(out: Out, sampler: Sampler, m: int, n: int, k: int, group: str, reps: int):
    """C[m,n] = A[m,k] @ B[k,n] in bf16 (B stored as a [n,k] weight, as nn.Linear does)."""
    nbytes = 2 * (m * k + n * k + m * n)
    c = copies_for(nbytes)
    a = [torch.randn(m, k, device="cuda", dtype=DT) for _ in range(c)]
    b = [torch.randn(n, k, device="cuda", dtype=DT) for _ in range(c)]
    t0 = time.time()
    per, calls = graph_timed(lambda i, a=a, b=b: F.linear(a[i % c], b[i % c]), reps)
    s = stats(per)
    power, clock = sampler.window(t0, time.time())
    ms = s["median_ms"]
    out.row(group=group, case=f"gemm_{m}x{n}x{k}", m=m, n=n, k=k, **s, tflops=2 * m * n * k / ms / 1e9,
            gb_s=nbytes / ms / 1e6, power_w=power, sm_clock_mhz=clock,
            note=f"{c} input sets rotated; {calls} calls per CUDA graph")
    del a, b


def ceilings(out: Out, sampler: Sampler):
    """Device-to-device copy bandwidth (read + write bytes) and a large bf16 GEMM."""
    x = torch.randn(1 << 30, device="cuda", dtype=DT)     # 2 GiB
    y = torch.empty_like(x)
    s = stats(timed(lambda x=x, y=y: y.copy_(x), 20))
    out.row(group="ceiling", case="copy_2GiB", **s, gb_s=2 * x.numel() * 2 / s["median_ms"] / 1e6,
            note="bytes read + written")
    del x, y
    gemm(out, sampler, 8192, 8192, 8192, "ceiling", 30)


# ---------------------------------------------------------------- attention

def attention(out: Out, sampler: Sampler, seqs: list[int], heads: int = 32, d: int = 128, batch: int = 1):
    """Non-causal attention, fused (SDPA, flash backend) vs unfused (QK^T, scale, softmax, PV as separate ops)."""
    scale = 1 / math.sqrt(d)
    for s_len in seqs:
        q, k, v = (torch.randn(batch, heads, s_len, d, device="cuda", dtype=DT) for _ in range(3))
        fused = lambda i=0, q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)  # noqa: E731

        def unfused(i=0, q=q, k=k, v=v):
            scores = torch.matmul(q, k.transpose(-2, -1))
            scores = scores * scale
            p = torch.softmax(scores, dim=-1)
            return torch.matmul(p, v)
        ref = unfused().float()
        err = (fused().float() - ref).norm() / ref.norm()
        reps = 50 if s_len <= 2048 else 10
        for name, fn in (("fused", fused), ("unfused", unfused)):
            per, calls = graph_timed(fn, reps)
            st = stats(per)
            out.row(group="attention", case=f"attn_{name}_S{s_len}", batch=batch, heads=heads, seq=s_len,
                    head_dim=d, **st, tflops=4 * batch * heads * s_len * s_len * d / st["median_ms"] / 1e9,
                    note=f"rel err vs unfused {float(err):.2e}; {calls} calls per CUDA graph")
        del q, k, v


# ---------------------------------------------------------------- bandwidth-bound ops

def vector_ops(out: Out, rows: int = 16384, cols: int = 4096):
    """copy, GELU, LayerNorm and softmax over a rows x cols bf16 tensor (128 MiB each way)."""
    x = torch.randn(rows, cols, device="cuda", dtype=DT)
    w, b = torch.randn(cols, device="cuda", dtype=DT), torch.randn(cols, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    ops = {"copy": lambda i, x=x, y=y: y.copy_(x), "gelu": lambda i, x=x: F.gelu(x),
           "layernorm": lambda i, x=x: F.layer_norm(x, (cols,), w, b),
           "softmax": lambda i, x=x: torch.softmax(x, dim=-1)}
    nbytes = 2 * 2 * rows * cols
    for name, fn in ops.items():
        per, _calls = graph_timed(fn, 50)
        st = stats(per)
        out.row(group="vector", case=f"{name}_{rows}x{cols}", m=rows, n=cols, **st, gb_s=nbytes / st["median_ms"] / 1e6,
                note="bytes = one read + one write")
    del x, y


# ---------------------------------------------------------------- decoders

MODELS = {
    # name: layers, hidden, heads, kv_heads, head_dim, ffn, vocab, act (gated)
    "llama2-7b": (32, 4096, 32, 32, 128, 11008, 32000, "silu"),
    "gemma-2b": (18, 2048, 8, 1, 256, 16384, 256000, "gelu"),
}


class Decoder:
    """A decoder-only transformer with random bf16 weights: RMSNorm, RoPE, GQA attention, gated FFN, LM head."""

    def __init__(self, name: str):
        L, h, nh, kvh, hd, ffn, vocab, act = MODELS[name]
        self.L, self.h, self.nh, self.kvh, self.hd, self.ffn, self.vocab, self.act = L, h, nh, kvh, hd, ffn, vocab, act
        g = lambda *s: torch.randn(*s, device="cuda", dtype=DT) * 0.02    # noqa: E731
        self.embed = g(vocab, h)
        self.layers = [{"ln1": torch.ones(h, device="cuda", dtype=DT), "ln2": torch.ones(h, device="cuda", dtype=DT),
                        "wqkv": g((nh + 2 * kvh) * hd, h), "wo": g(h, nh * hd), "w_gu": g(2 * ffn, h),
                        "w_down": g(h, ffn)}
                       for _ in range(L)]
        self.norm = torch.ones(h, device="cuda", dtype=DT)
        self.head = g(vocab, h) if name != "gemma-2b" else self.embed     # Gemma ties the embeddings
        self.weight_bytes = sum(t.numel() * 2 for lay in self.layers for t in lay.values()) + \
            self.embed.numel() * 2 + (0 if self.head is self.embed else self.head.numel() * 2)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device="cuda", dtype=torch.float32) / hd))
        self.inv_freq = inv

    def rope(self, x, pos):
        """Rotary embedding on [B, H, T, hd] at positions pos [T]."""
        f = torch.outer(pos.float(), self.inv_freq)
        cos, sin = f.cos().to(DT), f.sin().to(DT)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    def forward(self, tokens, cache, start: int, causal: bool):
        """Run tokens [B, T] at positions start..start+T-1, writing K/V into cache[layer] = (k, v) [B, kvh, ctx, hd];
        returns logits of the last position [B, vocab]."""
        B, T = tokens.shape
        x = self.embed[tokens]
        pos = torch.arange(start, start + T, device="cuda")
        for layer, p in enumerate(self.layers):
            y = F.rms_norm(x, (self.h,), p["ln1"])
            qkv = F.linear(y, p["wqkv"]).view(B, T, self.nh + 2 * self.kvh, self.hd).transpose(1, 2)
            q, k, v = qkv.split([self.nh, self.kvh, self.kvh], dim=1)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc, vc = cache[layer]
            kc[:, :, start:start + T] = k
            vc[:, :, start:start + T] = v
            kk, vv = kc[:, :, :start + T], vc[:, :, :start + T]
            a = F.scaled_dot_product_attention(q, kk, vv, is_causal=causal, enable_gqa=self.kvh != self.nh)
            x = x + F.linear(a.transpose(1, 2).reshape(B, T, self.nh * self.hd), p["wo"])
            y = F.rms_norm(x, (self.h,), p["ln2"])
            gate, up = F.linear(y, p["w_gu"]).chunk(2, dim=-1)
            act = F.silu(gate) if self.act == "silu" else F.gelu(gate, approximate="tanh")
            x = x + F.linear(act * up, p["w_down"])
        x = F.rms_norm(x[:, -1], (self.h,), self.norm)
        return F.linear(x, self.head)

    def cache(self, batch: int, ctx: int):
        """Random K/V cache with room for ctx tokens."""
        return [(torch.randn(batch, self.kvh, ctx, self.hd, device="cuda", dtype=DT),
                 torch.randn(batch, self.kvh, ctx, self.hd, device="cuda", dtype=DT)) for _ in range(self.L)]


def decoder_runs(out: Out, sampler: Sampler, name: str, prefill_lens: list[int], decode_cfgs: list[tuple[int, int]],
                 power_s: float):
    """Prefill latency at batch 1 and decode TPOT (CUDA graph per batch and context) with J/token."""
    m = Decoder(name)
    idle_t0 = time.time()
    torch.cuda.synchronize()
    time.sleep(1.0)
    idle_w, _ = sampler.window(idle_t0, time.time())
    with torch.inference_mode():
        for T in prefill_lens:
            cache = m.cache(1, T)
            tok = torch.randint(0, m.vocab, (1, T), device="cuda")
            per, _ = graph_timed(lambda i, m=m, tok=tok, cache=cache: m.forward(tok, cache, 0, True), 10,
                                  target_ms=0.0)
            st = stats(per)
            out.row(group="prefill", case=f"{name}_prefill_T{T}", batch=1, seq=T, **st,
                    tflops=2 * m.weight_bytes / 2 * T / st["median_ms"] / 1e9,
                    note=f"causal; CUDA graph; weights {m.weight_bytes} B")
            del cache
        for batch, ctx in decode_cfgs:
            cache = m.cache(batch, ctx + 1)
            tok = torch.randint(0, m.vocab, (batch, 1), device="cuda")
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    m.forward(tok, cache, ctx, False)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                m.forward(tok, cache, ctx, False)
            st = stats(timed(graph.replay, 30, warmup=3))
            steps = max(10, int(power_s * 1000 / st["median_ms"]))
            torch.cuda.synchronize()
            t0 = time.time()
            for _ in range(steps):
                graph.replay()
            torch.cuda.synchronize()
            t1 = time.time()
            power, clock = sampler.window(t0 + 0.2, t1)       # skip the ramp
            j_tok = power * (t1 - t0) / (steps * batch)
            kv = 2 * m.L * m.kvh * m.hd * 2 * ctx * batch
            out.row(group="decode", case=f"{name}_decode_B{batch}_C{ctx}", batch=batch, context=ctx, **st,
                    gb_s=(m.weight_bytes + kv) / st["median_ms"] / 1e6, power_w=power, j_per_token=j_tok,
                    sm_clock_mhz=clock, note=f"idle {idle_w:.0f} W; loop {(t1 - t0) / steps * 1e3:.4f} ms/step")
            del graph, cache
    del m
    torch.cuda.empty_cache()


def gemms(out: Out, sampler: Sampler, quick: bool):
    """Square, decode-like (M = 1..256, N = K = 4096) and prefill-like bf16 GEMMs."""
    for s in [256, 1024, 4096] if quick else [256, 512, 1024, 2048, 4096, 8192]:
        gemm(out, sampler, s, s, s, "gemm_square", 50)
    for mm in [1, 64] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]:
        gemm(out, sampler, mm, 4096, 4096, "gemm_decode", 100)
    prefill = [(2048, 4096, 4096)] if quick else [
        (512, 4096, 4096), (512, 11008, 4096), (512, 4096, 11008),
        (2048, 4096, 4096), (2048, 11008, 4096), (2048, 4096, 11008), (2048, 12288, 4096),
        (8192, 4096, 4096), (8192, 11008, 4096), (4096, 8192, 2048), (2048, 2048, 8192)]
    for mm, n, k in prefill:
        gemm(out, sampler, mm, n, k, "gemm_prefill", 30)


def decoders(out: Out, sampler: Sampler, quick: bool):
    """Both decoder shapes: prefill lengths and (batch, context) decode points."""
    for name in MODELS:
        decoder_runs(out, sampler, name, [128] if quick else [128, 512, 2048],
                     [(1, 512)] if quick else [(1, 512), (1, 2048), (8, 512), (8, 2048), (32, 512), (32, 2048)],
                     1.0 if quick else 2.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="measurements.csv")
    ap.add_argument("--power", default="power.csv")
    ap.add_argument("--quick", action="store_true", help="few shapes (to check the script)")
    ap.add_argument("--only", default="", help="comma-separated groups: ceiling,gemm,attention,vector,decoder")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
    props = torch.cuda.get_device_properties(0)
    print(f"# {props.name}, {props.multi_processor_count} SMs, L2 {props.L2_cache_size} B, "
          f"{props.total_memory / 2**30:.1f} GiB, torch {torch.__version__}", flush=True)
    out, sampler = Out(args.out), Sampler(args.power)
    t0 = time.time()
    time.sleep(3.0)                      # board power with nothing running (the CUDA context is up)
    idle_w, idle_clock = sampler.window(t0 + 0.5, time.time())
    out.row(group="idle", case="idle", power_w=idle_w, sm_clock_mhz=idle_clock, note="CUDA context up, no work")
    only = set(args.only.split(",")) if args.only else {"ceiling", "gemm", "attention", "vector", "decoder"}
    sections = {"ceiling": lambda: ceilings(out, sampler), "gemm": lambda: gemms(out, sampler, args.quick),
                "attention": lambda: attention(out, sampler,
                                               [512, 2048] if args.quick else [512, 1024, 2048, 4096, 8192]),
                "vector": lambda: vector_ops(out), "decoder": lambda: decoders(out, sampler, args.quick)}
    failed = 0
    try:
        for name, run in sections.items():
            if name not in only:
                continue
            try:
                run()
            except Exception as exc:        # keep measuring the other sections; the error is reported
                failed += 1
                print(f"# section {name} failed: {type(exc).__name__}: {exc}", flush=True)
                torch.cuda.empty_cache()
    finally:
        sampler.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
