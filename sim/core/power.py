"""Power cap: the highest clock at which a run's average power meets the arch's power.cap_w (docs/energy.md).

Per run, not per kernel: a GPU's power limiter acts on the board's average power over a window of milliseconds (NVIDIA
documents the power limit as an average; nvidia-smi reports power averaged over ~1 s on H100), longer than most
kernels, so a sustained loop of one workload settles at one clock. An LLM run's phases are separate runs (each
simulate call). The same schedule (tiles and mappings) runs at the lower clock: DVFS does not recompile a program.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.arch.power import at_clock, voltage_ratio
from tilesim.core.result import SimResult

BISECTIONS = 8      # clock found to (clock_hz - min_hz) / 2**8, e.g. ~4 MHz on the h100 preset
GUESSES = 6         # model-guided runs before plain bisection of what is left


def capped_run(top: SimResult, arch: ArchConfig, run: Callable[[ArchConfig], Any],
               result: Callable[[Any], SimResult] = lambda r: r) -> SimResult:
    """`top` (the run at the arch's own clock) if its average power is within the cap (or there is none), else the
    run at the highest clock of the bisection grid whose power is within it (`run` simulates the same schedule at
    another arch: anything with a `power_w`, made a SimResult by `result` once chosen); at the DVFS floor clock when
    even that exceeds the cap.

    The answer is the one an 8-step bisection gives when power rises with the clock, found in fewer runs: each
    guess is the grid point where power_model (the top run's kernels and energy, worked out at another clock) meets
    the cap, corrected by the ratio of simulated to modelled power at the runs that bracket the boundary
    (interpolated between them), kept strictly inside the bracket; after GUESSES guesses, plain bisection (usually
    2 or 3 runs, not 9; at most 1 + GUESSES + BISECTIONS). The floor clock is run only when the boundary is below
    grid point 1."""
    cap = arch.power.cap_w if arch.power else 0.0
    if not cap or top.power_w <= cap or arch.power is None or arch.power.dvfs is None:
        return top
    lo_hz, hi_hz = arch.power.dvfs.min_hz, arch.clock_hz
    top_k = 2**BISECTIONS                       # the arch's own clock, just past the grid (bisection never runs it)
    runs: dict[int, Any] = {top_k: top}
    model = power_model(top, arch)

    def hz(k: int) -> float:
        """The clock of grid point k."""
        return hi_hz if k == top_k else grid_hz(lo_hz, hi_hz, k)

    def within(k: int) -> bool:
        """Whether the run at grid point k meets the cap (simulated once)."""
        if k not in runs:
            runs[k] = run(at_clock(arch, hz(k)))
        return runs[k].power_w <= cap

    def guess(lo: int, hi: int) -> int:
        """The highest grid point strictly inside (lo, hi) whose corrected model power meets the cap (lo + 1 when
        none does)."""
        known = [(hz(k), runs[k].power_w / m if (m := model(hz(k))) > 0 else 1.0) for k in (lo, hi) if k in runs]
        if len(known) == 2 and known[0][0] != known[1][0]:
            (f0, r0), (f1, r1) = known
            ratio = lambda f: r0 + (r1 - r0) * (f - f0) / (f1 - f0)      # noqa: E731
        else:
            ratio = lambda f: known[-1][1]                                 # noqa: E731
        a, b = lo + 1, hi - 1                   # the answer lies in a - 1 .. b: bisect the model, not runs
        while a <= b:
            mid = (a + b) // 2
            a, b = (mid + 1, b) if model(hz(mid)) * ratio(hz(mid)) <= cap else (a, mid - 1)
        return max(b, lo + 1)

    lo_k, hi_k = 0, top_k                       # lo_k meets the cap (the floor: unchecked until run), hi_k does not
    for attempt in range(GUESSES + BISECTIONS):
        if hi_k - lo_k <= 1:
            break
        k = guess(lo_k, hi_k) if attempt < GUESSES else (lo_k + hi_k) // 2
        lo_k, hi_k = (k, hi_k) if within(k) else (lo_k, k)
    within(lo_k)                                # the floor, when nothing above it met the cap
    return replace(result(runs[lo_k]), top_clock_hz=arch.clock_hz)


def power_model(top: SimResult, arch: ArchConfig) -> Callable[[float], float]:
    """Average power (W) at clock f predicted from the run at the arch's own clock (capped_run's guide; never
    reported): a memory-bound kernel keeps its seconds unless its compute, in cycles, outgrows them; another keeps
    its compute cycles and the seconds it stalled; static power is per second, the clock tree's energy per cycle and
    every other action's energy per action, all dynamic energy x V(f)^2 / V(top)^2 (arch.power.at_clock)."""
    top_hz = arch.clock_hz
    dvfs = arch.power.dvfs if arch.power else None
    span_s = np.array([k.cycles for k in top.kernels], dtype=np.float64) / top_hz
    compute = np.array([k.compute_cycles for k in top.kernels], dtype=np.float64)
    dma_s = np.array([k.dma_cycles for k in top.kernels], dtype=np.float64) / top_hz
    memory = np.array([k.bound == "memory" for k in top.kernels], dtype=bool)
    busy_s = np.maximum(compute / top_hz, dma_s)
    rest_s = top.latency_s - float(span_s.sum())    # time no kernel's span holds (none, unless kernels are absent)
    parts = top.energy_breakdown_pj
    static_pj = sum(e for c, e in parts.items() if c == "static" or c.startswith("static."))
    clock_pj = parts.get("clock", 0.0)
    other_pj = sum(parts.values()) - static_pj - clock_pj

    def power_w(f: float) -> float:
        compute_s = compute / f
        memory_s = span_s * np.maximum(compute_s, dma_s) / np.where(busy_s > 0, busy_s, 1.0)   # its busier side
        other_s = compute_s + np.maximum(span_s - compute / top_hz, 0.0)                        # + stalled seconds
        t = float(np.where(memory & (busy_s > 0), memory_s, other_s).sum()) + rest_s * top_hz / f
        if t <= 0:
            return 0.0
        v2 = voltage_ratio(dvfs, top_hz, f) ** 2 if dvfs else 1.0
        energy_pj = static_pj * t / top.latency_s + v2 * (clock_pj * t * f / (top.latency_s * top_hz) + other_pj)
        return energy_pj * 1e-12 / t
    return power_w


def grid_hz(lo_hz: float, hi_hz: float, k: int) -> float:
    """Grid point k of the bisection between lo_hz and hi_hz, computed as bisection computes it (the same float):
    k's bits from the most significant say which half each step keeps."""
    for bit in reversed(range(BISECTIONS)):
        mid_hz = (lo_hz + hi_hz) / 2
        if k >> bit & 1:
            lo_hz = mid_hz
        else:
            hi_hz = mid_hz
    return lo_hz


__all__ = ["BISECTIONS", "GUESSES", "capped_run", "grid_hz", "power_model"]
