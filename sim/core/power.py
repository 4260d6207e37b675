"""Power cap: the highest clock at which a run's average power meets the arch's power.cap_w (docs/energy.md).

Per run, not per kernel: a GPU's power limiter acts on the board's average power over a window of milliseconds (NVIDIA
documents the power limit as an average; nvidia-smi reports power averaged over ~1 s on H100), longer than most
kernels, so a sustained loop of one workload settles at one clock. An LLM run's phases are separate runs (each
simulate call). The same schedule (tiles and mappings) runs at the lower clock: DVFS does not recompile a program.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tilesim.arch.config import ArchConfig
from tilesim.arch.power import at_clock
from tilesim.core.result import SimResult

BISECTIONS = 8      # clock found to (clock_hz - min_hz) / 2**8, e.g. ~4 MHz on the h100 preset


def capped_run(top: SimResult, arch: ArchConfig, run: Callable[[ArchConfig], SimResult]) -> SimResult:
    """`top` (the run at the arch's own clock) if its average power is within the cap (or there is none), else the
    run at the highest clock whose power is within it, found by bisection with `run` (the same schedule at another
    arch); at the DVFS floor clock when even that exceeds the cap."""
    cap = arch.power.cap_w if arch.power else 0.0
    if not cap or top.power_w <= cap or arch.power is None or arch.power.dvfs is None:
        return top
    lo_hz, hi_hz = arch.power.dvfs.min_hz, arch.clock_hz
    best = run(at_clock(arch, lo_hz))
    if best.power_w <= cap:
        for _ in range(BISECTIONS):
            mid_hz = (lo_hz + hi_hz) / 2
            result = run(at_clock(arch, mid_hz))
            if result.power_w <= cap:
                lo_hz, best = mid_hz, result
            else:
                hi_hz = mid_hz
    return replace(best, top_clock_hz=arch.clock_hz)


__all__ = ["BISECTIONS", "capped_run"]
