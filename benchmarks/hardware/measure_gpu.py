"""Measure a Hopper GPU (H100, H200) for tilesim's silicon validation (issues 29 and 20) in one run of ~4 minutes.

    python benchmarks/hardware/measure_gpu.py --out-dir DIR [--quick]

Writes DIR/measurements.csv (one row per case), DIR/power_samples.csv (nvidia-smi every 50 ms) and DIR/gpu.txt
(card, driver, torch, date). PyTorch only, random data (never zeros), medians of CUDA-event-timed CUDA-graph
replays after warm-up (helpers from measure_h100.py). Groups:
- gemm_*: bf16 GEMMs C = A[M,K] @ W[N,K]^T: square, irregular, skinny (M = 1..256 on LLM weight shapes), LLM
  prefill shapes;
- attention: SDPA (fused) and the eager four-op chain (unfused), MHA and GQA (K/V repeated as eager code does);
- vector: copy, GELU, LayerNorm, softmax over 16384 x 4096;
- power: sustained loops (>= 2 s of work; the first 0.5 s skipped) with mean board power and SM clock: bf16 GEMMs
  8192^3/4096^3/2048^3, an fp8 GEMM, a 1 GiB copy, a GEMV, SDPA, softmax, LLM prefill and decode;
- prefill / decode: Llama-2-7B (MHA), Llama-3-8B (GQA) and Gemma-2B (MQA) shapes with random weights, written as a
  serving stack runs them: merged QKV and gate/up GEMMs, residual adds in the GEMM epilogue (addmm_), RoPE from
  precomputed tables on Q and K together, one K/V cache write per layer, SDPA (causal in prefill), the whole step
  captured in one CUDA graph. Decode at batch 1..64 and context 512..8192 with J/token from board power over a
  timed loop; prefill of 512..8192 tokens at batch 1 and batched.
"""
from __future__ import annotations

import argparse
import datetime
import math
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_h100 import Out, capture, copies_for, stats, timed

DT = torch.bfloat16
FIELDS = ["group", "case", "model", "batch", "m", "n", "k", "heads", "kv_heads", "seq", "head_dim", "context",
          "median_ms", "p10_ms", "p90_ms", "tflops", "gb_s", "power_w", "nvml_power_w", "j_per_token",
          "sm_clock_mhz", "mem_clock_mhz", "temp_c", "duration_s", "note"]
SMI_FULL = "timestamp,power.draw,clocks.sm,clocks.mem,temperature.gpu,power.draw.instant"
SMI_BASIC = "timestamp,power.draw,clocks.sm,clocks.mem,temperature.gpu"


class Sampler:
    """nvidia-smi in the background every 50 ms: (time, power W, SM MHz, memory MHz, temperature C)."""

    def __init__(self, path: Path):
        self.f = open(path, "w")
        fields = SMI_FULL if self._works(SMI_FULL) else SMI_BASIC
        self.f.write("unix_time," + fields.replace("timestamp,", "") + "\n")
        try:
            self.proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                                          "-lms", "50"], stdout=subprocess.PIPE, text=True, bufsize=1)
        except OSError:
            self.proc = None
        self.samples: list[tuple[float, ...]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.proc:
            self.thread.start()
        self.nvml = nvml_handle()

    @staticmethod
    def _works(fields: str) -> bool:
        try:
            r = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=20)
            return r.returncode == 0 and "N/A" not in r.stdout and "not a valid" not in r.stdout
        except (OSError, subprocess.SubprocessError):
            return False

    def _read(self):
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                now = time.time()
                self.samples.append((now, *(float(p) for p in parts[1:5])))
                self.f.write(f"{now:.3f}," + ",".join(parts[1:]) + "\n")
            except (ValueError, IndexError):
                pass

    def window(self, t0: float, t1: float) -> dict:
        """Mean power, SM and memory clock and temperature of the samples taken between t0 and t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if not inside:
            return {}
        mean = lambda i: statistics.mean(s[i] for s in inside)   # noqa: E731
        return {"power_w": mean(1), "sm_clock_mhz": mean(2), "mem_clock_mhz": mean(3), "temp_c": mean(4)}

    def energy_mj(self) -> float:
        """The board's energy counter (NVML, mJ), nan without NVML."""
        if self.nvml is None:
            return float("nan")
        try:
            import pynvml  # noqa: PLC0415 (optional dependency)
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.nvml))
        except Exception:
            return float("nan")

    def stop(self):
        if self.proc:
            self.proc.terminate()
        self.f.close()


def nvml_handle():
    """NVML handle of GPU 0, or None."""
    try:
        import pynvml  # noqa: PLC0415 (optional dependency)
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:
        return None


def graph_stats(call, reps: int, target_ms: float = 2.0) -> tuple[dict, object, int]:
    """Median/p10/p90 ms per call(i) from replays of a graph of n calls (n so one replay lasts ~target_ms)."""
    rough = statistics.median(timed(lambda: call(0), 3, warmup=1))
    n = max(1, min(64, int(target_ms / max(rough, 1e-3))))
    graph = capture(call, n)
    per = [t / n for t in timed(graph.replay, reps, warmup=2)]
    return stats(per), graph, n


class Ctx:
    """What every section needs: the CSV, the sampler, the mode."""

    def __init__(self, out: Out, sampler: Sampler, quick: bool):
        self.out, self.sampler, self.quick = out, sampler, quick
        self.min_context = 0            # > 0: only decode points at this context or more (a re-run of those)

    def sustain(self, replay, per_replay_ms: float, seconds: float | None = None) -> dict:
        """Replay for `seconds` (2.5 s; 0.6 s quick); mean power/clocks over all but the first 0.5 s."""
        seconds = seconds or (0.6 if self.quick else 2.5)
        n = max(3, int(seconds * 1000 / max(per_replay_ms, 1e-3)))
        torch.cuda.synchronize()
        t0, e0 = time.time(), self.sampler.energy_mj()
        for i in range(n):
            replay()
            if i % 64 == 63:             # keep the launch queue short so the host clock tracks the GPU
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        t1, e1 = time.time(), self.sampler.energy_mj()
        w = self.sampler.window(t0 + min(0.5, (t1 - t0) / 3), t1)
        w.update(duration_s=t1 - t0, nvml_power_w=(e1 - e0) / 1000 / (t1 - t0), loop_ms=(t1 - t0) * 1000 / n)
        return w


# ---------------------------------------------------------------- GEMMs

def gemm(ctx: Ctx, m: int, n: int, k: int, group: str, reps: int = 30):
    """bf16 C[m,n] = A[m,k] @ W[n,k]^T (nn.Linear), input sets rotated past the L2."""
    nbytes = 2 * (m * k + n * k + m * n)
    c = copies_for(nbytes)
    a = [torch.randn(m, k, device="cuda", dtype=DT) for _ in range(c)]
    b = [torch.randn(n, k, device="cuda", dtype=DT) for _ in range(c)]
    st, _graph, calls = graph_stats(lambda i: F.linear(a[i % c], b[i % c]), reps)
    ms = st["median_ms"]
    ctx.out.row(group=group, case=f"gemm_{m}x{n}x{k}", m=m, n=n, k=k, **st, tflops=2 * m * n * k / ms / 1e9,
                gb_s=nbytes / ms / 1e6, note=f"{c} input sets rotated; {calls} calls per CUDA graph")


SKINNY_NK = [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336), (2560, 2048), (32768, 2048)]
IRREGULAR = [(1000, 1000, 1000), (3000, 5000, 700), (777, 4096, 4096), (4095, 4097, 4096), (12345, 1234, 567),
             (100, 28672, 4096), (1536, 1536, 6144), (5000, 3000, 2000), (300, 12000, 4096), (9000, 9000, 256)]
LLM_PREFILL = [(512, 6144, 4096), (512, 28672, 4096), (512, 4096, 14336), (2048, 6144, 4096), (2048, 28672, 4096),
               (2048, 4096, 14336), (2048, 4096, 4096), (8192, 6144, 4096), (8192, 4096, 14336),
               (4096, 2560, 2048), (4096, 32768, 2048), (4096, 2048, 16384), (16384, 4096, 4096)]


def gemms(ctx: Ctx):
    """Square, irregular, skinny (M = 1..256) and LLM prefill-shaped bf16 GEMMs."""
    for s in [1024, 4096] if ctx.quick else [256, 512, 1024, 2048, 4096, 8192]:
        gemm(ctx, s, s, s, "gemm_square")
    for m, n, k in IRREGULAR[:2] if ctx.quick else IRREGULAR:
        gemm(ctx, m, n, k, "gemm_irregular")
    ms = [1, 64] if ctx.quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for n, k in SKINNY_NK[:2] if ctx.quick else SKINNY_NK:
        for m in ms:
            gemm(ctx, m, n, k, "gemm_skinny", 50)
    for m, n, k in LLM_PREFILL[:2] if ctx.quick else LLM_PREFILL:
        gemm(ctx, m, n, k, "gemm_llm", 20)
    torch.cuda.empty_cache()


# ---------------------------------------------------------------- attention

def attention_case(ctx: Ctx, batch: int, heads: int, kv_heads: int, s_len: int, d: int = 128):
    """Non-causal attention: SDPA (fused) vs QK^T, scale, softmax, PV (unfused; K/V repeated for GQA)."""
    scale = 1 / math.sqrt(d)
    q = torch.randn(batch, heads, s_len, d, device="cuda", dtype=DT)
    k, v = (torch.randn(batch, kv_heads, s_len, d, device="cuda", dtype=DT) for _ in range(2))
    g = heads // kv_heads

    def fused(i=0):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=g > 1)

    def unfused(i=0):
        kk, vv = (k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)) if g > 1 else (k, v)
        p = torch.softmax(torch.matmul(q, kk.transpose(-2, -1)) * scale, dim=-1)
        return torch.matmul(p, vv)
    ref = unfused().float()
    err = float((fused().float() - ref).norm() / ref.norm())
    for name, fn in (("fused", fused), ("unfused", unfused)):
        st, _graph, calls = graph_stats(fn, 20 if s_len <= 2048 else 6)
        ctx.out.row(group="attention", case=f"attn_{name}_B{batch}_H{heads}_KV{kv_heads}_S{s_len}", batch=batch,
                    heads=heads, kv_heads=kv_heads, seq=s_len, head_dim=d, **st,
                    tflops=4 * batch * heads * s_len * s_len * d / st["median_ms"] / 1e9,
                    note=f"rel err vs unfused {err:.2e}; {calls} calls per CUDA graph")
    torch.cuda.empty_cache()


def attentions(ctx: Ctx):
    """MHA at B=1 for S = 512 ... 8192, GQA 32/8 and MQA 8/1, batch 4."""
    cases = [(1, 32, 32, 512), (1, 32, 8, 2048)] if ctx.quick else [
        (1, 32, 32, 512), (1, 32, 32, 1024), (1, 32, 32, 2048), (1, 32, 32, 4096), (1, 32, 32, 8192),
        (4, 32, 32, 2048), (1, 32, 8, 512), (1, 32, 8, 2048), (1, 32, 8, 8192), (4, 32, 8, 2048)]
    for batch, heads, kvh, s_len in cases:
        attention_case(ctx, batch, heads, kvh, s_len)


def vector_ops(ctx: Ctx, rows: int = 16384, cols: int = 4096):
    """copy, GELU, LayerNorm and softmax over a rows x cols bf16 tensor (128 MiB each way)."""
    x = torch.randn(rows, cols, device="cuda", dtype=DT)
    w, b = torch.randn(cols, device="cuda", dtype=DT), torch.randn(cols, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    ops = {"copy": lambda i: y.copy_(x), "gelu": lambda i: F.gelu(x),
           "layernorm": lambda i: F.layer_norm(x, (cols,), w, b), "softmax": lambda i: torch.softmax(x, dim=-1)}
    for name, fn in ops.items():
        st, _graph, _calls = graph_stats(fn, 30)
        ctx.out.row(group="vector", case=f"{name}_{rows}x{cols}", m=rows, n=cols, **st,
                    gb_s=2 * 2 * rows * cols / st["median_ms"] / 1e6, note="bytes = one read + one write")


# ---------------------------------------------------------------- sustained loops (power, clock)

def power_loop(ctx: Ctx, case: str, call, flops: float = 0.0, nbytes: float = 0.0, **fields):
    """Time call(i) in a graph, then replay it for ~2.5 s and record mean board power and SM clock."""
    st, graph, calls = graph_stats(call, 10)
    w = ctx.sustain(graph.replay, st["median_ms"] * calls)
    ms = w.pop("loop_ms") / calls
    ctx.out.row(group="power", case=case, **fields, **st, **w,
                tflops=flops / ms / 1e9 if flops else "", gb_s=nbytes / ms / 1e6 if nbytes else "",
                note=f"sustained loop {ms:.5f} ms per call; {calls} calls per CUDA graph")


def gemm_loop(ctx: Ctx, s: int):
    """Sustained bf16 s^3 GEMM."""
    c = copies_for(6 * s * s)
    a = [torch.randn(s, s, device="cuda", dtype=DT) for _ in range(c)]
    b = [torch.randn(s, s, device="cuda", dtype=DT) for _ in range(c)]
    power_loop(ctx, f"gemm_bf16_{s}", lambda i: F.linear(a[i % c], b[i % c]), 2 * s**3, m=s, n=s, k=s)


def fp8_loop(ctx: Ctx, s: int = 8192):
    """Sustained fp8 (e4m3) s^3 GEMM through torch._scaled_mm, bf16 out."""
    a = (torch.randn(s, s, device="cuda") * 0.5).to(torch.float8_e4m3fn)
    b = (torch.randn(s, s, device="cuda") * 0.5).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0, device="cuda")
    power_loop(ctx, f"gemm_fp8_{s}", lambda i: torch._scaled_mm(a, b.t(), one, one, out_dtype=DT), 2 * s**3,
               m=s, n=s, k=s)


def power_loops(ctx: Ctx):
    """The sustained loops of issue 20 (LLM prefill and decode loops are in the decoder section)."""
    steps = {
        "gemm": lambda: [gemm_loop(ctx, s) for s in (8192, 4096, 2048)],
        "fp8": lambda: fp8_loop(ctx),
        "copy": lambda: copy_loop(ctx),
        "gemv": lambda: gemv_loop(ctx),
        "sdpa": lambda: sdpa_loop(ctx),
        "softmax": lambda: softmax_loop(ctx)}
    for name, step in steps.items():
        try:
            step()
        except Exception as exc:
            print(f"# power loop {name} failed: {type(exc).__name__}: {exc}", flush=True)
        torch.cuda.empty_cache()


def copy_loop(ctx: Ctx):
    """Sustained 1 GiB device-to-device copy (bytes read + written)."""
    x = torch.randn(2**29, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    power_loop(ctx, "copy_1GiB", lambda i: y.copy_(x), nbytes=2 * 2**30)


def gemv_loop(ctx: Ctx, n: int = 8192, k: int = 8192):
    """Sustained GEMV, x[1,k] @ W[n,k]^T, two weights rotated (128 MiB each)."""
    x = torch.randn(1, k, device="cuda", dtype=DT)
    w = [torch.randn(n, k, device="cuda", dtype=DT) for _ in range(2)]
    power_loop(ctx, f"gemv_1x{n}x{k}", lambda i: F.linear(x, w[i % 2]), 2 * n * k, 2 * n * k, m=1, n=n, k=k)


def sdpa_loop(ctx: Ctx, s: int = 4096):
    """Sustained SDPA, B=1, 32 heads, S=s, d=128, non-causal."""
    q, k, v = (torch.randn(1, 32, s, 128, device="cuda", dtype=DT) for _ in range(3))
    power_loop(ctx, f"sdpa_S{s}", lambda i: F.scaled_dot_product_attention(q, k, v), 4 * 32 * s * s * 128,
               heads=32, seq=s, head_dim=128)


def softmax_loop(ctx: Ctx, rows: int = 16384, cols: int = 4096):
    """Sustained softmax over rows x cols bf16 (one read, one write)."""
    x = torch.randn(rows, cols, device="cuda", dtype=DT)
    power_loop(ctx, f"softmax_{rows}x{cols}", lambda i: torch.softmax(x, dim=-1), nbytes=4 * rows * cols,
               m=rows, n=cols)


def ceilings(ctx: Ctx):
    """2 GiB device-to-device copy (bytes read + written): the memory bandwidth the presets use."""
    x = torch.randn(2**30, device="cuda", dtype=DT)
    y = torch.empty_like(x)
    st = stats(timed(lambda: y.copy_(x), 20))
    ctx.out.row(group="ceiling", case="copy_2GiB", **st, gb_s=2 * 2**31 / st["median_ms"] / 1e6,
                note="bytes read + written")
    torch.cuda.empty_cache()


# ---------------------------------------------------------------- decoders

MODELS = {
    # name: layers, hidden, heads, kv_heads, head_dim, ffn, vocab, activation, tied embeddings (tilesim's configs)
    "llama2-7b": (32, 4096, 32, 32, 128, 11008, 32000, "silu", False),
    "llama3-8b": (32, 4096, 32, 8, 128, 14336, 128256, "silu", False),
    "gemma-2b": (18, 2048, 8, 1, 256, 16384, 256000, "gelu", True),
}
MAX_POS = {"llama2-7b": 4096, "llama3-8b": 8192, "gemma-2b": 8192}


class Decoder:
    """A decoder-only transformer with random bf16 weights, laid out as a serving stack runs it."""

    def __init__(self, name: str, stack: str = "eager"):
        L, h, nh, kvh, hd, ffn, vocab, act, tied = MODELS[name]
        self.name, self.L, self.h, self.nh, self.kvh, self.hd = name, L, h, nh, kvh, hd
        self.stack = stack
        self.ffn, self.vocab, self.act = ffn, vocab, act
        g = lambda *s: torch.randn(*s, device="cuda", dtype=DT) * 0.02    # noqa: E731
        self.embed = g(vocab, h)
        self.layers = [{"ln1": torch.ones(h, device="cuda", dtype=DT), "ln2": torch.ones(h, device="cuda", dtype=DT),
                        "wqkv": g((nh + 2 * kvh) * hd, h), "wo": g(h, nh * hd), "w_gu": g(2 * ffn, h),
                        "w_down": g(h, ffn)} for _ in range(L)]
        self.norm = torch.ones(h, device="cuda", dtype=DT)
        self.head = self.embed if tied else g(vocab, h)
        self.weight_bytes = sum(t.numel() * 2 for lay in self.layers for t in lay.values()) + \
            self.embed.numel() * 2 + (0 if tied else self.head.numel() * 2)
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device="cuda", dtype=torch.float32) / hd))
        f = torch.outer(torch.arange(MAX_POS[name] + 1, device="cuda", dtype=torch.float32), inv)
        f = torch.cat((f, f), dim=-1)
        self.cos, self.sin = f.cos().to(DT), f.sin().to(DT)

    def kv_bytes(self, batch: int, ctx: int) -> int:
        """Bytes of a K/V cache with room for ctx tokens."""
        return 2 * self.L * batch * ctx * self.kvh * self.hd * 2

    def cache(self, batch: int, ctx: int):
        """Random K/V cache: per layer one [B, ctx, 2, kv_heads, hd] tensor (K and V of a token side by side)."""
        return [torch.randn(batch, ctx, 2, self.kvh, self.hd, device="cuda", dtype=DT) for _ in range(self.L)]

    def forward(self, tokens, cache, start: int):
        """Tokens [B, T] at positions start..start+T-1 (causal when T > 1); logits of the last position."""
        if self.stack == "fused":
            return self.forward_fused(tokens, cache, start)
        B, T = tokens.shape
        nh, kvh, hd = self.nh, self.kvh, self.hd
        x = self.embed[tokens]                                           # [B, T, h], a fresh tensor
        x2 = x.view(B * T, self.h)
        cos, sin = self.cos[start:start + T].view(1, T, 1, hd), self.sin[start:start + T].view(1, T, 1, hd)
        for i, p in enumerate(self.layers):
            y = F.rms_norm(x, (self.h,), p["ln1"], 1e-6)
            qkv = F.linear(y, p["wqkv"]).view(B, T, nh + 2 * kvh, hd)
            qk = qkv[:, :, :nh + kvh]
            qk = qk * cos + torch.cat((-qk[..., hd // 2:], qk[..., :hd // 2]), dim=-1) * sin    # RoPE on Q and K
            kv = cache[i]
            kv[:, start:start + T, 0] = qk[:, :, nh:]
            kv[:, start:start + T, 1] = qkv[:, :, nh + kvh:]
            k, v = kv[:, :start + T, 0].transpose(1, 2), kv[:, :start + T, 1].transpose(1, 2)
            a = F.scaled_dot_product_attention(qk[:, :, :nh].transpose(1, 2), k, v, is_causal=T > 1,
                                               enable_gqa=kvh != nh)
            x2.addmm_(a.transpose(1, 2).reshape(B * T, nh * hd), p["wo"].t())       # residual in the epilogue
            gu = F.linear(F.rms_norm(x, (self.h,), p["ln2"], 1e-6), p["w_gu"])
            gate, up = gu[..., :self.ffn], gu[..., self.ffn:]
            act = F.silu(gate) if self.act == "silu" else F.gelu(gate, approximate="tanh")
            x2.addmm_((act * up).view(B * T, self.ffn), p["w_down"].t())
        return F.linear(F.rms_norm(x[:, -1], (self.h,), self.norm, 1e-6), self.head)


    def forward_fused(self, tokens, cache, start: int):
        """The same step with the elementwise work fused as a serving stack fuses it (vLLM's fused RMSNorm,
        rotary + cache write and SiLU-and-mul kernels), here by torch.compile (Inductor's Triton kernels; FUSED):
        GEMMs, SDPA and the residual-add epilogues are as in forward()."""
        B, T = tokens.shape
        nh, kvh, hd = self.nh, self.kvh, self.hd
        x = self.embed[tokens]
        x2 = x.view(B * T, self.h)
        cos, sin = self.cos[start:start + T].view(1, T, 1, hd), self.sin[start:start + T].view(1, T, 1, hd)
        fused_rms_norm, fused_rope_pack, fused_act_mul = FUSED["prefill" if T > 1 else "decode"]
        for i, p in enumerate(self.layers):
            qkv = F.linear(fused_rms_norm(x, p["ln1"]), p["wqkv"]).view(B, T, nh + 2 * kvh, hd)
            q, kv_new = fused_rope_pack(qkv, cos, sin, nh, kvh)
            kv = cache[i]
            kv[:, start:start + T].copy_(kv_new)                                 # one cache write (K and V)
            k, v = kv[:, :start + T, 0].transpose(1, 2), kv[:, :start + T, 1].transpose(1, 2)
            a = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, is_causal=T > 1, enable_gqa=kvh != nh)
            x2.addmm_(a.transpose(1, 2).reshape(B * T, nh * hd), p["wo"].t())
            gu = F.linear(fused_rms_norm(x, p["ln2"]), p["w_gu"])
            x2.addmm_(fused_act_mul(gu, self.ffn, self.act).view(B * T, self.ffn), p["w_down"].t())
        return F.linear(fused_rms_norm(x[:, -1], self.norm), self.head)


def _rms_norm(x, w):
    """RMSNorm over the last dimension (eps 1e-6)."""
    return F.rms_norm(x, (x.shape[-1],), w, 1e-6)


def _rope_pack(qkv, cos, sin, nh: int, kvh: int):
    """Rotary embedding on Q and K; returns Q [B,T,nh,hd] and the step's cache rows [B,T,2,kvh,hd]."""
    hd = qkv.shape[-1]
    qk = qkv[:, :, :nh + kvh]
    qk = qk * cos + torch.cat((-qk[..., hd // 2:], qk[..., :hd // 2]), dim=-1) * sin
    return qk[:, :, :nh].contiguous(), torch.stack((qk[:, :, nh:], qkv[:, :, nh + kvh:]), dim=2)


def _act_mul(gu, ffn: int, act: str):
    """SiLU(gate) * up (GELU-tanh for Gemma) from the merged gate/up GEMM's output."""
    gate, up = gu[..., :ffn], gu[..., ffn:]
    return (F.silu(gate) if act == "silu" else F.gelu(gate, approximate="tanh")) * up


# Decode steps (T = 1) share one shape-generic compile of each function; prefill steps (T > 1) get one compile per
# shape (dynamic=False), as a serving stack's prefill kernels are specialised: Inductor's shape-generic kernels
# cannot prove the strides of the QKV view and reached 15-45% of HBM bandwidth there (h100_kernel_profile.csv).
torch._dynamo.config.cache_size_limit = 512
torch._dynamo.config.accumulated_cache_size_limit = 4096
FUSED = {shape: (torch.compile(_rms_norm, dynamic=dyn, fullgraph=True),
                 torch.compile(_rope_pack, dynamic=dyn, fullgraph=True),
                 torch.compile(_act_mul, dynamic=dyn, fullgraph=True))
         for shape, dyn in (("decode", True), ("prefill", False))}


def kernel_profile(out_dir: Path, stacks: tuple[str, ...] = ("eager", "fused")) -> None:
    """torch.profiler's CUDA kernels of one graph replay of Llama-2-7B prefill B1 T2048 and decode B1 C512 per
    stack, summed by kernel name: out_dir/kernel_profile.csv (stack, case, kernel, calls, total_us)."""
    rows = []
    for stack in stacks:
        m = Decoder("llama2-7b", stack)
        with torch.inference_mode():
            for case, batch, T, start in (("prefill_B1_T2048", 1, 2048, 0), ("decode_B1_C512", 1, 1, 512)):
                cache = m.cache(batch, start + T)
                tok = torch.randint(0, m.vocab, (batch, T), device="cuda")
                graph = capture(lambda i, m=m, tok=tok, cache=cache, start=start: m.forward(tok, cache, start), 1)
                graph.replay()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    graph.replay()
                    torch.cuda.synchronize()
                for ev in prof.key_averages():
                    us = getattr(ev, "device_time_total", 0) or getattr(ev, "cuda_time_total", 0)
                    if us > 0:
                        rows.append((stack, case, ev.key.replace(",", ";")[:160], ev.count, us))
                del graph, cache
        torch.cuda.empty_cache()
    with open(out_dir / "kernel_profile.csv", "w") as f:
        f.write("stack,case,kernel,calls,total_us\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")
    for stack in stacks:
        for case in ("prefill_B1_T2048", "decode_B1_C512"):
            sel = [r for r in rows if r[0] == stack and r[1] == case]
            print(f"# profile {stack} {case}: {sum(r[3] for r in sel)} kernels, {sum(r[4] for r in sel):.0f} us",
                  flush=True)


def watts_of(w: dict) -> float:
    """Mean board power of a loop: the NVML energy counter's where it reads, else nvidia-smi's samples."""
    e = w.get("nvml_power_w", math.nan)
    return e if math.isfinite(e) else w.get("power_w", math.nan)


def free_bytes() -> int:
    """Free device memory now."""
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info()[0]


def prefill(ctx: Ctx, m: Decoder, batch: int, T: int, power: bool):
    """Prefill of batch x T tokens: one CUDA graph of the forward pass, median of replays."""
    cache = m.cache(batch, T)
    tok = torch.randint(0, m.vocab, (batch, T), device="cuda")
    graph = capture(lambda i: m.forward(tok, cache, 0), 1)
    st = stats(timed(graph.replay, 3 if T * batch >= 8192 else 8, warmup=1))
    w = ctx.sustain(graph.replay, st["median_ms"]) if power else {}
    w.pop("loop_ms", None)
    ctx.out.row(group="prefill", case=f"{m.name}_prefill_B{batch}_T{T}", model=m.name, batch=batch, seq=T, **st, **w,
                tflops=m.weight_bytes * batch * T / st["median_ms"] / 1e9,
                j_per_token=watts_of(w) * st["median_ms"] / 1e3 / (batch * T) if w else "",
                note=f"{m.stack} stack; causal; CUDA graph; weights {m.weight_bytes} B; tflops counts weight MACs only")


def decode(ctx: Ctx, m: Decoder, batch: int, c: int):
    """One decode step at context c as a CUDA graph: median TPOT, then a sustained loop for power and J/token."""
    cache = m.cache(batch, c + 1)
    tok = torch.randint(0, m.vocab, (batch, 1), device="cuda")
    graph = capture(lambda i: m.forward(tok, cache, c), 1)
    st = stats(timed(graph.replay, 30, warmup=3))
    w = ctx.sustain(graph.replay, st["median_ms"], 0.6 if ctx.quick else 2.0)
    loop_ms = w.pop("loop_ms")
    watts = watts_of(w)
    ctx.out.row(group="decode", case=f"{m.name}_decode_B{batch}_C{c}", model=m.name, batch=batch, context=c, **st,
                **w, gb_s=(m.weight_bytes + m.kv_bytes(batch, c)) / st["median_ms"] / 1e6,
                j_per_token=watts * loop_ms / 1e3 / batch,
                note=f"{m.stack} stack; CUDA graph; loop {loop_ms:.4f} ms/step; "
                     "J/token = loop power x loop time / tokens")


DECODE_POINTS = [(1, 512), (1, 2048), (1, 8192), (4, 2048), (8, 4096), (16, 2048), (16, 8192), (32, 512),
                 (32, 2048), (64, 512), (64, 2048), (64, 8192)]
PREFILL_POINTS = [(1, 512), (1, 2048), (1, 8192), (4, 2048), (16, 512)]


def decoder_runs(ctx: Ctx, name: str):
    """Prefill and decode points of one model that fit its context and the free memory."""
    m = Decoder(name, ctx.stack)
    with torch.inference_mode():
        for batch, T in PREFILL_POINTS[:2] if ctx.quick else PREFILL_POINTS:
            if T > MAX_POS[name] or ctx.min_context:
                continue
            guarded(lambda b=batch, t=T: prefill(ctx, m, b, t, power=(b, t) == (1, 2048)),
                    f"{name} prefill {batch}x{T}")
        for batch, c in DECODE_POINTS[:2] if ctx.quick else DECODE_POINTS:
            if c > MAX_POS[name] or c < ctx.min_context or m.kv_bytes(batch, c + 1) > free_bytes() - 6 * 2**30:
                print(f"# skip {name} decode B{batch} C{c} (context or memory)", flush=True)
                continue
            guarded(lambda b=batch, cc=c: decode(ctx, m, b, cc), f"{name} decode B{batch} C{c}")
    torch.cuda.empty_cache()


def guarded(step, what: str):
    """Run one measurement; an error is printed and the run goes on."""
    try:
        step()
    except Exception as exc:
        print(f"# {what} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
    torch.cuda.empty_cache()


def gpu_text(out_dir: Path) -> None:
    """Card, driver, limits, torch and date into out_dir/gpu.txt."""
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,power.limit,clocks.max.sm,clocks.max.memory,driver_version,"
                        "memory.total", "--format=csv"], capture_output=True, text=True)
    props = torch.cuda.get_device_properties(0)
    text = (r.stdout + f"torch {torch.__version__}, CUDA {torch.version.cuda}, {props.multi_processor_count} SMs, "
            f"L2 {props.L2_cache_size} B, {props.total_memory} B\n"
            f"measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
            f"with benchmarks/hardware/measure_gpu.py\n")
    (out_dir / "gpu.txt").write_text(text)
    print(text, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("."))
    ap.add_argument("--quick", action="store_true", help="few shapes and short loops (to check the script)")
    ap.add_argument("--min-context", type=int, default=0, help="decoder: only decode points at this context+")
    ap.add_argument("--only", default="", help="comma-separated: ceiling,gemm,attention,vector,power,decoder,"
                    "profile")
    ap.add_argument("--stack", choices=("eager", "fused"), default="eager",
                    help="decoders: eager PyTorch ops, or elementwise work fused as a serving stack fuses it")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    gpu_text(args.out_dir)
    out = Out(args.out_dir / "measurements.csv", FIELDS, [*FIELDS[:14], "power_w", "sm_clock_mhz"])
    ctx = Ctx(out, Sampler(args.out_dir / "power_samples.csv"), args.quick)
    ctx.min_context = args.min_context
    ctx.stack = args.stack
    t0 = time.time()
    time.sleep(2.5)
    w = ctx.sampler.window(t0 + 0.5, time.time())
    ctx.out.row(group="idle", case="idle", **w, note="CUDA context up, no work")
    sections = {"ceiling": ceilings, "gemm": gemms, "attention": attentions, "vector": vector_ops,
                "power": power_loops,
                "decoder": lambda c: [decoder_runs(c, n) for n in MODELS],
                "profile": lambda c: kernel_profile(args.out_dir)}
    only = set(args.only.split(",")) if args.only else set(sections) - {"profile"}
    try:
        for name, run in sections.items():
            if name in only:
                print(f"# section {name} at {time.time() - t0:.0f} s", flush=True)
                guarded(lambda r=run: r(ctx), f"section {name}")
    finally:
        ctx.sampler.stop()
    print(f"# done in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
