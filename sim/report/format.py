"""Numbers for people: SI prefixes, byte sizes, MiB, percentages, energy and time units (every renderer uses these)."""
from __future__ import annotations

KIB, MIB, GIB = 2**10, 2**20, 2**30
SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
ENERGY_UNITS = ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"))       # pJ per unit
TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))                    # seconds per unit


def si(x: float, unit: str) -> str:
    """A value with an SI prefix, 3 significant digits: 1234567 -> '1.23 M<unit>'."""
    if x == 0:
        return f"0 {unit}"
    for factor, prefix in SI_PREFIXES:
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x / 1e-12:.3g} p{unit}"


def byte_size(x: float) -> str:
    """Bytes in the largest binary unit that keeps a whole number in front: 1536 -> '1.5 KiB', 12 -> '12 B'."""
    for factor, unit in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if x >= factor:
            return f"{x / factor:.3g} {unit}"
    return f"{int(x)} B"


def mib(x: float) -> str:
    """Bytes as a bare number of MiB with two decimals (for tables whose header names the unit)."""
    return f"{x / MIB:.2f}"


def mib_text(x: float) -> str:
    """Bytes as MiB, 3 significant digits, with the unit: '3.2 MiB'."""
    return f"{x / MIB:.3g} MiB"


def percent(x: float) -> str:
    """A fraction as a percentage with one decimal: 0.1234 -> '12.3%'."""
    return f"{x:.1%}"


def energy_unit(pj: float) -> tuple[float, str]:
    """(pJ per unit, unit) among J, mJ, µJ, nJ, pJ for an amount of energy."""
    for factor, unit in ENERGY_UNITS:
        if pj >= factor:
            return factor, unit
    return 1.0, "pJ"


def joules(pj: float) -> str:
    """pJ as text in the handiest unit, e.g. '14.7 mJ'."""
    factor, unit = energy_unit(pj)
    return f"{pj / factor:.3g} {unit}"


def time_unit(seconds: float) -> tuple[float, str]:
    """(seconds per unit, unit) among s, ms, µs, ns that keeps a length of time readable."""
    for scale, unit in TIME_UNITS:
        if seconds >= scale:
            return scale, unit
    return 1e-9, "ns"
