"""Power cap: the highest clock at which a run's average power meets the arch's power.cap_w (docs/energy.md).

Per run, not per kernel: a GPU's power limiter acts on the board's average power over a window of milliseconds (NVIDIA
documents the power limit as an average; nvidia-smi reports power averaged over ~1 s on H100), longer than most
kernels, so a sustained loop of one workload settles at one clock. An LLM run's phases are separate runs (each
simulate call). The same schedule (tiles and mappings) runs at the lower clock: DVFS does not recompile a program.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tilesim.arch.config import ArchConfig, Dvfs
from tilesim.arch.power import at_clock, voltage_ratio
from tilesim.core.result import SimResult

BISECTIONS = 8      # clock found to (clock_hz - min_hz) / 2**8, e.g. ~4 MHz on the h100 preset
GUESSES = 3         # model-guided rounds (a guess and its neighbour) before plain bisection of the rest


def capped_run(top: SimResult, arch: ArchConfig, run: Callable[[ArchConfig], SimResult]) -> SimResult:
    """`top` (the run at the arch's own clock) if its average power is within the cap (or there is none), else the
    run at the highest clock of the bisection grid whose power is within it (`run` simulates the same schedule at
    another arch); at the DVFS floor clock when even that exceeds the cap.

    The answer is the one an 8-step bisection gives when power rises with the clock, but found in fewer runs: a
    guess where power = a + b V(f)^2 f (a compute-bound run's shape) meets the cap, through the top run and the
    static power (the floor of the power at no clock), a run at the guess and one at its neighbour towards the
    boundary, then guesses through the two runs nearest the boundary, then bisection of what is left (usually 2 to
    4 runs, not 9; at most 1 + 2 x GUESSES + BISECTIONS). The floor clock is run only when the boundary is below
    grid point 1."""
    cap = arch.power.cap_w if arch.power else 0.0
    if not cap or top.power_w <= cap or arch.power is None or arch.power.dvfs is None:
        return top
    dvfs, lo_hz, hi_hz = arch.power.dvfs, arch.power.dvfs.min_hz, arch.clock_hz
    top_k = 2**BISECTIONS                       # the arch's own clock, just past the grid (bisection never runs it)
    runs = {top_k: top}

    def hz(k: int) -> float:
        """The clock of grid point k."""
        return hi_hz if k == top_k else grid_hz(lo_hz, hi_hz, k)

    def within(k: int) -> bool:
        """Whether the run at grid point k meets the cap (simulated once)."""
        if k not in runs:
            runs[k] = run(at_clock(arch, hz(k)))
        return runs[k].power_w <= cap

    def anchor(lo: int, hi: int) -> tuple[float, float]:
        """(clock, power) of a second point for the model beside the bracket's high end `hi`: the low end's run;
        before one exists, the nearest run above `hi` (extrapolating down), else zero clock at the static power."""
        if lo in runs:
            return hz(lo), runs[lo].power_w
        above = [k for k in runs if k > hi]
        if above:
            return hz(min(above)), runs[min(above)].power_w
        return 0.0, top.static_power_mw.get("static", 0.0) * 1e-3

    lo_k, hi_k = 0, top_k                       # lo_k meets the cap (the floor: unchecked until run), hi_k does not
    for attempt in range(GUESSES + BISECTIONS):
        if hi_k - lo_k <= 1:
            break
        guess = guess_step(dvfs, *anchor(lo_k, hi_k), hz(hi_k), runs[hi_k].power_w, cap, lo_hz, hi_hz) \
            if attempt < GUESSES else None      # then plain bisection of what is left
        guessing = guess is not None
        k = min(max(guess, lo_k + 1), hi_k - 1) if guess is not None else (lo_k + hi_k) // 2
        step = 1 if within(k) else -1
        lo_k, hi_k = (k, hi_k) if step > 0 else (lo_k, k)
        if guessing and lo_k < k + step < hi_k:     # the neighbour towards the boundary: a good guess ends here
            lo_k, hi_k = (k + step, hi_k) if within(k + step) else (lo_k, k + step)
    within(lo_k)                                # the floor, when nothing above it met the cap
    return replace(runs[lo_k], top_clock_hz=arch.clock_hz)


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


def guess_step(dvfs: Dvfs, lo_hz: float, lo_w: float, hi_hz: float, hi_w: float, cap_w: float, grid_lo_hz: float,
               grid_hi_hz: float) -> int | None:
    """The grid point (of the grid from grid_lo_hz to grid_hi_hz) where power = a + b V(f)^2 f, through (lo_hz, lo_w)
    and (hi_hz, hi_w), meets cap_w (extrapolated when both lie on one side); None when the two points do not rise
    with the clock."""
    h = lambda f: voltage_ratio(dvfs, grid_hi_hz, f) ** 2 * f      # noqa: E731
    if h(hi_hz) == h(lo_hz) or (hi_w - lo_w) / (h(hi_hz) - h(lo_hz)) <= 0:
        return None
    b = (hi_w - lo_w) / (h(hi_hz) - h(lo_hz))
    a, lo, hi = lo_w - b * h(lo_hz), grid_lo_hz, grid_hi_hz
    for _ in range(60):                                            # h rises with f: bisect the model, not runs
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if a + b * h(mid) <= cap_w else (lo, mid)
    return int((lo - grid_lo_hz) / (grid_hi_hz - grid_lo_hz) * 2**BISECTIONS)


__all__ = ["BISECTIONS", "GUESSES", "capped_run", "grid_hz", "guess_step"]
