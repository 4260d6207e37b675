"""Peer check of serve's step costs (by hand; prints tables): Llama-2-7B's per-step non-attention time on the h100
preset against Vidur's measured H100 operator profile (Vidur's data/profiling/compute/h100/meta-llama/
Llama-2-7b-hf/mlp.csv, medians; Vidur is not a dependency: give the file's path), at tensor parallel 1 and, with
Vidur's measured DGX H100 all-reduce profile (data/profiling/network/h100_dgx/all_reduce.csv), at tensor parallel
2, 4 and 8 on the 8xh100 system (serve --system: serve_system.py), compute and all-reduces apart.

Vidur's step time for T tokens is the sum over the 32 layers of its profiled operators (norms, QKV projection,
RoPE, output projection, MLP up/act/down, residual add) plus attention, and at TP > 1 two all-reduces of T x 4096 x
2 bytes per layer (its all-reduce profile by message size, interpolated linearly); tilesim's is dense(T)
(serve_cost.py) over the same layer kernels of the chip's shard (embedding, final norm and LM head left out, as
Vidur leaves them out) and its alpha-beta ring all-reduce over NVLink 4 (core/collectives.py).

Vidur's simulator itself is not run on a trace here: offline it lacks its measured attention profile (the
repository's data/profiling/compute/h100/meta-llama/Llama-2-7b-hf/attention.csv, or the HF dataset it downloads;
docs/serving.md "Against a peer" gives the exact calls), so only the profiled operators above are compared.

    python benchmarks/vidur_compare.py PATH/TO/mlp.csv [PATH/TO/h100_dgx/all_reduce.csv]
"""
from __future__ import annotations

import csv
import sys

import numpy as np

from tilesim.arch import load_arch
from tilesim.arch.system import load_system
from tilesim.compiler.schedule import CompileOptions
from tilesim.core.collectives import collective
from tilesim.studies.serve_cost import StepCostModel, is_attention
from tilesim.studies.serve_system import GroupStepCost
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

VIDUR_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
             "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
TOKENS = (1, 16, 64, 128, 256, 512, 1024, 2048)


TP_TOKENS = (1, 64, 512, 2048)
HIDDEN_BYTES = 4096 * 2           # one token's hidden state in bf16


def vidur_ms(path: str, tp: int = 1) -> dict[int, float]:
    """Vidur's per-step non-attention time (ms) by token count: 32 x the sum of its per-layer operator medians."""
    rows = [r for r in csv.DictReader(open(path)) if r["num_tensor_parallel_workers"] == str(tp)]
    return {int(r["num_tokens"]): 32 * sum(float(r[f"time_stats.{op}.median"]) for op in VIDUR_OPS) for r in rows}


def vidur_all_reduce_ms(path: str, tp: int, n_bytes: int) -> float:
    """Vidur's measured all-reduce time (ms) of n bytes over tp GPUs of a DGX H100 (median; linear between sizes)."""
    rows = [r for r in csv.DictReader(open(path)) if r["num_workers"] == str(tp) and r["devices_per_node"] == str(tp)]
    by_size: dict[int, list[float]] = {}
    for r in rows:
        by_size.setdefault(int(r["size"]), []).append(float(r["time_stats.all_reduce.median"]))
    sizes = sorted(by_size)
    return float(np.interp(n_bytes, sizes, [float(np.median(by_size[x])) for x in sizes]))


def layer_ms(model: StepCostModel, tokens: int) -> float:
    """The non-attention time of a model's layer kernels (ms) in a prefill of `tokens` tokens."""
    r = model.simulate(lambda cfg: wl.prefill_graph(cfg, 1, tokens, model.dtypes))
    layers = [k for k in r.kernels if k.name.startswith("layer") and not is_attention(k.ops)]
    return sum(k.cycles for k in layers) / r.clock_hz * 1e3


def tilesim_ms(tokens: int) -> float:
    """tilesim's non-attention time of the 32 layers (ms) for a prefill of `tokens` tokens on the h100 preset."""
    arch = load_arch("h100")
    cfg = decoder_config("llama2-7b")
    return layer_ms(StepCostModel(cfg, arch, CompileOptions(), wl.resolve_dtypes(None, arch.array.dtype)), tokens)


def tp_table(mlp_path: str, all_reduce_path: str) -> None:
    """Tensor parallel 2, 4, 8: per-GPU layer compute and the step's 64 all-reduces, Vidur's measured against
    tilesim's shard on the 8xh100 system."""
    system = load_system("8xh100")
    cfg = decoder_config("llama2-7b")
    types = wl.resolve_dtypes(None, system.chip.array.dtype)
    print(f"\n{'tp':>3} {'tokens':>6} {'Vidur compute':>14} {'tilesim compute':>16} {'ratio':>6} "
          f"{'Vidur 64 AR':>12} {'tilesim 64 AR':>14} {'ratio':>6}   (ms per step)")
    for tp in (2, 4, 8):
        vidur = vidur_ms(mlp_path, tp)
        group = GroupStepCost(cfg, system, tp, CompileOptions(), types)
        for t in TP_TOKENS:
            ours = layer_ms(group.chip, t)
            n = t * HIDDEN_BYTES
            v_ar = 64 * vidur_all_reduce_ms(all_reduce_path, tp, n)
            t_ar = 64 * collective(system, "all_reduce", tuple(range(tp)), n).time_s * 1e3
            print(f"{tp:>3} {t:>6} {vidur[t]:>14.3f} {ours:>16.3f} {ours / vidur[t]:>6.2f} {v_ar:>12.3f} "
                  f"{t_ar:>14.3f} {t_ar / v_ar:>6.2f}")


def main_() -> None:
    vidur = vidur_ms(sys.argv[1])
    print(f"{'tokens':>6} {'Vidur H100 (ms)':>16} {'tilesim h100 (ms)':>18} {'tilesim / Vidur':>16}")
    for t in TOKENS:
        ours = tilesim_ms(t)
        print(f"{t:>6} {vidur[t]:>16.3f} {ours:>18.3f} {ours / vidur[t]:>16.2f}")
    if len(sys.argv) > 2:
        tp_table(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main_()
