"""Frozen dataclasses describing an accelerator: PE array, vector unit, memory levels, energy table."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from tilesim.arch.dataflow import Dataflow
from tilesim.arch.dtypes import DTYPE_BYTES, DType

TimingMode = Literal["pipelined", "scalesim"]
MemKind = Literal["offchip", "sram", "flash", "cache"]
Operand = Literal["input", "weight", "output"]

OPERANDS: tuple[Operand, ...] = ("input", "weight", "output")


@dataclass(frozen=True)
class PEArray:
    """A grid of rows x cols multiply-accumulate PEs; `count` identical arrays per core."""
    rows: int
    cols: int
    dataflow: Dataflow = "ws"
    dtype: DType = "int8"
    acc_dtype: DType = "int32"
    count: int = 1
    macs_per_pe_cycle: int = 1
    dataflows: tuple[Dataflow, ...] = ()   # other dataflows the hardware supports; the mapping search may pick them
    # weight-sparsity patterns whose zeros the array skips: "2:4", "structured", "unstructured", "rowwise:B"
    # (arch/sparsity.py); weights stored compressed move fewer bytes whatever this says
    sparsity: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowPasses:
    """How many times a row reduction (Softmax) reads each input row of at most `up_to` elements (fractions: a
    slower kernel's time as extra reads); rows longer than every entry's `up_to` take the last entry's."""
    up_to: int
    passes: float


def row_passes_for(table: tuple[RowPasses, ...], elems: int) -> float:
    """Passes over a row of `elems` elements: the first entry (by up_to) that holds it, else the last; 1 without."""
    if not table:
        return 1.0
    ordered = sorted(table, key=lambda r: r.up_to)
    return next((r.passes for r in ordered if elems <= r.up_to), ordered[-1].passes)


@dataclass(frozen=True)
class VectorUnit:
    """SIMD unit for non-GEMM work: lanes x ops per lane per cycle."""
    lanes: int
    ops_per_lane_cycle: int = 1
    row_passes: tuple[RowPasses, ...] = ()   # reads of a row reduction's input by row length (none: one read,
    #                                          rows kept on chip)


@dataclass(frozen=True)
class MemLevel:
    """One memory level: capacity, bandwidth (bytes/cycle, reads and writes share it), latency, held operands."""
    name: str
    kind: MemKind                    # flash (optional, outermost: weights only), offchip (DRAM/HBM), sram (on chip)
    capacity_bytes: int
    bandwidth_bytes_per_cycle: float
    latency_cycles: int = 0          # off-chip: per transfer; sram: per tile fetch (pipelined timing)
    holds: tuple[Operand, ...] = ("input", "weight", "output")
    double_buffered: bool = True
    shared: bool = False             # on-chip: one level serving all cores (else one per core); off-chip is shared
    resident_fraction: float = 0.0   # on-chip: share of capacity kept for activations between kernels (fusion full)
    burst_bytes: int = 1             # off-chip and flash: each contiguous run of a transfer moves whole bursts
    weights: str = "overflow"        # flash: which weights live here: overflow | all | none | mlp | a glob on kernels
    staging_bytes: int | None = None  # flash: DRAM bytes holding weights read ahead of use (None: no limit)

    @property
    def resident_bytes(self) -> int:
        """Bytes reserved for activations kept between kernels."""
        return int(self.capacity_bytes * self.resident_fraction)


@dataclass(frozen=True)
class EnergyEntry:
    """Energy of one action in pJ with where the number comes from."""
    pj: float
    source: str
    node: str = ""


@dataclass(frozen=True)
class EnergyDefaults:
    """Fill the actions an arch does not list from arch/energy_model.py: at the arch's node_nm (or at `node_nm`
    here, when the energy figures are taken at another node than the chip's), with its off-chip memory type."""
    node_nm: float | None = None  # None: the arch's top-level node_nm (the loader fills it in)
    offchip: str = ""            # HBM2, HBM2E, GDDR6, LPDDR4, DDR4, DDR3; "" leaves off-chip entries to the arch
    flash: str = ""              # UFS4, NVMe: the flash level's read energy; "" leaves it to the arch


@dataclass(frozen=True)
class StaticPower:
    """Static (leakage) power of one instance of a component in mW, with where the number comes from."""
    mw: float
    source: str
    node: str = ""


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action (pJ) and static power (mW), every entry sourced; action names are listed in sim/energy.py."""
    node: str = ""                   # where the table's figures come from (a label); "": the arch's node_nm
    actions: dict[str, EnergyEntry] = field(default_factory=dict)
    static_mw: float = 0.0           # chip-wide static power not attributed to a component (reported as `static`)
    static_source: str = ""
    defaults: EnergyDefaults | None = None
    static_mw_per_mm2: float = 0.0   # leakage that grows with the chip: x each component's mm^2 (arch.area needed)
    # per component: `array` (one core's arrays), `vector` (one core's lanes) or a memory level (one copy: private
    # levels have one per core); reported as `static.<component>`
    static_components: dict[str, StaticPower] = field(default_factory=dict)
    # False: a PE spends energy only on its MACs (ideal clock gating). True: also `array.idle_pe_cycle` for every PE
    # and cycle the array is busy in which that PE does no MAC (clocks not gated per PE, as Accelergy counts them)
    charge_idle_pes: bool = False


@dataclass(frozen=True)
class Dvfs:
    """Clock vs supply voltage (arch/power.py): dynamic energy per action grows with V^2 (P_dyn = a C V^2 f); V is at
    its floor up to `knee_hz` and rises linearly to the arch's clock_hz (the clock the energy table holds for), so
    above the knee dynamic power grows ~ f^3. `v_floor` is V at the knee / V at clock_hz."""
    knee_hz: float
    v_floor: float
    min_hz: float                    # the lowest clock a power cap may set
    source: str = ""


@dataclass(frozen=True)
class PowerSpec:
    """Board/chip power limits: the TDP the report checks against, and an optional cap that lowers the clock."""
    tdp_w: float = 0.0               # 0: none given
    tdp_source: str = ""
    cap_w: float = 0.0               # 0: no cap; else a run whose average power exceeds it runs at a lower clock
    dvfs: Dvfs | None = None         # how clock trades against voltage (needed with cap_w)


@dataclass(frozen=True)
class AreaTable:
    """Optional measured overrides of the area model (arch/area_model.py; 0: use the model) at the arch's node_nm."""
    node_nm: float | None = None     # deprecated spelling of the arch's top-level node_nm (the loader fills it in)
    pe_mm2: float = 0.0
    sram_mm2_per_mib: float = 0.0
    vector_lane_mm2: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class ArchConfig:
    """A whole accelerator: one core with its array, vector unit and memory levels (outermost first)."""
    name: str
    clock_hz: float
    array: PEArray
    vector: VectorUnit
    memory: tuple[MemLevel, ...]
    energy: EnergyTable
    timing: TimingMode = "pipelined"
    description: str = ""
    cores: int = 1                   # identical cores; private levels are per core, shared levels are split
    area: AreaTable | None = None    # node (and overrides) for area; None: the arch reports no area
    kernel_overhead_cycles: int = 0  # fixed start cost of every kernel (a GPU's launch, ramp and tail), fitted
    power: PowerSpec | None = None   # TDP, power cap and DVFS rule; None: the arch gives no power limits
    # process node in nm: the one setting the energy model's defaults (energy.defaults) and the area model use;
    # None: neither model (energy entries all given, no area)
    node_nm: float | None = None

    @property
    def offchip(self) -> MemLevel:
        """The off-chip working memory (DRAM/HBM): the first level of kind offchip."""
        return next(lv for lv in self.memory if lv.kind == "offchip")

    @property
    def cache(self) -> MemLevel | None:
        """The hardware-managed cache between off-chip memory and the cores (kind cache, e.g. a GPU's L2), or None:
        it holds no tiles; it serves lockstep cores' duplicate loads once and later kernels' reads of recent tensors
        (compiler/residency.py, cache_hits)."""
        return next((lv for lv in self.memory if lv.kind == "cache"), None)

    @property
    def flash(self) -> MemLevel | None:
        """The flash level that weights may stream from (the outermost level), or None."""
        return self.memory[0] if self.memory[0].kind == "flash" else None

    @property
    def onchip(self) -> tuple[MemLevel, ...]:
        """The on-chip levels, outermost first (every level after the off-chip one)."""
        return tuple(lv for lv in self.memory if lv.kind == "sram")

    def home(self, operand: str) -> MemLevel:
        """The on-chip level that holds `operand` while it is used (validated to exist)."""
        for level in self.onchip:
            if operand in level.holds:
                return level
        raise KeyError(operand)

    @property
    def peak_macs_per_cycle(self) -> int:
        """R * C * arrays * MACs per PE per cycle * cores."""
        a = self.array
        return a.rows * a.cols * a.count * a.macs_per_pe_cycle * self.cores

    def per_core(self, reserve_bytes: int = 0) -> ArchConfig:
        """The share of the chip one core sees for its tiles: shared on-chip levels and the off-chip bandwidth
        divided among the cores (bandwidth shared fairly), private levels whole, and `reserve_bytes` of the
        activation level taken by activations kept on chip between kernels (chip-wide bytes: a private level gives
        up each core's share of them). The mapping search tiles for this."""
        if self.cores == 1 and not reserve_bytes:
            return self
        n = self.cores
        keeper = self.home("input").name

        def view(lv: MemLevel) -> MemLevel:
            if lv.kind in ("offchip", "flash"):
                return replace(lv, bandwidth_bytes_per_cycle=lv.bandwidth_bytes_per_cycle / n)
            taken = reserve_bytes if lv.shared else -(-reserve_bytes // n)
            capacity = lv.capacity_bytes - (taken if lv.name == keeper else 0)
            if lv.shared:
                return replace(lv, capacity_bytes=capacity // n,
                               bandwidth_bytes_per_cycle=lv.bandwidth_bytes_per_cycle / n)
            return replace(lv, capacity_bytes=capacity)
        return replace(self, memory=tuple(view(lv) for lv in self.memory), cores=1)


__all__ = [
    "DTYPE_BYTES",
    "OPERANDS",
    "ArchConfig",
    "AreaTable",
    "DType",
    "Dataflow",
    "Dvfs",
    "EnergyDefaults",
    "EnergyEntry",
    "EnergyTable",
    "MemKind",
    "MemLevel",
    "Operand",
    "PEArray",
    "PowerSpec",
    "RowPasses",
    "StaticPower",
    "TimingMode",
    "VectorUnit",
    "row_passes_for",
]
