"""Peer check of serve's step costs (by hand; prints a table): Llama-2-7B's per-step non-attention time on the h100
preset against Vidur's measured H100 operator profile (Vidur's data/profiling/compute/h100/meta-llama/
Llama-2-7b-hf/mlp.csv, tensor parallel 1, medians; Vidur is not a dependency: give the file's path).

Vidur's step time for T tokens is the sum over the 32 layers of its profiled operators (norms, QKV projection,
RoPE, output projection, MLP up/act/down, residual add) plus attention; tilesim's is dense(T) (serve_cost.py) over
the same layer kernels (embedding, final norm and LM head left out, as Vidur leaves them out).

    python benchmarks/vidur_compare.py PATH/TO/mlp.csv
"""
from __future__ import annotations

import csv
import sys

from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.serve_cost import StepCostModel, is_attention
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

VIDUR_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
             "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
TOKENS = (1, 16, 64, 128, 256, 512, 1024, 2048)


def vidur_ms(path: str) -> dict[int, float]:
    """Vidur's per-step non-attention time (ms) by token count: 32 x the sum of its per-layer operator medians."""
    rows = [r for r in csv.DictReader(open(path)) if r["num_tensor_parallel_workers"] == "1"]
    return {int(r["num_tokens"]): 32 * sum(float(r[f"time_stats.{op}.median"]) for op in VIDUR_OPS) for r in rows}


def tilesim_ms(tokens: int) -> float:
    """tilesim's non-attention time of the 32 layers (ms) for a prefill of `tokens` tokens on the h100 preset."""
    arch = load_arch("h100")
    cfg = decoder_config("llama2-7b")
    model = StepCostModel(cfg, arch, CompileOptions(), wl.resolve_dtypes(None, arch.array.dtype))
    r = model.simulate(wl.prefill_graph(cfg, 1, tokens, model.dtypes))
    layers = [k for k in r.kernels if k.name.startswith("layer") and not is_attention(k.ops)]
    return sum(k.cycles for k in layers) / r.clock_hz * 1e3


def main_() -> None:
    vidur = vidur_ms(sys.argv[1])
    print(f"{'tokens':>6} {'Vidur H100 (ms)':>16} {'tilesim h100 (ms)':>18} {'tilesim / Vidur':>16}")
    for t in TOKENS:
        ours = tilesim_ms(t)
        print(f"{t:>6} {vidur[t]:>16.3f} {ours:>18.3f} {ours / vidur[t]:>16.2f}")


if __name__ == "__main__":
    main_()
