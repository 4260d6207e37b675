"""Chip area (mm^2) of an arch's PEs, on-chip SRAM and vector lanes, from sourced anchors and documented rules.

Anchors:
  - Operator areas at 45 nm (Horowitz, ISSCC 2014, "rough energy/area costs"): 8-bit add 36 um^2, mult 282; 32-bit
    add 137, mult 3495; fp16 add 1360, mult 1640; fp32 add 4184, mult 7700.
  - TPU v1 (Jouppi et al., ISCA 2017): die <= 331 mm^2 at 28 nm; the matrix unit is 24% of it (65,536 int8 MACs) and
    the 24 MiB unified buffer 29%.
  - 7 nm SRAM: TSMC N7 high-density bitcell 0.027 um^2 (Chang et al., IEDM 2016/ISSCC 2017), with an assumed 60%
    array efficiency (periphery, sense amplifiers, redundancy).
Rules:
  - Logic area scales with (node / 45)^2 (ideal scaling; optimistic below ~16 nm).
  - A PE is a multiplier at the array's dtype and an adder at its accumulator dtype, times an overhead factor
    calibrated so that TPU v1's matrix unit comes out at 24% of 331 mm^2 (registers, wiring, control).
  - SRAM mm^2 per MiB: log-log interpolation between the 28 nm (TPU v1) and 7 nm (N7 bitcell) anchors.
  - A vector lane is a 32-bit multiplier and adder with the same overhead factor.
Every default can be overridden in the arch's `area` section; the report says which numbers came from where.
"""
from __future__ import annotations

from math import log

from tilesim.arch.config import ArchConfig
from tilesim.arch.dtypes import DTYPES

MULT_UM2 = {"int8": 282, "int32": 3495, "fp16": 1640, "fp32": 7700}
ADD_UM2 = {"int8": 36, "int32": 137, "fp16": 1360, "fp32": 4184}

TPU_V1_MXU_MM2 = 0.24 * 331          # ISCA 2017 floor plan: matrix unit 24% of a <= 331 mm^2 die
TPU_V1_UB_MM2_PER_MIB = 0.29 * 331 / 24
N7_MM2_PER_MIB = 0.027e-6 * 8 * 2**20 / 0.6


def _mult_um2(dtype: str) -> float:
    """45 nm multiplier area; other widths scale with the square of the significand (ints: of the bits)."""
    if dtype in MULT_UM2:
        return MULT_UM2[dtype]
    t = DTYPES[dtype]
    if not t.is_float:
        return MULT_UM2["int8"] * (t.bits / 8) ** 2
    return MULT_UM2["fp16"] * (t.significand_bits / 11) ** 2


def _add_um2(dtype: str) -> float:
    """45 nm adder area; other widths scale linearly."""
    if dtype in ADD_UM2:
        return ADD_UM2[dtype]
    t = DTYPES[dtype]
    if not t.is_float:
        return ADD_UM2["int8"] * t.bits / 8
    return ADD_UM2["fp16"] * t.bits / 16


def _logic_scale(node_nm: float) -> float:
    return (node_nm / 45) ** 2


# overhead calibrated on TPU v1: measured matrix-unit area / ideal (int8 mult + int32 add) area at 28 nm
PE_OVERHEAD = TPU_V1_MXU_MM2 / (65536 * (MULT_UM2["int8"] + ADD_UM2["int32"]) * 1e-6 * _logic_scale(28))


def pe_mm2(dtype: str, acc_dtype: str, node_nm: float) -> float:
    """One PE: a multiplier at `dtype` and an accumulator adder at `acc_dtype`, with the calibrated overhead."""
    return (_mult_um2(dtype) + _add_um2(acc_dtype)) * 1e-6 * _logic_scale(node_nm) * PE_OVERHEAD


def sram_mm2_per_mib(node_nm: float) -> float:
    """SRAM density by log-log interpolation between TPU v1's 28 nm buffer and the N7 bitcell."""
    t = log(28 / node_nm) / log(28 / 7)
    return float(TPU_V1_UB_MM2_PER_MIB * (N7_MM2_PER_MIB / TPU_V1_UB_MM2_PER_MIB) ** t)


def vector_lane_mm2(node_nm: float) -> float:
    """One vector lane: a 32-bit multiplier and adder, with the PE overhead factor."""
    return (MULT_UM2["int32"] + ADD_UM2["int32"]) * 1e-6 * _logic_scale(node_nm) * PE_OVERHEAD


def area_mm2(arch: ArchConfig) -> dict[str, float]:
    """Area by component (array, each on-chip level, vector) in mm^2; empty when the arch gives no area section.
    Private levels count once per core, shared levels once."""
    spec = arch.area
    if spec is None:
        return {}
    a, n, node = arch.array, arch.cores, spec.node_nm
    if node is None:                    # the loader fills it from the top-level node_nm (or refuses the arch)
        return {}
    pe = spec.pe_mm2 or pe_mm2(a.dtype, a.acc_dtype, node)
    per_mib = spec.sram_mm2_per_mib or sram_mm2_per_mib(node)
    lane = spec.vector_lane_mm2 or vector_lane_mm2(node)
    out = {"array": pe * a.rows * a.cols * a.count * n}
    for lv in arch.onchip + ((arch.cache,) if arch.cache else ()):
        out[lv.name] = per_mib * lv.capacity_bytes / 2**20 * (1 if lv.shared or lv.kind == "cache" else n)
    out["vector"] = lane * arch.vector.lanes * n
    return out
