"""Compare the two array timing modes per layer (prints a Markdown table for the README; run by hand).

    python benchmarks/timing_modes.py [--workload resnet18] [--arch edge-npu] [--dataflow ws]
"""
from __future__ import annotations

import argparse

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.workloads import load_workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workload", default="resnet18")
    p.add_argument("--arch", default="edge-npu")
    p.add_argument("--dataflow", default="ws", choices=("ws", "os", "is"))
    args = p.parse_args()
    arch = load_arch(args.arch, [f"array.dataflow={args.dataflow}"])
    graph = load_workload(args.workload, dtype=arch.array.dtype)
    runs = {mode: simulate(lower(graph, arch, CompileOptions(timing=mode)), arch) for mode in ("scalesim", "pipelined")}
    print(f"{args.workload} on {args.arch} ({arch.array.rows}x{arch.array.cols} {args.dataflow.upper()}): "
          "array compute cycles per layer\n")
    print("| layer | M | N | K | scalesim | pipelined | pipelined / scalesim |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sc, pi = runs["scalesim"], runs["pipelined"]
    kernels = lower(graph, arch).kernels
    for kernel, a, b in zip(kernels, sc.kernels, pi.kernels, strict=False):
        if a.engine != "array":
            continue
        w = kernel.work
        print(f"| {a.name} | {w.m} | {w.n} | {w.k} | {a.compute_cycles:,} | {b.compute_cycles:,} | "
              f"{b.compute_cycles / a.compute_cycles:.2f} |")
    total = lambda r: sum(k.compute_cycles for k in r.kernels if k.engine == "array")   # noqa: E731
    print(f"| **all layers** | | | | {total(sc):,} | {total(pi):,} | {total(pi) / total(sc):.2f} |")
    print(f"\nwhole run (memory included): scalesim {sc.cycles:,} cycles, pipelined {pi.cycles:,} cycles")


if __name__ == "__main__":
    main()
