"""Wall time of a 1,000-point ResNet-50 sweep (issue 10; by hand, not a test): 10 array heights x 10 widths x
10 SRAM sizes on edge-npu, `--jobs 2`, once with the mapping search and once with the naive mapper.

    python benchmarks/bench_sweep.py [--points N] [--jobs J] [--mapper search|naive|both] [--backend B]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from arch.loader import raw_arch
from compiler.schedule import CompileOptions
from sim.sweep import SweepSpec, grid_points, run_sweep

GRID = ["array.rows=8,12,16,24,32,48,64,96,128,256",
        "array.cols=8,12,16,24,32,48,64,96,128,256",
        "memory.sram.capacity_bytes=128KiB,192KiB,256KiB,384KiB,512KiB,768KiB,1MiB,1536KiB,2MiB,4MiB"]


def bench(mapper: str, points: list[dict], jobs: int, backend: str) -> tuple[float, list[dict]]:
    """Wall seconds and rows of one sweep into a fresh temporary CSV."""
    raw, source = raw_arch("edge-npu")
    spec = SweepSpec(raw_arch=raw, source=source, arch="edge-npu", workload="resnet50",
                     options=CompileOptions(mapper=mapper))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = run_sweep(points, spec, Path(tmp) / "results.csv", jobs=jobs, backend=backend, progress=True)
        return time.perf_counter() - t0, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000, help="run the first N points of the grid (default all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--mapper", choices=("search", "naive", "both"), default="both")
    ap.add_argument("--backend", choices=("process", "serial", "dask"), default="process")
    args = ap.parse_args()
    points = grid_points(GRID)[:args.points]
    mappers = ("naive", "search") if args.mapper == "both" else (args.mapper,)
    results = []
    for mapper in mappers:
        seconds, rows = bench(mapper, points, args.jobs, args.backend)
        ok = sum(r["status"] == "ok" for r in rows)
        results.append((mapper, seconds, ok, len(rows) - ok))
    print(f"\nResNet-50 on edge-npu, {len(points)} points, --jobs {args.jobs}, backend {args.backend}")
    print(f"{'mapper':<8} {'wall':>9} {'points/s':>9} {'ok':>6} {'invalid':>8}   target <= 60 s")
    for mapper, seconds, ok, bad in results:
        print(f"{mapper:<8} {seconds:>7.1f} s {len(points) / seconds:>9.1f} {ok:>6} {bad:>8}")


if __name__ == "__main__":
    main()
