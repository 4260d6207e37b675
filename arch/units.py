"""Parsing of quantities with units in YAML and --set values: '24 MiB', '700 MHz', '34 GB/s'."""
from __future__ import annotations

import re

_BYTES = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_HZ = {"hz": 1, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_BPS = {"b/s": 1, "kb/s": 1e3, "mb/s": 1e6, "gb/s": 1e9, "tb/s": 1e12,
        "kib/s": 2**10, "mib/s": 2**20, "gib/s": 2**30}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z/]+)\s*$")


def _parse(value: object, table: dict[str, float], what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if m and m.group(2).lower() in table:
            return float(m.group(1)) * table[m.group(2).lower()]
        try:
            return float(value)
        except ValueError:
            pass
    units = ", ".join(sorted(set(table)))
    raise ValueError(f"expected {what} as a number or with a unit ({units}), got {value!r}")


def parse_bytes(value: object) -> float:
    """'24 MiB' -> 25165824.0; plain numbers are bytes."""
    return _parse(value, _BYTES, "a size in bytes")


def parse_hz(value: object) -> float:
    """'700 MHz' -> 7e8; plain numbers are Hz."""
    return _parse(value, _HZ, "a frequency in Hz")


def parse_bytes_per_s(value: object) -> float:
    """'34 GB/s' -> 3.4e10; plain numbers are bytes/s."""
    return _parse(value, _BPS, "a bandwidth in bytes/s")
