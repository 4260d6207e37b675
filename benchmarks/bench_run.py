"""Wall time of tilesim runs (by hand, not a test): warm in-process runs and two CLI calls sharing numba's cache.

    python benchmarks/bench_run.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import lower
from tilesim.workloads import load_workload

CASES = [("resnet50", "tpu-v1"), ("resnet50", "edge-npu"), ("resnet18", "eyeriss"), ("bert-base", "tpu-v4"),
         ("mobilenet_v2", "gemmini")]


def warm_seconds(workload: str, arch_name: str, repeats: int = 5) -> tuple[float, float, int]:
    """Median wall seconds of load+lower+simulate (after one warm-up run) and of lower+simulate alone."""
    arch = load_arch(arch_name)
    simulate(lower(load_workload(workload, dtype=arch.array.dtype), arch), arch)
    whole, core = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = load_workload(workload, dtype=arch.array.dtype)
        t1 = time.perf_counter()
        result = simulate(lower(graph, arch), arch)
        t2 = time.perf_counter()
        whole.append(t2 - t0)
        core.append(t2 - t1)
    return statistics.median(whole), statistics.median(core), sum(k.tiles for k in result.kernels)


def cli_seconds() -> float:
    """Wall seconds of one `python -m tilesim run` (ResNet-50 on tpu-v1) as a fresh process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tilesim", "run", "-f", "json", "-o", "/dev/null"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    print(f"{'workload':<14} {'arch':<10} {'tiles':>7} {'build+lower+sim':>16} {'lower+sim':>10}")
    for workload, arch in CASES:
        whole, core, tiles = warm_seconds(workload, arch)
        print(f"{workload:<14} {arch:<10} {tiles:>7} {whole * 1e3:>13.1f} ms {core * 1e3:>7.1f} ms")
    first, second = cli_seconds(), cli_seconds()
    print(f"\nCLI `python -m tilesim run` (resnet50 on tpu-v1): first call {first:.2f} s, second call {second:.2f} s "
          "(the second reuses numba's on-disk cache)")


if __name__ == "__main__":
    main()
