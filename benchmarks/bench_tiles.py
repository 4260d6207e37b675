"""Simulation cost grows with the number of tiles, not with MACs (run by hand; prints a table).

    python benchmarks/bench_tiles.py
"""
from __future__ import annotations

import time

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.workloads import load_workload

CASES = [("resnet50", "tpu-v1", []), ("gemm:4096,4096,4096", "tpu-v4", []),
         ("gemm:16384,16384,16384", "tpu-v4", []),
         ("gemm:16384,16384,16384", "tpu-v4", ["memory.vmem.capacity_bytes=1 MiB"]),
         ("gemm:16384,16384,16384", "gemmini", [])]


def main() -> None:
    print(f"{'workload':<24} {'arch':<10} {'set':<32} {'MACs':>10} {'tiles':>10} {'simulate':>10} {'us/tile':>8}")
    for workload, arch_name, sets in CASES:
        arch = load_arch(arch_name, sets)
        schedule = lower(load_workload(workload, dtype=arch.array.dtype), arch, CompileOptions())
        simulate(schedule, arch)                                   # warm-up (numba cache, allocations)
        t0 = time.perf_counter()
        result = simulate(schedule, arch)
        dt = time.perf_counter() - t0
        tiles = sum(k.tiles for k in result.kernels)
        print(f"{workload:<24} {arch_name:<10} {' '.join(sets):<32} {result.macs:>10.2e} {tiles:>10,} "
              f"{dt * 1e3:>8.1f}ms {dt / tiles * 1e6:>8.2f}")


if __name__ == "__main__":
    main()
