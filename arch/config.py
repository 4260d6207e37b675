"""Frozen dataclasses describing an accelerator: PE array, vector unit, memory levels, energy table."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import ClassVar, Literal

from tilesim.arch.dataflow import Dataflow
from tilesim.arch.dtypes import DTYPE_BYTES, DType

TimingMode = Literal["pipelined", "scalesim"]
MemKind = Literal["offchip", "sram", "flash", "cache"]
Operand = Literal["input", "weight", "output"]

OPERANDS: tuple[Operand, ...] = ("input", "weight", "output")


def doc(text: str) -> dict[str, str]:
    """A config field's metadata: its one-line description, which docs/arch-reference.md (arch/reference.py) lists
    with the field's unit (from its name: _bytes, _hz, _cycles, _mw, _w, _nm), default and allowed values."""
    return {"doc": text}


def accepted_keys(cls: type) -> list[str]:
    """The keys an arch YAML may give for config dataclass `cls`: its fields, then the input-only keys the loader
    converts into one (MemLevel's bandwidth_gb_s). Error messages and docs/arch-reference.md list these."""
    return [f.name for f in fields(cls)] + list(getattr(cls, "INPUT_KEYS", {}))


@dataclass(frozen=True)
class PEArray:
    """A grid of rows x cols multiply-accumulate PEs; `count` identical arrays per core."""
    rows: int = field(metadata=doc("PE rows (the array's height)"))
    cols: int = field(metadata=doc("PE columns (the array's width)"))
    dataflow: Dataflow = field(default="ws", metadata=doc("which operand stays in the PEs: weight (ws), output (os) "
        "or input (is) stationary"))
    dtype: DType = field(default="int8", metadata=doc("the MACs' operand type (a workload computes in it unless "
        "--dtype says otherwise)"))
    acc_dtype: DType = field(default="int32", metadata=doc("the accumulators' type"))
    count: int = field(default=1, metadata=doc("identical arrays per core"))
    macs_per_pe_cycle: int = field(default=1, metadata=doc("MACs each PE completes per cycle"))
    dataflows: tuple[Dataflow, ...] = field(default=(), metadata=doc("other dataflows the hardware supports; the "
        "mapping search may pick them"))
    sparsity: tuple[str, ...] = field(default=(), metadata=doc("weight-sparsity patterns whose zeros the array "
        "skips: 2:4, structured, unstructured, rowwise:B (arch/sparsity.py); weights stored compressed move fewer "
        "bytes whatever this says"))


@dataclass(frozen=True)
class RowPasses:
    """How many times a row reduction (Softmax) reads each input row of at most `up_to` elements (fractions: a
    slower kernel's time as extra reads); rows longer than every entry's `up_to` take the last entry's."""
    up_to: int = field(metadata=doc("row length in elements this entry covers (up to and including)"))
    passes: float = field(metadata=doc("reads of each input row (1 to 16)"))


def row_passes_for(table: tuple[RowPasses, ...], elems: int) -> float:
    """Passes over a row of `elems` elements: the first entry (by up_to) that holds it, else the last; 1 without."""
    if not table:
        return 1.0
    ordered = sorted(table, key=lambda r: r.up_to)
    return next((r.passes for r in ordered if elems <= r.up_to), ordered[-1].passes)


@dataclass(frozen=True)
class VectorUnit:
    """SIMD unit for non-GEMM work: lanes x ops per lane per cycle."""
    lanes: int = field(metadata=doc("SIMD lanes"))
    ops_per_lane_cycle: int = field(default=1, metadata=doc("operations per lane per cycle"))
    row_passes: tuple[RowPasses, ...] = field(default=(), metadata=doc("reads of a row reduction's input by row "
        "length (none: one read, rows kept on chip)"))


@dataclass(frozen=True)
class MemLevel:
    """One memory level: capacity, bandwidth (bytes/cycle, reads and writes share it), latency, held operands."""
    name: str = field(metadata=doc("the level's name (energy actions and --set paths use it: "
        "memory.<name>.<field>)"))
    kind: MemKind = field(metadata=doc("flash (optional, outermost: weights only), offchip (DRAM/HBM), sram (on "
        "chip), cache (hardware-managed, e.g. a GPU's L2)"))
    capacity_bytes: int = field(metadata=doc("capacity (on-chip private levels: per core)"))
    bandwidth_bytes_per_cycle: float = field(metadata=doc("bytes per clock cycle, reads and writes together (or give "
        "bandwidth_gb_s)"))
    latency_cycles: int = field(default=0, metadata=doc("off-chip: per transfer; sram: per tile fetch (pipelined "
        "timing)"))
    holds: tuple[Operand, ...] = field(default=("input", "weight", "output"), metadata=doc("operands kept here (each "
        "operand has exactly one on-chip home)"))
    double_buffered: bool = field(default=True, metadata=doc("tiles are double-buffered (loads overlap compute; half "
        "the capacity per tile)"))
    shared: bool = field(default=False, metadata=doc("on-chip: one level serving all cores (else one per core); "
        "off-chip is always shared"))
    resident_fraction: float = field(default=0.0, metadata=doc("on-chip: share of capacity kept for activations "
        "between kernels (fusion full), 0 to < 1"))
    burst_bytes: int = field(default=1, metadata=doc("off-chip and flash: each contiguous run of a transfer moves "
        "whole bursts"))
    weights: str = field(default="overflow", metadata=doc("flash: which weights live here: overflow, all, none, mlp, "
        "or a glob on kernel names"))
    staging_bytes: int | None = field(default=None, metadata=doc("flash: DRAM bytes holding weights read ahead of "
        "use (null: no limit)"))
    # keys the loader accepts besides the fields, converted into one: name -> description
    INPUT_KEYS: ClassVar[dict[str, str]] = {
        "bandwidth_gb_s": "bandwidth in GB/s (10^9 bytes/s; units such as TB/s allowed), converted to "
                          "bandwidth_bytes_per_cycle with clock_hz; give one of the two"}

    @property
    def resident_bytes(self) -> int:
        """Bytes reserved for activations kept between kernels."""
        return int(self.capacity_bytes * self.resident_fraction)


@dataclass(frozen=True)
class EnergyEntry:
    """Energy of one action in pJ with where the number comes from."""
    pj: float = field(metadata=doc("energy of one action (pJ)"))
    source: str = field(metadata=doc("where the number comes from"))
    node: str = field(default="", metadata=doc("the node or part the number is for (a label)"))


@dataclass(frozen=True)
class EnergyDefaults:
    """Fill the actions an arch does not list from arch/energy_model.py: at the arch's node_nm (or at `node_nm`
    here, when the energy figures are taken at another node than the chip's), with its off-chip memory type."""
    node_nm: float | None = field(default=None, metadata=doc("the energy model's node when it is not the chip's "
        "(null: the top-level node_nm)"))
    offchip: str = field(default="", metadata=doc("off-chip memory type: HBM2, HBM2E, GDDR6, LPDDR4, DDR4, DDR3; "
        "empty: the arch gives the off-chip entries"))
    flash: str = field(default="", metadata=doc("flash type of a flash level: UFS4, NVMe; empty: the arch gives its "
        "read energy"))
    register_clock_in_static: bool = field(default=False, metadata=doc("static power is a measured idle with the "
        "clocks running, so it already holds the PE registers' clock power: the in-array register entries charge "
        "their data switching only (1.06 of Aladdin's 9.0 fJ per bit at 40 nm)"))


@dataclass(frozen=True)
class StaticPower:
    """Static (leakage) power of one instance of a component in mW, with where the number comes from."""
    mw: float = field(metadata=doc("static power of one instance (mW)"))
    source: str = field(metadata=doc("where the number comes from"))
    node: str = field(default="", metadata=doc("the node the number is for (a label)"))


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action (pJ) and static power (mW), every entry sourced; action names are listed in sim/energy.py."""
    node: str = field(default="", metadata=doc("where the table's figures come from (a label)"))
    actions: dict[str, EnergyEntry] = field(default_factory=dict, metadata=doc("energy per action by name: "
        "mac.<dtype>, array.reg_byte, array.hop_byte, array.idle_pe_cycle, vector.op, clock.cycle, <level>.read_byte, "
        "<level>.write_byte"))
    static_mw: float = field(default=0.0, metadata=doc("chip-wide static power not attributed to a component "
        "(reported as `static`)"))
    static_source: str = field(default="", metadata=doc("where static_mw comes from"))
    defaults: EnergyDefaults | None = field(default=None, metadata=doc("fill the actions not listed from the energy "
        "model (null: list them all)"))
    static_mw_per_mm2: float = field(default=0.0, metadata=doc("leakage that grows with the chip: x each component's "
        "mm^2 (needs node_nm)"))
    static_components: dict[str, StaticPower] = field(default_factory=dict, metadata=doc("static power per "
        "component: array (one core's arrays), vector (one core's lanes) or a memory level (one copy)"))
    charge_idle_pes: bool = field(default=False, metadata=doc("also charge array.idle_pe_cycle for every PE and busy "
        "cycle without a MAC (clocks not gated per PE, as Accelergy counts them); false: ideal clock gating"))


@dataclass(frozen=True)
class Dvfs:
    """Clock vs supply voltage (arch/power.py): dynamic energy per action grows with V^2 (P_dyn = a C V^2 f); V is at
    its floor up to `knee_hz` and rises linearly to the arch's clock_hz (the clock the energy table holds for), so
    above the knee dynamic power grows ~ f^3. `v_floor` is V at the knee / V at clock_hz."""
    knee_hz: float = field(metadata=doc("clock up to which the voltage stays at its floor"))
    v_floor: float = field(metadata=doc("voltage at the knee / voltage at clock_hz, in (0, 1]"))
    min_hz: float = field(metadata=doc("the lowest clock a power cap may set"))
    source: str = field(default="", metadata=doc("where the rule comes from"))


@dataclass(frozen=True)
class PowerSpec:
    """Board/chip power limits: the TDP the report checks against, and an optional cap that lowers the clock."""
    tdp_w: float = field(default=0.0, metadata=doc("thermal design power the report checks the average power against "
        "(0: none)"))
    tdp_source: str = field(default="", metadata=doc("where tdp_w comes from"))
    cap_w: float = field(default=0.0, metadata=doc("power cap: a run whose average power exceeds it runs at a lower "
        "clock (0: no cap)"))
    dvfs: Dvfs | None = field(default=None, metadata=doc("how clock trades against voltage (needed with cap_w)"))


@dataclass(frozen=True)
class AreaTable:
    """Optional measured overrides of the area model (arch/area_model.py; 0: use the model) at the arch's node_nm."""
    node_nm: float | None = field(default=None, metadata=doc("deprecated: give node_nm at the top level"))
    pe_mm2: float = field(default=0.0, metadata=doc("one PE's area (0: the area model's)"))
    sram_mm2_per_mib: float = field(default=0.0, metadata=doc("on-chip SRAM area per MiB (0: the area model's)"))
    vector_lane_mm2: float = field(default=0.0, metadata=doc("one vector lane's area (0: the area model's)"))
    source: str = field(default="", metadata=doc("where the overrides come from"))


@dataclass(frozen=True)
class ArchConfig:
    """A whole accelerator: one core with its array, vector unit and memory levels (outermost first)."""
    name: str = field(metadata=doc("the arch's name in reports"))
    clock_hz: float = field(metadata=doc("clock frequency (units: MHz, GHz; a bare number is Hz)"))
    array: PEArray = field(metadata=doc("the PE array"))
    vector: VectorUnit = field(metadata=doc("the vector unit"))
    memory: tuple[MemLevel, ...] = field(metadata=doc("memory levels, outermost first: optional flash, one offchip, "
        "then on-chip levels (sram, at most one cache)"))
    energy: EnergyTable = field(metadata=doc("energy per action and static power"))
    timing: TimingMode = field(default="pipelined", metadata=doc("timing model: pipelined (tilesim's) or scalesim "
        "(SCALE-Sim's)"))
    description: str = field(default="", metadata=doc("one line shown by `tilesim list archs`"))
    cores: int = field(default=1, metadata=doc("identical cores; private levels are per core, shared levels are "
        "split"))
    area: AreaTable | None = field(default=None, metadata=doc("area-model overrides (null with node_nm: the model's "
        "areas; without node_nm: no area)"))
    kernel_overhead_cycles: int = field(default=0, metadata=doc("fixed start cost of every kernel (a GPU's launch, "
        "ramp and tail)"))
    power: PowerSpec | None = field(default=None, metadata=doc("TDP, power cap and DVFS rule (null: no power "
        "limits)"))
    node_nm: float | None = field(default=None, metadata=doc("process node: the one setting the energy model's "
        "defaults and the area model use (null: neither)"))
    epilogue_ops: tuple[str, ...] | None = field(default=None, metadata=doc("elementwise op types the array's GEMM "
        "kernels can apply to results as they drain (a GPU's GEMM library: bias/residual Add, Relu, Gelu); others run "
        "as vector kernels (null: every elementwise op)"))

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

    @cached_property
    def onchip(self) -> tuple[MemLevel, ...]:
        """The on-chip levels, outermost first (every level after the off-chip one); worked out once (the mapping
        search asks for them hundreds of thousands of times in a sweep)."""
        return tuple(lv for lv in self.memory if lv.kind == "sram")

    def home(self, operand: str) -> MemLevel:
        """The on-chip level that holds `operand` while it is used (validated to exist)."""
        for level in self.onchip:
            if operand in level.holds:
                return level
        raise KeyError(operand)

    @property
    def double_buffered(self) -> bool:
        """Whether the levels holding the input, the weights and the output all double-buffer their tiles (so a
        tile's loads overlap the compute of the one before)."""
        return all(self.home(o).double_buffered for o in ("input", "weight", "output"))

    def loads_once(self, operand: str) -> bool:
        """Whether lockstep cores' identical tiles of `operand` cross the off-chip channel once: a shared on-chip
        level holds them for all cores, or a hardware cache that holds the operand serves every core after the
        first."""
        return self.home(operand).shared or (self.cache is not None and operand in self.cache.holds)

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
    "accepted_keys",
    "row_passes_for",
]
