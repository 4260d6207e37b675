"""Numbers for people: every quantity a report prints, in the unit that keeps 1 to 3 digits before the point, with
3 significant digits and never an exponent (1.02e+03 KiB is 0.996 MiB; 2.603e+04 mJ is 26.0 J). JSON and CSV keep
raw numbers with the unit in the key; only text and HTML go through here."""
from __future__ import annotations

import math

KIB, MIB, GIB, TIB = 2**10, 2**20, 2**30, 2**40
SI_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"),
               (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))
BYTE_UNITS = ((TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB"), (1, "B"))
ENERGY_UNITS = ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"))       # pJ per unit
TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))                    # seconds per unit
DIGITS = 3                                                               # significant digits of every quantity


def sig(x: float, digits: int = DIGITS) -> str:
    """`x` to `digits` significant digits without an exponent, trailing zeros kept: 26.03 -> '26.0', 0.5 -> '0.500',
    455.4 -> '455'; 1000 and above as a whole number with separators (1234.5 -> '1,235')."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    if abs(x) >= 10 ** digits - 0.5:
        return f"{x:,.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(_round_sig(x, digits)))), 0)
    return f"{x:.{decimals}f}"


def _round_sig(x: float, digits: int = DIGITS) -> float:
    """`x` rounded to `digits` significant digits (999.6 -> 1000.0 at 3)."""
    return float(f"{x:.{digits - 1}e}")


def _scaled(x: float, units: tuple[tuple[float, str], ...], digits: int = DIGITS) -> tuple[str, str]:
    """(mantissa, unit) of `x` in the largest of `units` (largest first) in which it rounds to at least 1; values
    below the smallest unit use it."""
    for factor, unit in units:
        if abs(_round_sig(x / factor, digits)) >= 1:
            return sig(x / factor, digits), unit
    factor, unit = units[-1]
    return sig(x / factor, digits), unit


def si(x: float, unit: str) -> str:
    """A value with an SI prefix, 3 significant digits: 1234567 -> '1.23 M<unit>', 0.0253 -> '25.3 m<unit>'."""
    if x == 0:
        return f"0 {unit}"
    mantissa, prefix = _scaled(x, SI_PREFIXES)
    return f"{mantissa} {prefix}{unit}"


def byte_size(x: float) -> str:
    """Bytes in the binary unit that keeps fewer than 1,000 in front: 1536 -> '1.50 KiB', 12 -> '12 B',
    1,044,480 (1,020 KiB) -> '0.996 MiB', 4.66e5 MiB -> '455 GiB'."""
    if abs(x) < 999.5:
        return f"{x:.0f} B" if float(x).is_integer() else f"{sig(x)} B"
    for factor, unit in reversed(BYTE_UNITS[:-1]):      # KiB upwards: the first in which it rounds below 1,000
        if abs(_round_sig(x / factor)) < 1000 or unit == BYTE_UNITS[0][1]:
            return f"{sig(x / factor)} {unit}"
    raise AssertionError("unreachable")     # the largest unit always returns


def mib(x: float) -> str:
    """Bytes as a bare number of MiB with two decimals (for tables whose header names the unit)."""
    return f"{x / MIB:,.2f}"


def mib_text(x: float) -> str:
    """Bytes with the unit, in the unit that suits them (the name is kept for older callers): '3.20 MiB'."""
    return byte_size(x)


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
    """pJ as energy in the handiest unit: 2.603e13 pJ -> '26.0 J', 1.47e10 -> '14.7 mJ', 0.5 -> '500 fJ'."""
    return si(pj * 1e-12, "J")


def pj(x: float) -> str:
    """An energy per action or per MAC in pJ, 3 significant digits: 1.6912 -> '1.69 pJ'."""
    return f"{sig(x)} pJ"


def seconds(s: float) -> str:
    """A length of time: 0.00253 -> '2.53 ms', 86.0 -> '86.0 s'."""
    return si(s, "s")


def watts(w: float) -> str:
    """A power: 1.2134 -> '1.21 W', 0.884 -> '884 mW'."""
    return si(w, "W")


def hertz(hz: float) -> str:
    """A clock: 8e8 -> '800 MHz'."""
    return si(hz, "Hz")


def bytes_per_s(x: float) -> str:
    """A bandwidth in decimal units, as memory parts are sold: 1.28e10 -> '12.8 GB/s'."""
    return si(x, "B/s")


def count(n: float) -> str:
    """A count: whole numbers exact with separators (1814073344 -> '1,814,073,344'), fractions to 3 digits."""
    return f"{n:,.0f}" if float(n).is_integer() else sig(n)


def cycles(n: float) -> str:
    """A number of cycles: 2025810 -> '2,025,810 cycles'."""
    return f"{count(n)} cycle{'' if n == 1 else 's'}"


def area(mm2: float) -> str:
    """An area in mm²: 0.30812 -> '0.308 mm²'."""
    return f"{sig(mm2)} mm²"


def time_unit(seconds: float) -> tuple[float, str]:
    """(seconds per unit, unit) among s, ms, µs, ns that keeps a length of time readable."""
    for scale, unit in TIME_UNITS:
        if seconds >= scale:
            return scale, unit
    return 1e-9, "ns"


# unit suffix of a JSON/CSV key -> how its raw number reads (the keys carry units: latency_s, energy_pj)
KEY_UNITS = (("pj_per_token", lambda v: f"{joules(v)}/token"), ("j_per_token", lambda v: f"{si(v, 'J')}/token"),
             ("pj_per_mac", lambda v: f"{pj(v)}/MAC"), ("macs_per_s", lambda v: si(v, "MAC/s")),
             ("perf_per_mm2", lambda v: si(v, "MAC/s/mm²")),
             ("_per_s", lambda v: f"{sig(v)}/s"), ("_utilization", percent), ("_busy", percent), ("mbu", percent),
             ("_share", percent), ("_attainment", percent),
             ("_pj", joules), ("_bytes", byte_size), ("_s", seconds), ("_w", watts), ("_hz", hertz),
             ("_mm2", area), ("_cycles", cycles))


def quantity(key: str, value: float) -> str:
    """A raw number from JSON or CSV in human units, read from its key's unit suffix: ('latency_s', 0.00253) ->
    '2.53 ms', ('energy_pj', 2.603e13) -> '26.0 J', ('pj_per_token', 5e9) -> '5.00 mJ/token'; keys without a unit:
    a count ('cycles', 1234 -> '1,234') or 3 significant digits."""
    if key == "cycles":
        return count(value)
    if key == "edp":                                   # energy-delay product: latency_s x energy_pj
        return si(value * 1e-12, "J·s")
    for suffix, fn in KEY_UNITS:
        if key.endswith(suffix) or key == suffix.lstrip("_"):
            return fn(value)
    return count(value)
