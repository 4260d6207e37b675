"""docs/arch-reference.md, generated from the config dataclasses (arch/config.py): every field of an arch YAML with its
type, unit, default, allowed values and description. Regenerate with

    python -m tilesim.arch.reference > docs/arch-reference.md

(tests/test_arch_authoring.py checks that the committed file is current)."""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any

from tilesim.arch.config import ArchConfig, accepted_keys

# unit of a field from its name, longest suffix first (the loader parses units on *_bytes and *_hz fields)
UNITS = (("_mw_per_mm2", "mW/mm²"), ("_mm2_per_mib", "mm²/MiB"), ("_bytes_per_cycle", "bytes/cycle"),
         ("_mm2", "mm²"), ("_bytes", "bytes; or with a unit: KiB, MiB, GiB, TiB, kB, MB, GB, TB"),
         ("_gb_s", "GB/s; or with a unit: MB/s, GB/s, TB/s, GiB/s"), ("_hz", "Hz; or with a unit: kHz, MHz, GHz"),
         ("_cycles", "cycles"), ("_mw", "mW"), ("_w", "W"), ("_nm", "nm"), ("_fraction", "fraction of 1"))
NAMED_UNITS = {"pj": "pJ", "mw": "mW"}


def unit_of(name: str) -> str:
    """The unit a field's name gives it: capacity_bytes -> bytes (with the units it accepts), tdp_w -> W."""
    if name in NAMED_UNITS:
        return NAMED_UNITS[name]
    return next((unit for suffix, unit in UNITS if name.endswith(suffix)), "")


def type_text(tp: Any) -> str:
    """A field's type for people: integer, number, text, true/false, list of ..., a section, '... or null'."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [t for t in typing.get_args(tp) if t is not type(None)]
        return f"{type_text(inner)} or null"
    if origin is typing.Literal:
        return "choice"
    if origin is tuple:
        return f"list of {type_text(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of name to {type_text(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"section ({getattr(tp, '__name__', tp)})"
    return {int: "integer", float: "number", str: "text", bool: "true/false"}.get(tp, str(tp))


def allowed_text(tp: Any) -> str:
    """The allowed values of a Literal type (inside lists and unions too), else ''."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return ", ".join(f"`{v}`" for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType, tuple):
        return next((t for t in map(allowed_text, typing.get_args(tp)) if t), "")
    return ""


def default_text(f: dataclasses.Field[Any]) -> str:
    """A field's default as YAML would spell it, or 'required'."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is dataclasses.MISSING:
        return "required"
    else:
        value = f.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(str, value)) + "]"
    if value == {}:
        return "{}"
    return f'"{value}"' if value == "" else f"{value}"


def sections(cls: type = ArchConfig, path: str = "") -> list[tuple[str, type]]:
    """(YAML path, dataclass) of every section reachable from `cls`, depth first: '' (top level), 'array',
    'memory[]', 'energy.actions.<name>', ..."""
    out = [(path, cls)]
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        sub = f"{path}.{f.name}" if path else f.name
        for inner, suffix in _nested(tp):
            out += sections(inner, sub + suffix)
    return out


def _nested(tp: Any) -> list[tuple[type, str]]:
    """Dataclasses inside a field's type, with the path suffix that reaches them ('[]' in a list, '.<name>' in a
    mapping)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return [n for t in typing.get_args(tp) for n in _nested(t)]
    if origin is tuple:
        return [(t, "[]" + s) for t, s in _nested(typing.get_args(tp)[0])]
    if origin is dict:
        return [(t, ".<name>" + s) for t, s in _nested(typing.get_args(tp)[1])]
    return [(typing.cast(type, tp), "")] if dataclasses.is_dataclass(tp) else []


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def section_table(path: str, cls: type) -> list[str]:
    """One section's markdown: heading, docstring, and a row per field (and per extra key the loader accepts)."""
    hints = typing.get_type_hints(cls)
    title = f"`{path}`" if path else "Top level"
    lines = [f"## {title} ({cls.__name__})", "", " ".join((cls.__doc__ or "").split()), "",
             "| field | type | unit | default | allowed | description |", "|---|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        lines.append(f"| `{f.name}` | {type_text(tp)} | {_cell(unit_of(f.name))} | {_cell(default_text(f))} | "
                     f"{_cell(allowed_text(tp))} | {_cell(f.metadata.get('doc', ''))} |")
    for key, text in getattr(cls, "INPUT_KEYS", {}).items():
        lines.append(f"| `{key}` | number | {_cell(unit_of(key))} | (input only) |  | {_cell(text)} |")
    assert set(accepted_keys(cls)) == {f.name for f in dataclasses.fields(cls)} | set(getattr(cls, "INPUT_KEYS", {}))
    return [*lines, ""]


def reference() -> str:
    """The whole of docs/arch-reference.md."""
    head = ["# Arch YAML reference", "",
            "Generated from the config dataclasses (arch/config.py) by `python -m tilesim.arch.reference > "
            "docs/arch-reference.md`; do not edit by hand. How to write an arch file: docs/arch-yaml.md; a commented "
            "start: `tilesim show-arch --template edge|datacenter|gpu`. Sizes and clocks take units (`512 KiB`, "
            "`800 MHz`); a bare number is bytes or Hz. `--set PATH=VALUE` addresses any field below by its path "
            "(memory levels by name: `memory.sram.capacity_bytes`).", ""]
    body = [line for path, cls in sections() for line in section_table(path, cls)]
    return "\n".join(head + body).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
