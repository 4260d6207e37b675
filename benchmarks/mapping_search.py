"""Searched vs naive mappings per layer, and how long the search takes (run by hand; prints tables).

    python benchmarks/mapping_search.py [--arch edge-npu] [--workload resnet50]
"""
from __future__ import annotations

import argparse
import time

from tilesim import kernel_evaluator, simulate
from tilesim.arch import load_arch
from tilesim.compiler import mapper
from tilesim.compiler.schedule import CompileOptions, Kernel, Schedule, lower
from tilesim.compiler.tiling import naive_mapping
from tilesim.workloads import load_workload


def alone(kernel: Kernel, mapping, arch):
    """(cycles, DRAM bytes) of one kernel simulated by itself with `mapping`."""
    r = simulate(Schedule("x", arch.name, "pipelined", (Kernel(kernel.name, kernel.ops, kernel.work, mapping),)),
                 arch)
    return r.cycles, r.dram_read_bytes + r.dram_write_bytes


def timed_lowering(workload: str, arch_name: str) -> tuple[float, float, float]:
    """Seconds to lower with the search: closed form only (cold cache), with the simulator deciding, and warm."""
    arch = load_arch(arch_name)
    graph = load_workload(workload, dtype=arch.array.dtype)
    simulate(lower(graph, arch, CompileOptions(mapper="naive")), arch)       # numba compiled/loaded
    mapper._search_cached.cache_clear()
    t0 = time.perf_counter()
    lower(graph, arch)
    t1 = time.perf_counter()
    mapper._search_cached.cache_clear()
    lower(graph, arch, evaluate=kernel_evaluator(arch, "pipelined"))
    t2 = time.perf_counter()
    lower(graph, arch, evaluate=kernel_evaluator(arch, "pipelined"))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", default="edge-npu")
    p.add_argument("--workload", default="resnet50")
    args = p.parse_args()
    arch = load_arch(args.arch)
    graph = load_workload(args.workload, dtype=arch.array.dtype)
    schedule = lower(graph, arch, evaluate=kernel_evaluator(arch, "pipelined"))
    print(f"{args.workload} on {args.arch}: each layer simulated alone, naive tiling vs searched mapping\n")
    print(f"{'layer':<24} {'naive cyc':>11} {'search cyc':>11} {'speedup':>7} {'naive DRAM':>11} "
          f"{'search DRAM':>11}  searched mapping")
    tot = [0, 0, 0, 0]
    seen = {}
    for k in schedule.kernels:
        if not k.on_array:
            continue
        if k.work not in seen:
            seen[k.work] = alone(k, naive_mapping(k.work, arch), arch) + alone(k, k.mapping, arch)
        nc, nd, sc, sd = seen[k.work]
        tot = [a + b for a, b in zip(tot, (nc, nd, sc, sd), strict=False)]
        m = k.mapping
        print(f"{k.name[:24]:<24} {nc:>11,} {sc:>11,} {nc / sc:>6.2f}x {nd:>11,} {sd:>11,}  "
              f"m={m.tile_m} n={m.tile_n} k={m.tile_k} {m.order}")
    print(f"{'all layers':<24} {tot[0]:>11,} {tot[2]:>11,} {tot[0] / tot[2]:>6.2f}x {tot[1]:>11,} {tot[3]:>11,}")
    print("\nseconds to lower the whole network with the search (this machine):")
    print(f"{'workload':<10} {'arch':<9} {'closed form, cold':>18} {'+ simulator, cold':>18} {'warm cache':>11}")
    for workload, arch_name in (("resnet50", args.arch), ("bert-base", "tpu-v4")):
        cold, refined, warm = timed_lowering(workload, arch_name)
        print(f"{workload:<10} {arch_name:<9} {cold:>17.3f}s {refined:>17.3f}s {warm:>10.3f}s")


if __name__ == "__main__":
    main()
