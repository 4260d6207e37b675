"""Cost of the compiled tile pipeline per event (run by hand; prints a table): a program of N tiles whose loads,
computes and stores all differ (no run of identical tiles to jump), simulated by runs (run_program, one entry a
tile) and tile by tile (run_tiles, as a timeline is).

    python benchmarks/bench_pipeline.py

An event is a load or a store on the DMA channel (2 a tile). Measured on the 2-CPU development machine:

    commit   kernel        ns/event at N = 1,000 / 10,000 / 100,000 (one after the other, the same hour)
    43c0e77  run_program   384 / 394 / 388   helpers compiled as calls that count references to their arrays
    43c0e77  run_tiles     116 / 122 / 146
    (this)   run_program    31 /  29 /  32   helpers compiled as leaves (jit.leaf_njit: no reference counts)
    (this)   run_tiles      17 /  29 /  31

A sweep's one-kernel simulations ran 170 -> 32 us a call on average (1,819 calls of a ResNet-50 array shape).
"""
from __future__ import annotations

import time

import numpy as np

from tilesim.core.kernels.pipeline import run_program, run_tiles
from tilesim.core.simulate import use_compiled_kernels

LATENCY_CYCLES = 10.0


def program(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(load, store, compute) cycles of n tiles, each drawn from 1..99 (seeded)."""
    rng = np.random.default_rng(0)
    return tuple(rng.integers(1, 100, n).astype(np.float64) for _ in range(3))   # type: ignore[return-value]


def best_of(f, args: tuple, repeats: int = 5) -> float:
    """Least wall seconds of `repeats` calls f(*args)."""
    f(*args)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    use_compiled_kernels()
    none = np.zeros(0, dtype=np.int64)
    print(f"{'tiles':>9} {'run_program ns/event':>21} {'run_tiles ns/event':>19}")
    for n in (1_000, 10_000, 100_000):
        load, store, compute = program(n)
        one = np.ones(n, dtype=np.int64)
        by_runs = best_of(run_program, (one, load, store, compute, np.array([0]), np.array([n]), np.array([0]),
                                        np.array([2]), np.array([-1]), LATENCY_CYCLES, none, none, none,
                                        np.zeros((0, 6), dtype=np.int64)))
        by_tiles = best_of(run_tiles, (load, store, compute, np.zeros(n, dtype=np.int64), np.full(n, 2),
                                       np.full(n, -1), LATENCY_CYCLES, np.zeros(n), np.full(n, -1), 0.0))
        print(f"{n:>9,} {by_runs * 1e9 / (2 * n):>21.1f} {by_tiles * 1e9 / (2 * n):>19.1f}")


if __name__ == "__main__":
    main()
