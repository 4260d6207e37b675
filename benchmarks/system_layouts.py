"""Layouts of one model side by side (by hand; prints tables): every tp x pp on one system (micro-batches = pp),
then layouts across systems (topologies). Decode at batch 8 and context 512.

    python benchmarks/system_layouts.py [model] [system]       # default llama3.1-70b on 8xh100
"""
from __future__ import annotations

import sys
import time

from tilesim.compiler.schedule import CompileOptions
from tilesim.report.system import layout_table
from tilesim.studies.options import LLMOptions, SystemOptions, WorkloadOptions
from tilesim.studies.system import layout_points, run_layouts


def main_(model: str = "llama3.1-70b", system: str = "8xh100") -> None:
    w, llm = WorkloadOptions(model, batch=8), LLMOptions(phase="decode", context=512)
    t0 = time.perf_counter()
    points = [{"tp": tp, "pp": pp, "micro_batches": pp} for tp in (1, 2, 4, 8) for pp in (1, 2, 4, 8)
              if tp * pp <= 8]
    print(f"{model} on {system}, decode batch 8, context 512 (micro-batches = pp)")
    print(layout_table(run_layouts(w, llm, CompileOptions(), SystemOptions(system=system), points)))
    grid = layout_points({"system": ["8xh100", "16xh100-ib"], "tp": [8, 16], "collective_algorithm": ["ring",
                                                                                                       "tree"]})
    print(f"{model}: topologies and all-reduce algorithms")
    print(layout_table(run_layouts(w, llm, CompileOptions(), SystemOptions(), grid)))
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main_(*sys.argv[1:3])
