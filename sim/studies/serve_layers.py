"""A decoder's graph simulated with a few layers and extended to all of them: the step-cost model's shortcut.

A decoder whose layers are all alike (same attention window, all dense or all MoE) repeats one block between the
embeddings and the LM head. tilesim's pipeline reaches its steady state within the first layer, so every block adds
the same cycles and energy (llama2-7b and gpt2 on h100: layer spans equal within one cycle in a whole run, the first
and last layer included). The model is simulated with STACK[0] and STACK[1] layers (each graph lowered, mapped and
run as any other), and every additive quantity q of the full run is extrapolated linearly in the layer count:

    q(L) = q(b) + (L - b) (q(b) - q(a)),  (a, b) = STACK

cycles, MACs, energy (by component), DRAM and flash bytes, engine busy cycles and each memory level's bytes; ratios
(utilizations) are recomputed from them. The kernels are those of the b-layer run with the kernels of its layer a
(the one the long cut adds) repeated L - b more times (their spans add up to the extrapolated cycles within a cycle
per layer). The two runs are simulated at the same clock; a power cap (sim/core/power.py) then searches the clock on
the extended run, whose average power is the full model's, not that of the short graphs. tests/test_serve.py
compares this with direct simulation of the full graph (within 1e-5, the same capped clock). A pair of cuts whose
difference is not the span of the layer the long one adds (lowered unalike, or not periodic) is not extended: the
caller simulates the whole graph.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tilesim.arch.config import ArchConfig
from tilesim.compiler.schedule import Schedule
from tilesim.core.power import capped_run
from tilesim.core.result import SimResult
from tilesim.core.simulate import simulate_at_clock
from tilesim.workloads import llm as wl

STACK = (2, 3)          # the layer counts simulated (1 and 2 are not enough: a tp-2 shard of gpt2 on 8xh100 is
#                         lowered differently with one layer, 33 % off)


def stackable(cfg: wl.DecoderConfig) -> bool:
    """Whether cfg's layers are all alike (one window length, no dense layers before MoE ones) and more than
    STACK[1] of them (fewer are simulated whole)."""
    return cfg.layers > STACK[1] and len(set(cfg.windows)) <= 1 and not (cfg.experts and cfg.dense_layers)


def with_layers(cfg: wl.DecoderConfig, layers: int) -> wl.DecoderConfig:
    """cfg cut to its first `layers` layers (the same embeddings and LM head)."""
    return replace(cfg, layers=layers, windows=cfg.windows[:layers])


def layer_kernels(r: SimResult, layer: int) -> tuple:
    """The kernels of r whose first op belongs to layer `layer` (ops are named layerN.<...>)."""
    return tuple(k for k in r.kernels if k.ops and k.ops[0].split(".", 1)[0] == f"layer{layer}")


def extended(short: SimResult, long: SimResult, layers: int) -> SimResult:
    """The run of a `layers`-layer model from runs of STACK[0] (short) and STACK[1] (long) layers at one clock:
    additive quantities extrapolated linearly in the layer count, ratios recomputed (module docstring)."""
    a, b = STACK
    k = (layers - b) / (b - a)

    def ext(x: float, y: float) -> float:
        return y + k * (y - x)
    cycles = round(ext(short.cycles, long.cycles))
    macs = round(ext(short.macs, long.macs))
    read = round(ext(short.dram_read_bytes, long.dram_read_bytes))
    write = round(ext(short.dram_write_bytes, long.dram_write_bytes))
    added = layer_kernels(long, a)
    first = long.kernels.index(added[0])
    kernels = long.kernels[:first] + added * (layers - b) + long.kernels[first:]
    busy = {e: ext(short.engine_busy[e] * short.cycles, f * long.cycles) / cycles if cycles else 0.0
            for e, f in long.engine_busy.items()}
    traffic = {}
    for name, t in long.memory_traffic.items():
        s = short.memory_traffic[name]
        rb, wb = round(ext(s["read_bytes"], t["read_bytes"])), round(ext(s["write_bytes"], t["write_bytes"]))
        per_cycle = (t["read_bytes"] + t["write_bytes"]) / (t["bandwidth_utilization"] * long.cycles) \
            if t["bandwidth_utilization"] and long.cycles else 0.0        # the level's bandwidth (all copies)
        traffic[name] = {"read_bytes": rb, "write_bytes": wb,
                         "bandwidth_utilization": (rb + wb) / (cycles * per_cycle) if cycles and per_cycle else 0.0}
    breakdown = {key: ext(short.energy_breakdown_pj.get(key, 0.0), v) for key, v in long.energy_breakdown_pj.items()}
    return replace(
        long, cycles=cycles, latency_s=cycles / long.clock_hz, macs=macs,
        pe_utilization=macs / (cycles * long.peak_macs_per_cycle) if cycles else 0.0,
        mbu=(read + write) / (cycles * long.offchip_bytes_per_cycle) if cycles else 0.0,
        energy_pj=float(sum(breakdown.values())), energy_breakdown_pj=breakdown, dram_read_bytes=read,
        dram_write_bytes=write, kernels=kernels, engine_busy=busy, memory_traffic=traffic,
        flash_read_bytes=round(ext(short.flash_read_bytes, long.flash_read_bytes)), timeline=None)


def periodic(short: SimResult, long: SimResult, layer: int = STACK[0]) -> bool:
    """Whether the long cut adds to the short one what its added layer (`layer`) spans (to 1e-4 and 2 cycles): the
    cuts were lowered alike and the pipeline repeats, so that extending them is sound."""
    added = sum(k.cycles for k in layer_kernels(long, layer))
    grown = long.cycles - short.cycles
    return grown > 0 and abs(added - grown) <= 1e-4 * grown + 2


def simulate_extended(schedules: tuple[Schedule, Schedule], layers: int, arch: ArchConfig,
                      run: Callable[[Schedule, ArchConfig], SimResult] | None = None) -> SimResult | None:
    """The `layers`-layer run from the schedules of its STACK-layer cuts, under the arch's power cap: both run at
    each clock the cap search tries (`run`: simulate_at_clock without flash by default); None when the cuts at the
    arch's own clock are not periodic (then simulate the whole graph)."""
    run = run or (lambda s, at: simulate_at_clock(s, at, flash_share=0.0))
    short, long = (run(s, arch) for s in schedules)
    if not periodic(short, long):
        return None

    def at(clocked: ArchConfig) -> SimResult:
        return extended(run(schedules[0], clocked), run(schedules[1], clocked), layers)
    return capped_run(extended(short, long, layers), arch, at)

