"""`tilesim serve --grid`: the same stream (or rate sweep) served at every point of a grid of scheduler options,
placement options and arch fields, to find the setting that sustains the highest rate within the SLOs (the knee)
(docs/serving.md).

A grid axis is KEY=V1,V2,... as `tilesim sweep --grid` takes it (sweep.py grid_points: the first axis varies
slowest). KEY is a scheduler option (max_batch, max_tokens, block_size, kv_blocks, scheduler, preemption, swap_gb_s,
prefix_hit_rate, spec_k, acceptance), a placement option (tp, prefill_chips, decode_chips, link), or a dotted arch
field applied to the chip as --set applies it (memory.hbm.bandwidth_gb_s=1500,3000). Points that share the chip and
the placement share their step-cost grids (the on-disk store too, serve_store.py), so scheduler axes cost no new
simulation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from tilesim.arch import load_arch
from tilesim.arch.loader import load_yaml_text
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.options import OptionError, WorkloadOptions
from tilesim.studies.serve import (
    PlacementOptions,
    RateSweep,
    SchedulerOptions,
    Server,
    ServeResult,
    TraceOptions,
    parse_rates,
    server,
    sweep_rates,
)
from tilesim.studies.sweep import grid_points

SCHEDULER_AXES = ("max_batch", "max_tokens", "block_size", "kv_blocks", "scheduler", "preemption", "swap_gb_s",
                  "prefix_hit_rate", "spec_k", "acceptance")
PLACEMENT_AXES = ("tp", "prefill_chips", "decode_chips", "link")


@dataclass(frozen=True)
class GridPoint:
    """One setting of the grid and what it served: a rate sweep (with --rates) or one stream."""
    settings: dict[str, str]
    sweep: RateSweep | None
    result: ServeResult | None

    def to_dict(self) -> dict:
        """The point in `-f json`: its settings, and the rate sweep's rows and knee or the stream's summary."""
        if self.sweep is not None:
            return {"settings": self.settings} | self.sweep.to_dict()
        assert self.result is not None
        return {"settings": self.settings, "summary": self.result.summary}


@dataclass(frozen=True)
class ServeGrid:
    """Every point of the grid, in grid order; the best knee (the highest rate any point sustains) and its point."""
    workload: str
    arch: str
    axes: tuple[str, ...]
    points: tuple[GridPoint, ...]

    @property
    def best(self) -> GridPoint | None:
        """The point with the highest knee (the first such in grid order), None without knees."""
        knees = [p for p in self.points if p.sweep is not None and p.sweep.knee_rate is not None]
        return max(knees, key=lambda p: p.sweep.knee_rate) if knees else None

    def to_dict(self) -> dict:
        """The JSON of `tilesim serve --grid ... -f json`."""
        best = self.best
        return {"workload": self.workload, "arch": self.arch, "axes": list(self.axes),
                "best": None if best is None else {"settings": best.settings, "knee_rate": best.sweep.knee_rate},
                "points": [p.to_dict() for p in self.points]}


def typed(name: str, text: str, cls: type) -> Any:
    """A grid value of an option field, as YAML reads it (8 -> 8, 0.5 -> 0.5, chunked -> 'chunked')."""
    value = load_yaml_text(text, f"--grid {name}")
    want = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if "float" in str(want) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def point_options(settings: dict[str, str], sched: SchedulerOptions, placement: PlacementOptions,
                  overrides: tuple[str, ...]) -> tuple[SchedulerOptions, PlacementOptions, tuple[str, ...]]:
    """The scheduler and placement options and chip overrides of one grid point."""
    s = {k: typed(k, v, SchedulerOptions) for k, v in settings.items() if k in SCHEDULER_AXES}
    p = {k: typed(k, v, PlacementOptions) for k, v in settings.items() if k in PLACEMENT_AXES}
    arch = tuple(f"{k}={v}" for k, v in settings.items() if "." in k)
    return replace(sched, **s), replace(placement, **p), overrides + arch


def check_axes(settings: dict[str, str]) -> None:
    """Every axis must be a scheduler or placement option or a dotted arch field."""
    for key in settings:
        if key not in SCHEDULER_AXES + PLACEMENT_AXES and "." not in key:
            raise OptionError("grid", f"not a serving option or arch field; allowed: {', '.join(SCHEDULER_AXES)}, "
                                      f"{', '.join(PLACEMENT_AXES)} or a dotted arch field (memory.hbm.bandwidth_gb_s)",
                              detail=key)


def serve_grid(workload: WorkloadOptions, arch: str, overrides: tuple[str, ...], compile_options: CompileOptions,
               trace: TraceOptions, sched: SchedulerOptions, placement: PlacementOptions,
               grid: tuple[str, ...]) -> ServeGrid:
    """Serve the stream (or the rate sweep) at every point of the grid; servers shared between points that differ
    only in scheduler options."""
    points = grid_points(list(grid))
    check_axes(points[0])
    rates = parse_rates(trace.rates) if trace.rates is not None else None
    servers: dict[tuple, Server] = {}
    out = []
    where = arch
    for settings in points:
        s, p, o = point_options(settings, sched, placement, tuple(overrides))
        chip = load_arch(arch, list(o))
        system = p.system_config(chip, o)
        where = system.name if system is not None else chip.name
        srv = server(workload, chip, compile_options, s, trace.seed, p, system)
        key = (p, o)                        # same chip and placement: reuse its step-cost models (and memo)
        if key in servers:
            old = servers[key]
            srv = replace(srv, model=old.model, draft=old.draft if srv.draft is not None else None,
                          disagg=None if srv.disagg is None else replace(
                              srv.disagg, prefill_model=old.disagg.prefill_model,
                              decode_model=old.disagg.decode_model))
        else:
            servers[key] = srv
        if rates is not None:
            out.append(GridPoint(settings, sweep_rates(srv, trace, s, rates, s.slo_share), None))
        else:
            out.append(GridPoint(settings, None, srv.serve(trace.stream(), s.slo_ttft, s.slo_tpot)))
    return ServeGrid(workload.workload, where, tuple(points[0]), tuple(out))
