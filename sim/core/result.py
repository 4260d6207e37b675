"""SimResult and KernelResult: the numbers a run reports (docs/design.md section 8), frozen and JSON-ready."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np


@dataclass(frozen=True)
class KernelResult:
    """One kernel's share of the run."""
    name: str
    ops: tuple[str, ...]
    engine: str                  # array | vector
    cycles: int                  # this kernel's span: its end minus the previous kernel's end
    compute_cycles: int          # busy cycles of its engine
    stall_cycles: int            # cycles - compute_cycles, floored at 0 (overlap with the previous kernel)
    dma_cycles: int              # cycles the off-chip channel spent on its transfers
    macs: int
    pe_utilization: float        # macs / (max(cycles, compute_cycles) * peak): the span, or the busy time when
    #                              the kernel overlaps its predecessor (independent layers) and its span is shorter
    compute_utilization: float   # macs / (compute_cycles * peak): SCALE-Sim's "overall utilization"
    mapping_efficiency: float    # mean over folds of used PEs / PEs (0 for vector kernels)
    bound: str                   # compute | memory | vector
    dram_read_bytes: int
    dram_write_bytes: int
    energy_pj: float
    tiles: int
    sram_input_reads: int        # elements fed to the array (SCALE-Sim's ifmap SRAM reads)
    sram_weight_reads: int       # SCALE-Sim's filter SRAM reads
    sram_output_writes: int      # SCALE-Sim's ofmap SRAM writes (partial sums included)
    dram_input_read_bytes: int
    dram_weight_read_bytes: int
    dram_output_write_bytes: int
    stall_dram_cycles: int       # its engine idle, waiting for the tile's DRAM load
    stall_dependency_cycles: int  # ... for a load that waited on a producer kernel's last store
    stall_slot_cycles: int       # ... for a buffer slot (the store of an earlier tile)
    stall_order_cycles: int      # ... behind in-order issue on the other engine
    sram_wait_cycles: int        # compute stretched because an on-chip level could not feed the array
    arithmetic_intensity: float  # macs / (DRAM read + write bytes): the roofline's x axis (0 without traffic)
    attained_macs_per_cycle: float  # macs / max(cycles, compute_cycles, dma_cycles): the roofline's y axis
    mapping: str                 # human-readable mapping
    flash_read_bytes: int = 0    # weight bytes streamed from flash (then written into DRAM: in dram_write_bytes)
    stall_flash_cycles: int = 0  # its engine idle, waiting for a load that waited for its flash read
    clock_hz: float = 0.0        # the clock it ran at (below the arch's own under a power cap)

    @property
    def power_w(self) -> float:
        """Average power (W) over the kernel's active time, max(span, engine busy, DMA) cycles at its clock: its
        energy (static share included) / that time; 0 without time or clock."""
        active = max(self.cycles, self.compute_cycles, self.dma_cycles)
        return self.energy_pj * 1e-12 * self.clock_hz / active if active and self.clock_hz else 0.0


@dataclass(frozen=True, eq=False)
class Timeline:
    """Per-tile event times (cycles) of a run, in tile order, with each kernel's first tile."""
    first_tile: np.ndarray
    engine: np.ndarray
    load_xfer: np.ndarray
    store_xfer: np.ndarray
    load_end: np.ndarray
    compute_start: np.ndarray
    compute_end: np.ndarray
    store_end: np.ndarray
    latency: float
    kernels: tuple[str, ...]


@dataclass(frozen=True)
class SimResult:
    """A whole run: totals, energy breakdown by component, and per-kernel results."""
    workload: str
    arch: str
    timing: str
    clock_hz: float
    cycles: int
    latency_s: float
    macs: int
    pe_utilization: float        # macs / (cycles * peak MACs per cycle)
    mbu: float                   # off-chip bytes / (cycles * off-chip bytes per cycle)
    energy_pj: float
    energy_breakdown_pj: dict
    dram_read_bytes: int
    dram_write_bytes: int
    peak_macs_per_cycle: int
    offchip_bytes_per_cycle: float
    kernels: tuple[KernelResult, ...]
    area_mm2: float              # chip area from arch/area_model.py (0 when the arch has no area section)
    area_breakdown_mm2: dict     # array | <on-chip level> | vector -> mm^2
    engine_busy: dict            # array | vector | dma -> busy fraction of the run
    memory_traffic: dict         # level -> {read_bytes, write_bytes, bandwidth_utilization}
    static_power_mw: dict = field(default_factory=dict)   # static | static.<component> -> mW (as energy_breakdown_pj)
    flash_read_bytes: int = 0    # weights streamed from the flash level (0 without one)
    flash_bytes_per_cycle: float = 0.0   # the flash level's bandwidth (0 without one)
    top_clock_hz: float = 0.0    # the arch's own clock; clock_hz is lower when a power cap lowered it
    tdp_w: float = 0.0           # the arch's TDP (0: none given)
    power_cap_w: float = 0.0     # the arch's power cap (0: none)
    timeline: Timeline | None = field(default=None, compare=False, repr=False)   # only with timeline=True

    @property
    def flash_utilization(self) -> float:
        """Flash bandwidth utilization: flash bytes / (cycles x flash bytes per cycle); 0 without a flash level."""
        return self.flash_read_bytes / (self.cycles * self.flash_bytes_per_cycle) \
            if self.cycles and self.flash_bytes_per_cycle else 0.0

    @property
    def power_w(self) -> float:
        """Average power (W): energy / latency (0 for an empty run)."""
        return self.energy_pj * 1e-12 / self.latency_s if self.latency_s else 0.0

    @property
    def clock_capped(self) -> bool:
        """Whether a power cap ran this below the arch's own clock."""
        return self.clock_hz < self.top_clock_hz

    @property
    def pj_per_mac(self) -> float:
        """Total energy per multiply-accumulate (0 when there are none)."""
        return self.energy_pj / self.macs if self.macs else 0.0

    def to_dict(self) -> dict:
        """Plain mapping with the report keys of docs/design.md section 8 (kernels as a list of mappings)."""
        d = asdict(replace(self, timeline=None, kernels=()))       # the kernels once, below
        d.pop("timeline")
        names = [f.name for f in fields(KernelResult)]     # plain values all (ops a tuple): no deep copy needed
        d["kernels"] = [dict({n: getattr(k, n) for n in names}, ops=list(k.ops), power_w=k.power_w)
                        for k in self.kernels]
        d["pj_per_mac"] = self.pj_per_mac
        d["power_w"] = self.power_w
        d["flash_utilization"] = self.flash_utilization
        return d
