"""Layouts of one model on one system, side by side (by hand; prints a table): every tp x pp that divides the
model and fits the chips, decode at batch 8 with pp micro-batches, and a 512-token prefill.

    python benchmarks/system_layouts.py [model] [system]       # default llama3.1-70b on 8xh100
"""
from __future__ import annotations

import sys
import time

import tilesim
from tilesim.arch.errors import InputError
from tilesim.arch.system import load_system


def main_(model: str = "llama3.1-70b", system: str = "8xh100") -> None:
    chips = load_system(system).chips
    print(f"{model} on {system}, batch 8, decode at context 512, prefill of 512 tokens (micro-batches = pp)")
    print(f"{'tp':>3} {'pp':>3} {'TPOT':>9} {'tokens/s':>9} {'J/token':>8} {'comm':>6} {'TTFT':>9} {'bubble':>7} "
          f"{'GiB/chip':>8} {'run s':>6}")
    for tp in (1, 2, 4, 8, 16):
        for pp in (1, 2, 4, 8):
            if tp * pp > chips:
                continue
            t0 = time.perf_counter()
            layout = {"tp": tp, "pp": pp, "micro_batches": pp, "batch": 8}
            try:
                d = tilesim.run_system(model, system, phase="decode", context=512, **layout)
                p = tilesim.run_system(model, system, phase="prefill", prompt_len=512, **layout)
            except InputError as e:
                print(f"{tp:>3} {pp:>3}  -- {str(e)[:80]}")
                continue
            mem = max(s.memory_bytes for s in d.stages) / 2**30
            print(f"{tp:>3} {pp:>3} {d.tpot_s * 1e3:>7.2f}ms {d.tokens_per_s:>9,.0f} "
                  f"{d.energy_pj * 1e-12 / d.tokens:>8.2f} {d.decode.comm_s / d.decode.time_s:>6.1%} "
                  f"{p.ttft_s * 1e3:>7.1f}ms {p.prefill.bubble:>7.1%} {mem:>8.1f} {time.perf_counter() - t0:>6.1f}")


if __name__ == "__main__":
    main_(*sys.argv[1:3])
