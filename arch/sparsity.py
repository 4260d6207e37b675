"""Weight-sparsity patterns an array accelerates (`array.sparsity`), parsed and checked.

An entry of `array.sparsity` names weights whose zeros the array skips (their MACs take no cycle):
  "N:M"          N kept weights in every M along the reduction dim K (NVIDIA Ampere sparse tensor cores: 2:4);
  "structured"   any N:M pattern (SCALE-Sim 3.0.0's sparse array: each layer's N:M from its topology row);
  "unstructured" any zero, at the weights' density (ideal zero skipping, no load imbalance: an upper bound);
  "rowwise:B"    SCALE-Sim 3.0.0's OptimizedMapping with BlockSize B: every column keeps at most B/2 of each B
                 weights along K and two blocks share one B-row slot, so K takes ceil(K / 2B) * B rows.
"""
from __future__ import annotations

import re
from typing import NamedTuple

MAX_GROUP = 256          # M of N:M and B of rowwise:B; larger is surely a typo
ALLOWED = "N:M (1 <= N < M <= 256, e.g. 2:4), structured, unstructured, rowwise:B (B even, 2..256)"
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_ROWWISE = re.compile(r"^\s*rowwise\s*:\s*(\d+)\s*$")


class Pattern(NamedTuple):
    """A parsed array.sparsity entry: kind (nm | structured | unstructured | rowwise), N and M (rowwise: B)."""
    kind: str
    n: int = 0
    m: int = 0


def parse_nm(text: str) -> tuple[int, int] | None:
    """(N, M) of an 'N:M' text, or None when it is not of that form."""
    match = _NM.match(str(text))
    return (int(match[1]), int(match[2])) if match else None


def parse_pattern(text: str) -> Pattern:
    """The entry as a Pattern; ValueError naming what is allowed."""
    word = str(text).strip().lower()
    if word in ("structured", "unstructured"):
        return Pattern(word)
    nm = parse_nm(word)
    if nm is not None:
        n, m = nm
        if not 1 <= n < m <= MAX_GROUP:
            raise ValueError(f"got '{text}': N:M needs 1 <= N < M <= {MAX_GROUP}")
        return Pattern("nm", n, m)
    rowwise = _ROWWISE.match(word)
    if rowwise:
        b = int(rowwise[1])
        if not (2 <= b <= MAX_GROUP and b % 2 == 0):
            raise ValueError(f"got '{text}': rowwise:B needs an even B between 2 and {MAX_GROUP}")
        return Pattern("rowwise", 0, b)
    raise ValueError(f"got '{text}', allowed: {ALLOWED}")


def pattern_errors(patterns: tuple[str, ...], rows: int) -> list[tuple[str, str]]:
    """(field, message) for every bad array.sparsity entry (rowwise:B needs B <= rows, as SCALE-Sim asserts)."""
    errors = []
    for i, text in enumerate(patterns):
        try:
            p = parse_pattern(text)
        except ValueError as e:
            errors.append((f"array.sparsity[{i}]", str(e)))
            continue
        if p.kind == "rowwise" and p.m > rows:
            errors.append((f"array.sparsity[{i}]", f"rowwise:{p.m}: B must be <= array.rows ({rows})"))
    return errors


__all__ = ["ALLOWED", "Pattern", "parse_nm", "parse_pattern", "pattern_errors"]
