"""Energy = action counts x the arch's table (Accelergy's idea); a missing entry for an action that occurs is an error.

Actions (arch/energy_model.py's action_names lists them for an arch):
  mac.<dtype>            one multiply-accumulate
  array.reg_byte         a byte read or written in a PE's own register (the stationary operand every MAC; an OS
                         accumulator is read and written)
  array.hop_byte         a byte moved to the next PE and written into its register (the moving operands every
                         MAC; a WS/IS partial sum at psum_bytes)
  array.idle_pe_cycle    a PE in a busy array doing no MAC for a cycle, counted only with energy.charge_idle_pes:
                         array busy cycles x PEs (all arrays and cores) - MACs / MACs per PE per cycle
  clock.cycle            one cycle of the chip's clock tree and always-on logic, every cycle of a kernel's span,
                         counted only when the arch's table has the entry (its power then scales with f V^2)
  vector.op              one vector-unit op
  <level>.read_byte      a byte read from a memory level (feeds to the array, drains, stores to off-chip)
  <level>.write_byte     a byte written to a memory level (fills, partial sums, results)
  <cache>.read_byte      a byte the cores read through the hardware cache: every off-chip read plus every hit
  <cache>.write_byte     a byte written into the cache: fills of off-chip reads and every store (write-back)
Static power: energy.static_mw (reported as `static`) plus `static.<component>` per component: its
energy.static_components entry x its instances + energy.static_mw_per_mm2 x its area; energy = power x time.
"""
from __future__ import annotations

from collections import Counter
from math import ceil

from tilesim.arch.area_model import area_mm2
from tilesim.arch.config import DTYPE_BYTES, ArchConfig
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.dtypes import DTYPES
from tilesim.arch.errors import InputError
from tilesim.compiler.attention import AttentionMapping
from tilesim.compiler.cost import array_feed_elems
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.schedule import Kernel
from tilesim.compiler.sparsity import weight_bytes_per_fed_value
from tilesim.core.commands import TileCommands


def psum_bytes(dtype: str, acc_dtype: str, rows: int) -> float:
    """Bytes of a partial sum moving between PEs: an integer one needs 2 x the operand bits (the product) +
    ceil(log2(rows)) bits (the sum of up to `rows` products), at most the accumulator's; a float one moves at the
    accumulator's width (its exponent does not grow with the sum)."""
    if DTYPES[acc_dtype].is_float or DTYPES[dtype].is_float:
        return float(DTYPE_BYTES[acc_dtype])
    bits = 2 * DTYPES[dtype].bits + max(rows - 1, 0).bit_length()
    return min(bits, DTYPES[acc_dtype].bits) / 8


def _array_counts(counts: Counter, work: Contraction, n: int, dataflow: str, arch: ArchConfig, acc: float,
                  homes: tuple[str, str, str]) -> None:
    """MACs, in-array register reads and PE-to-PE hops, and buffer feeds of `n` copies of one contraction."""
    home_a, home_b, home_c = homes
    a_r, b_r, c_w, c_r = array_feed_elems(work, dataflow, arch.array.rows, arch.array.cols)
    a, b = DTYPE_BYTES[work.a_dtype], weight_bytes_per_fed_value(work)     # weights as stored, metadata included
    macs = n * work.macs
    counts[f"mac.{work.a_dtype}"] += macs
    # inside the array: the stationary operand is read from each PE's register every MAC (OS reads and writes
    # its accumulator); the two moving operands hop to the next PE every MAC, the partial sum (WS, IS) at
    # psum_bytes: the width it can reach in the array, not the accumulator's
    sizes = {"input": a, "weight": b, "output": acc}
    held = DATAFLOWS[dataflow].stationary
    stationary = sizes[held] * (2 if held == "output" else 1)
    moving = sum(size for operand, size in sizes.items() if operand not in (held, "output"))
    if held != "output":
        moving += psum_bytes(work.a_dtype, arch.array.acc_dtype, arch.array.rows)
    counts["array.reg_byte"] += ceil(macs * stationary)
    counts["array.hop_byte"] += ceil(macs * moving)
    counts[f"{home_a}.read_byte"] += ceil(n * a_r * a)
    counts[f"{home_b}.read_byte"] += ceil(n * b_r * b)
    counts[f"{home_c}.write_byte"] += ceil(n * c_w * acc)
    counts[f"{home_c}.read_byte"] += ceil(n * c_r * acc)


def share_feeds(kernel: Kernel, arch: ArchConfig) -> tuple[int, int, int, int]:
    """array_feed_elems summed over the kernel's per-core shares (the whole contraction on one core)."""
    totals = [0, 0, 0, 0]
    for share, n in kernel.array_parts(arch.cores):
        for i, f in enumerate(array_feed_elems(share, kernel.mapping.dataflow, arch.array.rows, arch.array.cols)):
            totals[i] += n * f
    return tuple(totals)


def cache_hit_bytes(kernel: Kernel) -> int:
    """Bytes a kernel reads as hits in the hardware cache: each hit operand once (its A, B or, for attention, Q
    and K, V elements), plus its hit extra inputs."""
    res = kernel.residency
    if not res.from_cache:
        return 0
    a_b, b_b = kernel.work.operand_read_bytes()
    return int((a_b if res.a else 0) + (b_b if res.b else 0) + res.extra_bytes)


def action_counts(kernel: Kernel, cmds: TileCommands, arch: ArchConfig) -> Counter:
    """Counts of every energy action one kernel performs (MACs, vector ops, bytes per level read and written)."""
    counts: Counter = Counter()
    dram = arch.offchip.name
    read_in, read_w = cmds.total("input_bytes"), cmds.total("weight_bytes")
    read_psum, written = cmds.total("psum_bytes"), cmds.total("store_bytes")
    counts[f"{dram}.read_byte"] += read_in + read_w + read_psum
    counts[f"{dram}.write_byte"] += written
    work = kernel.work
    if arch.cache is not None:
        hits = cache_hit_bytes(kernel)
        counts[f"{arch.cache.name}.read_byte"] += read_in + read_w + read_psum + hits
        counts[f"{arch.cache.name}.write_byte"] += read_in + read_w + read_psum + written
    if work.on_array:
        acc = DTYPE_BYTES[arch.array.acc_dtype]
        home_a, home_b, home_c = (arch.home(o).name for o in ("input", "weight", "output"))
        # fills from off-chip are buffer writes; stores to off-chip are buffer reads
        counts[f"{home_a}.write_byte"] += read_in
        counts[f"{home_b}.write_byte"] += read_w
        counts[f"{home_c}.write_byte"] += read_psum
        counts[f"{home_c}.read_byte"] += written
        for part, n in kernel.array_parts(arch.cores):   # attention: S = QK^T and O = SV, S kept in the buffers
            _array_counts(counts, part, n, kernel.mapping.dataflow, arch, acc, (home_a, home_b, home_c))
        if arch.energy.charge_idle_pes:
            a = arch.array
            pe_cycles = cmds.total("compute") * a.rows * a.cols * a.count * arch.cores
            counts["array.idle_pe_cycle"] += max(pe_cycles - ceil(work.macs / a.macs_per_pe_cycle), 0)
        if kernel.epilogue is not None:
            counts["vector.op"] += kernel.epilogue.ops
        if isinstance(kernel.mapping, AttentionMapping):
            counts["vector.op"] += work.vector_ops(kernel.mapping.block_kv)
    else:
        home = arch.home("input").name
        counts["vector.op"] += work.ops
        counts[f"{home}.write_byte"] += read_in + written    # fill, then results
        counts[f"{home}.read_byte"] += read_in + written     # feed the unit, then drain to off-chip
    return Counter({k: v for k, v in counts.items() if v})


def clock_counts(span_cycles: int, arch: ArchConfig) -> Counter:
    """clock.cycle for every cycle of a kernel's span, when the arch's energy table has that entry."""
    return Counter({"clock.cycle": span_cycles}) if "clock.cycle" in arch.energy.actions and span_cycles else Counter()


def dynamic_energy_pj(counts: Counter, arch: ArchConfig, where: str) -> dict[str, float]:
    """pJ per action: count x table entry; an action with a non-zero count and no entry is an error."""
    table = arch.energy.actions
    missing = sorted(a for a in counts if a not in table)
    if missing:
        raise InputError(f"energy.actions: arch '{arch.name}' has no entry for {', '.join(missing)} "
                         f"(needed by {where}); add it to the arch's energy table")
    return {a: float(c) * table[a].pj for a, c in sorted(counts.items())}


def static_power_components_mw(arch: ArchConfig) -> dict[str, float]:
    """Static power by breakdown key (mW): `static` = energy.static_mw (chip-wide), and `static.<component>` =
    its energy.static_components entry x instances (array and vector once per core; a level once per copy: private
    levels per core, shared and off-chip levels once) + energy.static_mw_per_mm2 x the area model's mm^2 of it."""
    e = arch.energy
    out = {"static": e.static_mw} if e.static_mw else {}
    per_mm2 = e.static_mw_per_mm2
    area = area_mm2(arch) if per_mm2 else {}
    copies = {"array": arch.cores, "vector": arch.cores}
    copies.update({lv.name: arch.cores if lv.kind == "sram" and not lv.shared else 1 for lv in arch.memory})
    for comp, n in copies.items():
        entry = e.static_components.get(comp)
        mw = (entry.mw * n if entry else 0.0) + per_mm2 * area.get(comp, 0.0)
        if mw:
            out[f"static.{comp}"] = mw
    return out


def static_power_mw(arch: ArchConfig) -> float:
    """Total static power (mW): the chip-wide part plus every component's."""
    return sum(static_power_components_mw(arch).values())


def static_energy_pj(arch: ArchConfig, cycles: int, power_mw: float | None = None) -> float:
    """Leakage: static power (mW) x time; 1 mW for 1 s = 1e9 pJ."""
    power = static_power_mw(arch) if power_mw is None else power_mw
    return power * 1e9 * cycles / arch.clock_hz


def by_component(action_pj: dict[str, float]) -> dict[str, float]:
    """Fold action energies into components: the part of the action name before its first dot."""
    out: dict[str, float] = {}
    for action, pj in action_pj.items():
        comp = action.split(".")[0]
        out[comp] = out.get(comp, 0.0) + pj
    return out


__all__ = [
    "action_counts",
    "by_component",
    "clock_counts",
    "dynamic_energy_pj",
    "static_energy_pj",
    "static_power_components_mw",
    "static_power_mw",
]
