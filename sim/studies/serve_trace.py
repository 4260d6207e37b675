"""Request streams for `tilesim serve`: traces read from CSV/JSONL and seeded synthetic generators.

A request is (arrival time s, prompt tokens, output tokens, optional prefix id and length). Trace columns
(docs/serving.md): arrival_s, prompt_tokens, output_tokens, prefix_id and prefix_tokens (optional: requests of one
prefix id share their first prefix_tokens prompt tokens, by default the shortest prompt of the id's requests); or
the Azure LLM inference trace layout
(TIMESTAMP as a date-time or seconds, ContextTokens, GeneratedTokens), whose times are taken relative to the first row.
Arrivals of a generator: Poisson (exponential gaps at `rate`) or bursty (gamma gaps with coefficient of variation
`cv`, same mean 1/rate); lengths fixed, uniform, log-normal (median, sigma) or drawn from an empirical CSV column.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.studies.options import OptionError

STANDARD_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True)
class Request:
    """One request of the stream."""
    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prefix_id: str | None = None
    prefix_tokens: int = 0       # prompt tokens shared with the other requests of its prefix id


def _row_error(source: str, row: int, column: str, message: str) -> InputError:
    """The one-line error of a bad trace cell."""
    return InputError(f"{source} row {row}, column {column}: {message}")


def _count(source: str, row: int, column: str, text) -> int:
    """A token count cell: an integer >= 1."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise _row_error(source, row, column, f"expected a whole number of tokens, got '{text}'") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise _row_error(source, row, column, f"expected a whole number of tokens >= 1, got '{text}'")
    return int(value)


def _time(source: str, row: int, column: str, text) -> float:
    """An arrival time cell: seconds >= 0, or (Azure) an ISO date-time, returned as POSIX seconds."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        try:
            value = datetime.fromisoformat(str(text).strip().replace(" ", "T")[:26]).timestamp()
        except ValueError:
            raise _row_error(source, row, column, f"expected seconds or an ISO date-time, got '{text}'") from None
        return value
    if not math.isfinite(value) or value < 0:
        raise _row_error(source, row, column, f"expected a time in seconds >= 0, got '{text}'")
    return value


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(row number, mapping)]) of a CSV (row 1 is the header) or JSONL file (row 1 is the first line)."""
    source = str(path)
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows, columns = [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{source} row {i}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{source} row {i}: not a JSON object")
            columns += [k for k in obj if k not in columns]
            rows.append((i, obj))
        return columns, rows
    reader = csv.DictReader(text.splitlines())
    columns = list(reader.fieldnames or [])
    return [c.strip() for c in columns], [(i, {(k or "").strip(): v for k, v in r.items()})
                                          for i, r in enumerate(reader, 2)]


def read_trace(path: str | Path) -> tuple[Request, ...]:
    """The requests of a CSV or JSONL trace, sorted by arrival (stable); bad rows are one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise OptionError("trace", f"no such file '{path}'")
    columns, rows = _rows(p)
    azure = all(c in columns for c in AZURE_COLUMNS) and not all(c in columns for c in STANDARD_COLUMNS)
    names = AZURE_COLUMNS if azure else STANDARD_COLUMNS
    missing = [c for c in names if c not in columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(STANDARD_COLUMNS)} "
                         f"[, prefix_id] or the Azure layout {', '.join(AZURE_COLUMNS)}")
    if not rows:
        raise InputError(f"{path}: no requests")
    t_col, p_col, o_col = names
    out = []
    for i, row in rows:
        t = _time(str(p), i, t_col, row.get(t_col))
        prefix = row.get("prefix_id")
        shared = row.get("prefix_tokens")
        prompt = _count(str(p), i, p_col, row.get(p_col))
        shared = _count(str(p), i, "prefix_tokens", shared) if shared not in (None, "") else None
        if shared is not None and (prefix in (None, "") or shared > prompt):
            raise _row_error(str(p), i, "prefix_tokens", f"needs a prefix_id and at most the prompt's {prompt} "
                                                         f"tokens, got {shared}")
        out.append([t, prompt, _count(str(p), i, o_col, row.get(o_col)),
                    str(prefix) if prefix not in (None, "") else None, shared])
    if azure:                                           # relative to the first request
        t0 = min(r[0] for r in out)
        for r in out:
            r[0] -= t0
    shortest: dict[str, int] = {}                     # default prefix length: the id's shortest prompt
    for r in out:
        if r[3] is not None:
            shortest[r[3]] = min(shortest.get(r[3], r[1]), r[1])
    for r in out:
        r[4] = (r[4] if r[4] is not None else shortest[r[3]]) if r[3] is not None else 0
    order = sorted(range(len(out)), key=lambda k: out[k][0])
    return tuple(Request(n, *out[k]) for n, k in enumerate(order))


@dataclass(frozen=True)
class LengthSpec:
    """A length distribution: fixed:N, uniform:LO,HI, lognormal:MEDIAN,SIGMA or empirical:FILE.csv[:COLUMN]."""
    kind: str
    params: tuple[float, ...] = ()
    values: tuple[int, ...] = ()

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (integers >= 1)."""
        if self.kind == "fixed":
            return np.full(n, int(self.params[0]))
        if self.kind == "uniform":
            return rng.integers(int(self.params[0]), int(self.params[1]) + 1, n)
        if self.kind == "lognormal":
            median, sigma = self.params
            return np.maximum(1, np.rint(rng.lognormal(math.log(median), sigma, n))).astype(int)
        return rng.choice(np.asarray(self.values), n)


def parse_lengths(name: str, text: str) -> LengthSpec:
    """A LengthSpec from its option text; `name` is the option, for errors."""
    kind, _, rest = text.partition(":")
    allowed = "fixed:N, uniform:LO,HI, lognormal:MEDIAN,SIGMA or empirical:FILE.csv[:COLUMN]"
    if kind == "empirical":
        path, _, column = rest.rpartition(":") if rest.count(":") and not Path(rest).is_file() else (rest, "", "")
        p = Path(path)
        if not p.is_file():
            raise OptionError(name, f"no such file '{path}' (expected {allowed})")
        reader = csv.DictReader(p.read_text().splitlines())
        column = column or (reader.fieldnames or [""])[0]
        if column not in (reader.fieldnames or []):
            raise OptionError(name, f"{path} has no column '{column}'")
        values = tuple(_count(path, i, column, r.get(column)) for i, r in enumerate(reader, 2))
        if not values:
            raise OptionError(name, f"{path} has no rows")
        return LengthSpec("empirical", (), values)
    try:
        params = tuple(float(v) for v in rest.split(",")) if rest else ()
    except ValueError:
        raise OptionError(name, f"got '{text}', expected {allowed}") from None
    want = {"fixed": 1, "uniform": 2, "lognormal": 2}
    if kind not in want or len(params) != want[kind]:
        raise OptionError(name, f"got '{text}', expected {allowed}")
    if kind in ("fixed", "uniform") and any(v < 1 or v != int(v) for v in params):
        raise OptionError(name, f"token counts must be whole numbers >= 1, got '{text}'")
    if kind == "uniform" and params[0] > params[1]:
        raise OptionError(name, f"uniform:LO,HI needs LO <= HI, got '{text}'")
    if kind == "lognormal" and (params[0] < 1 or params[1] < 0):
        raise OptionError(name, f"lognormal:MEDIAN,SIGMA needs MEDIAN >= 1 and SIGMA >= 0, got '{text}'")
    return LengthSpec(kind, params)


def generate(n: int, rate_per_s: float, prompt: LengthSpec, output: LengthSpec, arrivals: str = "poisson",
             cv: float = 2.0, seed: int = 0) -> tuple[Request, ...]:
    """n requests: gaps exponential (poisson) or gamma with shape 1/cv^2 (bursty, same mean 1/rate); first
    arrival at the first gap."""
    rng = np.random.default_rng(seed)
    if arrivals == "poisson":
        gaps = rng.exponential(1 / rate_per_s, n)
    else:                                       # gamma(k, theta): mean k*theta = 1/rate, cv = 1/sqrt(k)
        k = 1 / cv**2
        gaps = rng.gamma(k, 1 / (rate_per_s * k), n)
    times = np.cumsum(gaps)
    p, o = prompt.draw(rng, n), output.draw(rng, n)
    return tuple(Request(i, float(times[i]), int(p[i]), int(o[i])) for i in range(n))
