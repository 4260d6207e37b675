"""The command line's options, generated from the option dataclasses (sim/studies/options.py, CompileOptions):
flags, help, choices (Literal types), defaults and short aliases come from the fields; field names become flag
names here, in one place (FLAG_NAMES), for parsing and for error messages."""
from __future__ import annotations

import argparse
import sys
import types
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from tilesim.arch.errors import InputError
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.options import (
    OPTION_CLASSES,
    ArchOptions,
    LLMOptions,
    OptionError,
    OutputOptions,
    SystemOptions,
    WorkloadOptions,
    read_pinned,
)

# the workload options of run, compare, sweep and validate-array, in the order --help lists them
WORKLOAD_FLAGS = ("fusion", "workload", "arch", "overrides", "timing", "mapper", "objective", "pinned", "batch",
                  "seq_len", "weight_dtype", "activation_dtype", "kv_dtype", "dtype", "dims", "unknown_ops",
                  "weight_sparsity", "weight_format")
LLM_FLAGS = ("phase", "context", "prompt_len", "gen_tokens", "mlp_sparsity", "predictor_rank", "expert_skew")
SYSTEM_FLAGS = ("system", "tp", "pp", "ep", "dp", "micro_batches", "virtual_stages", "pipeline_schedule",
                "sequence_parallel", "collective_algorithm", "overlap_comm")
# the one-line help of the commands whose modules load only when they run (sim/cli/main.py build_parser)
COMMAND_HELP = {"sweep": "run a grid of design points (arch fields, workload options) into a CSV",
                "serve": "serve a request stream (trace or generated) with an LLM scheduler"}


class Parser(argparse.ArgumentParser):
    """argparse that reports misuse on one line and exits with status 2."""

    def error(self, message: str):
        raise InputError(f"{message} (see `{self.prog} --help`)")


def all_fields(classes: tuple[type, ...] = OPTION_CLASSES) -> dict[str, tuple[type, Field]]:
    """Every option field by name, with its dataclass (a name two classes share: the first's)."""
    table: dict[str, tuple[type, Field]] = {}
    for cls in classes:
        for f in fields(cls):
            table.setdefault(f.name, (cls, f))
    return table


def flag_names(f: Field) -> list[str]:
    """The flags of a field: --<name-with-dashes> (or its metadata flag) and its short alias; a short metadata flag
    comes first (-o, --output)."""
    meta = f.metadata
    flag, short = meta.get("flag"), meta.get("short")
    long = "--" + f.name.replace("_", "-")
    if flag and not flag.startswith("--"):
        return [flag, long]
    return [flag or long] + ([short] if short else [])


FLAG_NAMES = {name: flag_names(f)[0] for name, (_, f) in all_fields().items()}   # field -> flag in messages


def cli_message(error: InputError) -> str:
    """An error as the CLI prints it: option fields named by their flags (an OptionError's fields, or the first word
    of a problem's path, as `seq_len` -> `--seq-len`, `dims batch` -> `--dim batch`)."""
    if isinstance(error, OptionError):
        return error.render(FLAG_NAMES)
    if not any(path.split(" ", 1)[0] in FLAG_NAMES for path, _ in error.problems):
        return str(error)
    return str(InputError([(flag_path(path), message) for path, message in error.problems]))


def flag_path(path: str) -> str:
    """A problem's path with a leading option field named by its flag."""
    head, _, rest = path.partition(" ")
    return FLAG_NAMES.get(head, head) + (f" {rest}" if rest else "")


def _value_type(hint: Any) -> tuple[Any, tuple[str, ...] | None]:
    """(scalar type, choices) of a field's type: Literal values are choices; X | None is X."""
    args = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) in (typing.Union, types.UnionType) \
        else [hint]
    inner = args[0]
    if get_origin(inner) is Literal:
        return str, get_args(inner)
    return (inner if inner in (int, float) else str), None


def add_field(parser: argparse.ArgumentParser, cls: type, f: Field, **override: Any) -> None:
    """One option's flag from its field: help, default, choices, type, metavar; `override` replaces any of them."""
    meta = f.metadata
    kw: dict[str, Any] = {"dest": f.name, "help": meta.get("help") or None}
    if meta.get("switch"):
        kw.update(action="store_false" if f.default is True else "store_true")
    elif meta.get("repeat"):
        kw.update(action="append", default=[], metavar=meta.get("metavar"))
    else:
        scalar, choices = _value_type(typing.get_type_hints(cls)[f.name])
        if f.name == "pinned":
            scalar = str
        default = None if f.name == "pinned" or f.default is MISSING else f.default
        kw.update(default=default, metavar=meta.get("metavar"), choices=choices)
        if scalar is not str:
            kw["type"] = scalar
    kw.update(override)
    parser.add_argument(*flag_names(f), **{k: v for k, v in kw.items() if v is not None or k == "default"})


def add_options(parser: argparse.ArgumentParser, names: tuple[str, ...], cls: type | None = None,
                **overrides: dict) -> None:
    """The flags of the named option fields (of `cls`, else of any option class), in that order; overrides[name]
    replaces parts of one."""
    table = all_fields((cls,) if cls else OPTION_CLASSES)
    for name in names:
        cls, f = table[name]
        add_field(parser, cls, f, **overrides.get(name, {}))


def parse_dims(items: list[str]) -> tuple[tuple[str, int], ...]:
    """--dim NAME=VALUE options as (name, size) pairs; malformed, non-positive or repeated ones are one-line
    errors."""
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--dim {item}: expected NAME=VALUE, e.g. --dim batch=8")
        try:
            size = int(value.strip())
        except ValueError:
            size = 0
        if size < 1:
            raise InputError(f"--dim {name}: the value must be a positive integer, got '{value.strip()}'")
        if name in dims:
            raise InputError(f"--dim {name}: given twice")
        dims[name] = size
    return tuple(dims.items())


CONVERT = {"dims": parse_dims, "pinned": lambda path: read_pinned(path) if path else (),
           "overrides": tuple, "plot": tuple, "grid": tuple}


def options_of(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """An option dataclass from the parsed flags it has (converted: --dim pairs, --mapping's pinned mappings)."""
    kw = {f.name: CONVERT.get(f.name, lambda v: v)(getattr(args, f.name)) for f in fields(cls)
          if hasattr(args, f.name) and f.name not in given}
    return cls(**kw, **given)


def system_options(args: argparse.Namespace) -> SystemOptions:
    """The system options of a command line."""
    return options_of(SystemOptions, args)


def workload_options(args: argparse.Namespace) -> tuple[ArchOptions, WorkloadOptions, CompileOptions]:
    """The arch, workload and compile options of a command line."""
    return options_of(ArchOptions, args), options_of(WorkloadOptions, args), options_of(CompileOptions, args)


def llm_options(args: argparse.Namespace) -> LLMOptions:
    """The decoder LLM options of a command line."""
    return options_of(LLMOptions, args)


def output_options(args: argparse.Namespace) -> OutputOptions:
    """How `tilesim run` reports."""
    return options_of(OutputOptions, args)


def api_keywords(args: argparse.Namespace, llm: bool = True) -> tuple[str, str, dict[str, Any]]:
    """(workload, arch, keyword options) of the Python API (sim/studies/api.py) from a command line."""
    arch, workload, compile_options = workload_options(args)
    kw = {k: v for k, v in vars(workload).items() if k != "workload"} | vars(compile_options)
    if llm:
        kw |= vars(llm_options(args))
    return workload.workload, arch.arch, {"overrides": arch.overrides, **kw}


def sweep_status(rows: list[dict[str, Any]], output: str | Path) -> int:
    """A sweep's exit status: 1 (with one stderr line) when a point hit an internal error, else 0."""
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        print(f"tilesim: {len(failed)} points hit an internal error (status=error in {output}; first: "
              f"{failed[0]['reason']}); please report it", file=sys.stderr)
        return 1
    return 0
