"""`tilesim serve`: its flags (generated from the option dataclasses of sim/studies/serve.py, with the arch, dtype
and compile flags of `run`) and the command: check the outputs, serve the stream, write the report, trace and plot."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from tilesim.arch.errors import InputError
from tilesim.cli.args import COMMAND_HELP, FLAG_NAMES, add_options, flag_names, options_of, workload_options
from tilesim.core.files import output_target, write_all
from tilesim.report.serve import check_plot, draw_serve, grid_report, rates_report, serve_report, serve_trace_json
from tilesim.studies import api
from tilesim.studies.options import OptionError
from tilesim.studies.serve import (
    SERVE_OPTION_CLASSES,
    SERVE_WORKLOAD_FIELDS,
    PlacementOptions,
    SchedulerOptions,
    ServeOutputOptions,
    TraceOptions,
)

SERVE_ARCH_FLAGS = ("workload", "arch", "overrides", "fusion", "timing", "mapper", "objective", "pinned")
SERVE_FLAG_NAMES = FLAG_NAMES | {f.name: flag_names(f)[0] for cls in SERVE_OPTION_CLASSES for f in fields(cls)}
SERVE_DEFAULTS = {"workload": "llama2-7b", "arch": "h100"}


def add_serve_arguments(subparsers) -> argparse.ArgumentParser:
    """Add the `serve` subcommand to an argparse subparsers action."""
    p = subparsers.add_parser("serve", help=COMMAND_HELP["serve"])
    w, a = SERVE_DEFAULTS["workload"], SERVE_DEFAULTS["arch"]
    add_options(p, SERVE_ARCH_FLAGS,
                workload={"default": w, "help": f"a decoder LLM: built-in name or HF config.json (default {w})"},
                arch={"default": a, "help": f"preset name or arch YAML (default {a})"})
    add_options(p, SERVE_WORKLOAD_FIELDS)
    for cls in SERVE_OPTION_CLASSES:
        add_options(p, tuple(f.name for f in fields(cls)), cls)
    add_options(p, ("grid",), grid={"help": "serve at every point of a grid, KEY=V1,V2,... (repeat for more axes): a "
                                            "scheduler option (max_batch, max_tokens, block_size, ...), tp, "
                                            "prefill_chips, decode_chips, link or a dotted arch field; with --rates "
                                            "each point's knee and the best (docs/serving.md)"})
    return p


def outputs_checked(args: argparse.Namespace, out: ServeOutputOptions) -> None:
    """Refuse, before any work, outputs that are folders, lie in missing folders or would replace an input."""
    inputs = tuple(p for p in (args.workload, args.arch, args.trace) if isinstance(p, str) and Path(p).is_file())
    for flag, path in (("-o", out.output), ("--perfetto", out.trace_out), ("--plot", out.figure)):
        if path is not None:
            output_target(path, inputs, flag)
    check_plot(out.figure)


def write_files(outputs: list[tuple[str | None, str | None]]) -> None:
    """(path, text) outputs: files written all or none, then the text of the one without a path to stdout."""
    try:
        write_all([(Path(p), text) for p, text in outputs if p is not None and text is not None])
    except OSError as e:
        raise InputError(f"cannot write '{e.filename}': {e.strerror or e}") from None
    for p, text in outputs:
        if p is None and text is not None:
            sys.stdout.write(text)


def cmd_serve(args: argparse.Namespace) -> None:
    """tilesim serve: options -> served stream -> report (table, JSON or per-request CSV), trace, plot."""
    try:
        out = options_of(ServeOutputOptions, args)
        arch, workload, compile_options = workload_options(args)
        trace, sched = options_of(TraceOptions, args), options_of(SchedulerOptions, args)
    except OptionError as e:
        raise InputError(e.render(SERVE_FLAG_NAMES)) from None
    outputs_checked(args, out)
    try:
        place = options_of(PlacementOptions, args)
    except OptionError as e:
        raise InputError(e.render(SERVE_FLAG_NAMES)) from None
    keywords = {n: getattr(workload, n) for n in SERVE_WORKLOAD_FIELDS} | vars(compile_options) | vars(trace) | \
        vars(sched) | vars(place)
    if args.grid:
        if out.trace_out or out.figure:
            raise InputError("--grid: a grid writes its table, JSON or CSV only (no --perfetto, --plot)")
        try:
            grid = api.serve_grid(workload.workload, arch.arch, grid=args.grid, overrides=arch.overrides, **keywords)
        except OptionError as e:
            raise InputError(e.render(SERVE_FLAG_NAMES)) from None
        write_files([(out.output, grid_report(grid, out.format))])
        return
    if trace.rates is not None:
        if out.trace_out or out.figure:
            raise InputError("--rates: a rate sweep writes its table, JSON or CSV only (no --perfetto, --plot)")
        try:
            sweep = api.serve_rates(workload.workload, arch.arch, overrides=arch.overrides, **keywords)
        except OptionError as e:
            raise InputError(e.render(SERVE_FLAG_NAMES)) from None
        write_files([(out.output, rates_report(sweep, out.format))])
        return
    try:
        result = api.serve(workload.workload, arch.arch, overrides=arch.overrides, **keywords)
    except OptionError as e:
        raise InputError(e.render(SERVE_FLAG_NAMES)) from None
    write_files([(out.trace_out, serve_trace_json(result) if out.trace_out else None),
                 (out.output, serve_report(result, out.format))])
    if out.figure:
        draw_serve(result, out.figure)
