"""Clock vs power (DVFS): the arch at a lower clock, for a power cap (sim/core/power.py finds the clock).

Rule (docs/energy.md "Power cap"): dynamic power is a C V^2 f (Weste and Harris, CMOS VLSI Design, 4th ed., section
5.1), so the energy per action scales with V^2. Over a DVFS range the supply voltage is close to linear in the clock
(the alpha-power law, Sakurai and Newton, JSSC 1990, with alpha near 1 for short-channel devices), and below a knee it
stays at its floor (the lowest voltage that holds timing): V(f) = V(clock_hz) * (v_floor + (1 - v_floor) *
(f - knee) / (clock_hz - knee)) above the knee, V(clock_hz) * v_floor below it. Dynamic power then grows ~ f^3
above the knee and ~ f below it. The arch's energy table holds at its clock_hz (the top clock, e.g. a GPU's boost).
At a lower clock, time-based quantities keep their seconds: off-chip and flash bandwidth (bytes/s, the memory
clock does not change), their latency and the fixed per-kernel overhead; on-chip bandwidths stay per cycle.
"""
from __future__ import annotations

from dataclasses import replace

from tilesim.arch.config import ArchConfig, Dvfs, EnergyEntry, MemLevel


def voltage_ratio(dvfs: Dvfs, top_hz: float, clock_hz: float) -> float:
    """Supply voltage at `clock_hz` / at `top_hz` (the arch's own clock): linear above the knee, the floor below."""
    if clock_hz <= dvfs.knee_hz or top_hz <= dvfs.knee_hz:
        return dvfs.v_floor
    return dvfs.v_floor + (1 - dvfs.v_floor) * (min(clock_hz, top_hz) - dvfs.knee_hz) / (top_hz - dvfs.knee_hz)


def at_clock(arch: ArchConfig, clock_hz: float) -> ArchConfig:
    """The arch run at `clock_hz` (below its own clock, under its DVFS rule): dynamic energies x V^2 ratio, off-chip
    and flash bytes per cycle, their latency cycles and the kernel overhead cycles rescaled so that their seconds
    stay the same."""
    power = arch.power
    if power is None or power.dvfs is None:
        raise ValueError(f"arch '{arch.name}' has no power.dvfs rule")
    scale = voltage_ratio(power.dvfs, arch.clock_hz, clock_hz) ** 2
    slower = arch.clock_hz / clock_hz                   # cycles at the old clock per cycle at the new one

    def level(lv: MemLevel) -> MemLevel:
        if lv.kind in ("offchip", "flash"):
            return replace(lv, bandwidth_bytes_per_cycle=lv.bandwidth_bytes_per_cycle * slower,
                           latency_cycles=round(lv.latency_cycles / slower))
        return lv
    actions = {a: EnergyEntry(e.pj * scale, e.source, e.node) for a, e in arch.energy.actions.items()}
    return replace(arch, clock_hz=clock_hz, memory=tuple(level(lv) for lv in arch.memory),
                   energy=replace(arch.energy, actions=actions),
                   kernel_overhead_cycles=round(arch.kernel_overhead_cycles / slower))


__all__ = ["at_clock", "voltage_ratio"]
