"""Default energy per action from the published tables (docs/design.md section 6), with documented rules between them.

Anchors: Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm) and Jouppi et al., ISCA 2021 (7 nm).
Rules, each stated where it is used:
  node scaling   E(node) = E45 * (E7 / E45) ** (ln(45 / node) / ln(45 / 7)): log-log interpolation between the two
                 anchors, extended with the same slope outside them; where only 45 nm is known, the int8
                 multiplier's ratio (0.07 / 0.2) stands in for E7 / E45.
  data types     a multiplier's energy grows with the square of its significand width, an adder's with its width
                 (int4, int16, fp8, bf16 are derived from int8, int32 and fp16 this way).
  SRAM size      Horowitz's 8 KB / 32 KB / 1 MB reads (10 / 20 / 100 pJ per 64 bit) follow ~sqrt(capacity) at
                 45 nm; Jouppi's 7 nm 8 KB / 1 MB reads (7.5 / 14 pJ) follow capacity ** 0.129.
  PE registers   per bit of what moves inside the array (docs/energy.md "In-array energy"): a register access is one
                 flip-flop write or read, 0.009 pJ/bit at 40/45 nm (Accelergy's Aladdin table plug-in,
                 data/reg.csv, a 1-stage register); a neighbour hop is a register write in the next PE plus a wire
                 one PE pitch long, 0.1 pJ/bit/mm at 40 nm (Keckler et al., "GPUs and the future of parallel
                 computing", IEEE Micro 2011: a 256-bit bus over 1 mm costs 26 pJ; Accelergy's Aladdin wire model,
                 1.627 fF/um x activity 0.2 x 1 V^2 = 0.33 pJ/bit/mm, is 3x higher); the pitch is sqrt(one PE's
                 area) from arch/area_model.py at the arch's area node (else the energy node). Both per-bit
                 energies are node-scaled with the int8-multiplier slope. (Eyeriss's preset keeps its own
                 published relative entries: its hop is a NoC transfer between large PEs.)
  idle PEs       (charged only with `energy.charge_idle_pes: true`) one MAC at the array's dtype per PE per busy-array
                 cycle without a MAC: SCALE-Sim v3's Accelergy flow (scale-sim rundir-accelergy/create_action_count.py)
                 charges every PE one `mac_random` every cycle, its clock-gated count left commented out. An upper
                 bound: a PE whose clock is not gated but whose operands are isolated spends less.
"""
from __future__ import annotations

from math import log
from typing import Any

from tilesim.arch.area_model import pe_mm2
from tilesim.arch.dtypes import DTYPES
from tilesim.arch.errors import InputError
from tilesim.arch.units import parse_bytes

Raw = dict[str, Any]     # a parsed YAML mapping, before validation
ANCHOR_45, ANCHOR_7 = 45.0, 7.0
HOROWITZ = "Horowitz, ISSCC 2014 (45 nm)"
JOUPPI = "Jouppi et al., ISCA 2021 (7 nm)"

# (multiply pJ, add pJ) per operation at 45 nm and 7 nm; None where the table has no entry
OPS = {
    "int8": ((0.2, 0.03), (0.07, 0.007)),
    "int32": ((3.1, 0.1), (None, 0.03)),
    "fp16": ((1.1, 0.4), (None, None)),
    "fp32": ((3.7, 0.9), (1.31, 0.38)),
}

# off-chip access energy per bit (docs/design.md section 6; DDR3 from Horowitz's 1300-2600 pJ per 64-bit access), and
# flash read energy per bit (energy.defaults.flash), from power / bandwidth in sequential reads:
#   UFS4  Samsung UFS 4.0 announcement (May 2022): 4,200 MB/s sequential read at 6.0 MB/s per mA; at the 2.5 V
#         VCC (NAND) rail (assumed: the rail the mA figure refers to) 2.5 V / 6.0 MB/s/mA = 417 pJ/B = 52.1 pJ/bit
#   NVMe  Samsung 990 PRO 1 TB data sheet: 5.4 W average power, 7,450 MB/s sequential read: 725 pJ/B = 90.6 pJ/bit
OFFCHIP_PJ_PER_BIT = {"HBM2": 3.9, "HBM2E": 6.0, "GDDR6": 7.5, "LPDDR4": 13.0, "DDR4": 20.0, "DDR3": 20.3,
                      "UFS4": 52.1, "NVMe": 90.6}
OFFCHIP_SOURCES = {"UFS4": "Samsung UFS 4.0 (2022): 6.0 MB/s per mA sequential read at 2.5 V VCC",
                   "NVMe": "Samsung 990 PRO data sheet: 5.4 W average at 7,450 MB/s sequential read"}


def node_scale(e45: float, e7: float | None, node_nm: float) -> float:
    """Energy at `node_nm` by log-log interpolation between the 45 and 7 nm anchors (int8-mult slope if no e7)."""
    ratio = (e7 / e45) if e7 else (0.07 / 0.2)
    return float(e45 * ratio ** (log(ANCHOR_45 / node_nm) / log(ANCHOR_45 / ANCHOR_7)))


def _op(kind: str, which: int, node_nm: float) -> float:
    (m45, a45), (m7, a7) = OPS[kind]
    return node_scale(m45, m7, node_nm) if which == 0 else node_scale(a45, a7, node_nm)


def mac_pj(dtype: str, node_nm: float) -> tuple[float, str]:
    """pJ of one multiply-accumulate at `dtype`, with how it was derived."""
    if dtype in OPS:
        return _op(dtype, 0, node_nm) + _op(dtype, 1, node_nm), f"mult + add, {HOROWITZ} / {JOUPPI}, node-scaled"
    if dtype not in DTYPES:
        raise InputError(f"energy: no default MAC energy for dtype '{dtype}'")
    t = DTYPES[dtype]
    if not t.is_float:                 # int4, int16 from int8: mult ~ bits^2, add ~ bits
        w = t.bits / 8
        return (_op("int8", 0, node_nm) * w * w + _op("int8", 1, node_nm) * w,
                "int8 mult x (bits/8)^2 + add x bits/8 (tilesim energy model)")
    w = t.significand_bits / 11        # fp8, bf16 from fp16: mult ~ significand^2, add ~ width
    width = t.bits / 16
    return (_op("fp16", 0, node_nm) * w * w + _op("fp16", 1, node_nm) * width,
            "fp16 mult x (significand/11)^2 + add x width/16 (tilesim energy model)")


def sram_pj_per_byte(capacity_bytes: int, node_nm: float) -> tuple[float, str]:
    """pJ per byte read or written of an SRAM of this capacity (one bank's access energy)."""
    kib8 = max(capacity_bytes, 1) / 8192
    e45 = 10 / 8 * kib8 ** 0.5           # 45 nm: 8 KB 10 pJ / 64 bit, ~sqrt(capacity)
    e7 = 7.5 / 8 * kib8 ** 0.129         # 7 nm: 8 KB 7.5 pJ, 1 MB 14 pJ per 64 bit
    return node_scale(e45, e7, node_nm), f"SRAM read energy vs capacity, {HOROWITZ} / {JOUPPI}, node-scaled"


def offchip_pj_per_byte(kind: str, field: str = "offchip") -> tuple[float, str]:
    """pJ per byte of an off-chip memory type (DRAM, HBM or flash), `field` naming the setting in errors."""
    if kind not in OFFCHIP_PJ_PER_BIT:
        raise InputError(f"energy.defaults.{field}: unknown memory type '{kind}'; known: "
                         f"{', '.join(OFFCHIP_PJ_PER_BIT)} (or give <level>.read_byte and write_byte)")
    source = OFFCHIP_SOURCES.get(kind, "docs/design.md section 6")
    return 8 * OFFCHIP_PJ_PER_BIT[kind], f"{kind} {OFFCHIP_PJ_PER_BIT[kind]} pJ/bit ({source})"


# per-bit in-array energies at 40/45 nm
REG_PJ_PER_BIT_45 = 0.009        # Accelergy's Aladdin table plug-in, data/reg.csv: 1-stage register, per bit per access
# of which the data switching (Aladdin's common/power_func.h, 40 nm at 1 GHz: REG_1ns_switch_power 1.063e-3 mW of
# REG_1ns_dynamic_power 9.0e-3 mW); the rest, 7.94 fJ, is internal power, mostly the clock pin's, paid every cycle
REG_SWITCH_PJ_PER_BIT_45 = 0.001063
WIRE_PJ_PER_BIT_UM_45 = 26 / 256 / 1000   # Keckler et al., IEEE Micro 2011 (40 nm): 256 bits over 1 mm = 26 pJ
ALADDIN = "Accelergy Aladdin table plug-in data/reg.csv (40/45 nm)"
ALADDIN_SWITCH = "Aladdin common/power_func.h REG_1ns_switch_power (40 nm)"
KECKLER = "Keckler et al., IEEE Micro 2011 (40 nm)"


def _reg_45(clock_in_static: bool) -> tuple[float, str]:
    """(pJ per bit at 40/45 nm, source) of one flip-flop access: a whole access, or only its data switching when
    the arch's static power already holds the registers' clock (a measured idle with the clocks running)."""
    if clock_in_static:
        return REG_SWITCH_PJ_PER_BIT_45, ALADDIN_SWITCH + ", data switching only"
    return REG_PJ_PER_BIT_45, ALADDIN


def reg_pj_per_byte(node_nm: float, clock_in_static: bool = False) -> tuple[float, str]:
    """pJ of reading or writing one byte of a PE's pipeline register (8 flip-flop accesses), node-scaled."""
    at_45, source = _reg_45(clock_in_static)
    return 8 * node_scale(at_45, None, node_nm), f"8 x {at_45} pJ/bit register access, {source}, node-scaled"


def pe_pitch_um(dtype: str, acc_dtype: str, node_nm: float) -> float:
    """Distance to the neighbour PE (um): the side of one PE's area from arch/area_model.py, laid out square."""
    return float(pe_mm2(dtype, acc_dtype, node_nm) ** 0.5 * 1000)


def hop_pj_per_byte(node_nm: float, pitch_um: float, clock_in_static: bool = False) -> tuple[float, str]:
    """pJ of moving one byte to the neighbour PE: a wire one pitch long and a register write there, per bit."""
    wire = node_scale(WIRE_PJ_PER_BIT_UM_45, None, node_nm) * pitch_um
    at_45, source = _reg_45(clock_in_static)
    reg = node_scale(at_45, None, node_nm)
    return 8 * (wire + reg), (f"8 x ({reg * 1e3:.3g} fJ register write ({source}) + "
                              f"{WIRE_PJ_PER_BIT_UM_45 * 1e3:.3g} fJ/bit/um wire ({KECKLER}) x {pitch_um:.3g} um PE "
                              "pitch (area model)), node-scaled")


MAC_DTYPES = tuple(DTYPES)
ARRAY_ACTIONS = ("array.reg_byte", "array.hop_byte", "array.idle_pe_cycle")


def _level_names(arch_raw: Raw) -> list[str]:
    """Names of the memory levels of a raw arch mapping (malformed entries skipped: the loader reports them)."""
    levels = arch_raw.get("memory")
    return [str(lv["name"]) for lv in (levels if isinstance(levels, list) else [])
            if isinstance(lv, dict) and "name" in lv]


def action_names(arch_raw: Raw) -> list[str]:
    """Every energy action an arch can perform (what sim/energy.py counts): MACs per dtype, the array's register
    reads, PE-to-PE hops and idle PE cycles, vector ops, the clock tree's cycles (only when given), and each memory
    level's byte reads and writes."""
    names = [f"mac.{d}" for d in MAC_DTYPES] + list(ARRAY_ACTIONS) + ["vector.op", "clock.cycle"]
    return names + [f"{name}.{rw}" for name in _level_names(arch_raw) for rw in ("read_byte", "write_byte")]


def static_component_names(arch_raw: Raw) -> list[str]:
    """Components that can carry static power: the array, the vector unit and each memory level."""
    return ["array", "vector", *_level_names(arch_raw)]


def default_actions(arch_raw: Raw, node_nm: float, offchip: str | None,
                    flash: str | None = None, clock_in_static: bool = False) -> dict[str, Raw]:
    """Energy entries for every action an arch can perform, from the model (a raw arch mapping goes in so the
    loader can fill a table before validation). Entries the arch gives itself take precedence. A flash level gets
    a read entry only (inference never writes it); with `clock_in_static` the in-array registers are charged their
    data switching only (energy.defaults.register_clock_in_static)."""
    out: dict[str, Raw] = {}
    node = f"{node_nm:g} nm"

    def put(action: str, value_source: tuple[float, str]) -> None:
        out[action] = {"pj": round(value_source[0], 6), "source": value_source[1], "node": node}

    for dtype in MAC_DTYPES:
        put(f"mac.{dtype}", mac_pj(dtype, node_nm))
    array = arch_raw.get("array")
    dtype = array.get("dtype", "int8") if isinstance(array, dict) else "int8"
    acc = array.get("acc_dtype", "int32") if isinstance(array, dict) else "int32"
    area = arch_raw.get("area")
    layout_nm = area.get("node_nm") if isinstance(area, dict) else None
    layout_nm = layout_nm if isinstance(layout_nm, (int, float)) and layout_nm > 0 else node_nm
    put("array.reg_byte", reg_pj_per_byte(node_nm, clock_in_static))
    if dtype in MAC_DTYPES and acc in MAC_DTYPES:        # else the loader reports the dtype
        put("array.hop_byte", hop_pj_per_byte(node_nm, pe_pitch_um(dtype, acc, float(layout_nm)), clock_in_static))
    if dtype in MAC_DTYPES:                  # else the loader reports the dtype
        # one MAC at the array's dtype: the arch's own mac.<dtype> entry when it gives one, else the model's
        energy = arch_raw.get("energy")
        given = energy.get("actions") if isinstance(energy, dict) else None
        mac = given.get(f"mac.{dtype}") if isinstance(given, dict) else None
        own = isinstance(mac, dict) and isinstance(mac.get("pj"), (int, float)) and not isinstance(mac["pj"], bool)
        pj = float(mac["pj"]) if own and mac is not None else mac_pj(dtype, node_nm)[0]
        put("array.idle_pe_cycle", (pj, f"one {dtype} MAC ({'the arch' if own else 'model'}: {pj:.4g} pJ) per idle PE "
                                        "per cycle, as SCALE-Sim v3's Accelergy flow charges every PE every cycle "
                                        "(an ungated upper bound; used with charge_idle_pes)"))
    put("vector.op", (_op("int32", 1, node_nm), f"32-bit add, {HOROWITZ} / {JOUPPI}, node-scaled"))
    levels = arch_raw.get("memory")
    for level in levels if isinstance(levels, list) else []:      # malformed: the loader reports it
        if not isinstance(level, dict) or "name" not in level:
            continue
        if level.get("kind") == "flash":
            if flash is not None:
                put(f"{level['name']}.read_byte", offchip_pj_per_byte(flash, "flash"))
            continue
        if level.get("kind") == "offchip":
            if offchip is None:
                continue
            value = offchip_pj_per_byte(offchip)
        else:
            try:
                capacity = int(parse_bytes(level.get("capacity_bytes", 0)))
            except (ValueError, OverflowError):
                continue                # the loader reports the bad capacity by its dotted path
            value = sram_pj_per_byte(capacity, node_nm)
        put(f"{level['name']}.read_byte", value)
        put(f"{level['name']}.write_byte", value)
    return out
