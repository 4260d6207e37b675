"""`tilesim run --system ...`: a decoder LLM on a system of chips (sim/studies/system.py), reported as a table,
JSON or a Perfetto trace."""
from __future__ import annotations

import argparse
import sys
import typing

from tilesim.arch.errors import InputError
from tilesim.arch.loader import load_yaml_text
from tilesim.cli.args import llm_options, options_of, workload_options
from tilesim.report.system import LAYOUT_COLUMNS, layout_rows, layout_table, system_json, system_table, system_trace
from tilesim.studies.options import DEFAULT_ARCH, OptionError, OutputOptions, SweepOptions, SystemOptions
from tilesim.studies.sweep import parse_grids, write_csv_atomic
from tilesim.studies.system import LAYOUT_AXES, layout_points, run_layouts, system_run

SYSTEM_FLAGS = ("system", "tp", "pp", "ep", "dp", "micro_batches", "virtual_stages", "pipeline_schedule",
                "sequence_parallel", "collective_algorithm", "overlap_comm")


def system_options(args: argparse.Namespace) -> SystemOptions:
    """The system options of a command line."""
    return options_of(SystemOptions, args)


def run_system_command(args: argparse.Namespace, out: OutputOptions, write_outputs) -> None:
    """Run the decoder LLM on the system and write the report (and the trace)."""
    if out.format == "csv":
        raise InputError("--format csv: system runs report as table or json")
    if out.plot or out.show_schedule or out.top:
        raise InputError("--plot, --show-schedule, --top: not for system runs (see the JSON's per-stage figures)")
    arch, workload, compile_options = workload_options(args)
    if arch.arch != DEFAULT_ARCH:
        raise InputError(f"--arch {arch.arch}: a system run takes its chip from --system (its file's `chip:`); "
                         "--set still applies to that chip")
    r = system_run(workload, llm_options(args), compile_options, system_options(args), arch.overrides)
    text = system_table(r) if out.format == "table" else system_json(r)
    write_outputs([*([("--trace", out.trace, system_trace(r))] if out.trace else []), ("-o", out.output, text)])


def _layout_value(key: str, text: str):
    """A --grid value of a layout axis in its option's type (int, bool or text)."""
    kind = typing.get_type_hints(SystemOptions)[key]
    value = load_yaml_text(text, f"--grid {key}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError("grid", f"'{text}' is not an integer", detail=key)
    if kind is bool and not isinstance(value, bool):
        raise OptionError("grid", f"'{text}' is not true or false", detail=key)
    return value if kind in (int, bool) else str(value)


def sweep_layouts_command(args: argparse.Namespace, s: SweepOptions) -> int:
    """`tilesim sweep --system S --grid tp=1,2,4 ...`: one system run per layout into the CSV (-o), a table on
    stdout; layouts that do not divide the model or fit the chips are rows with status invalid and the reason."""
    if s.plot or s.resume or s.random is not None:
        raise InputError("--plot, --resume, --random: not for layout sweeps (--system) yet")
    axes = parse_grids(list(s.grid))
    for key, _ in axes:
        if key not in LAYOUT_AXES:
            raise OptionError("grid", f"with {{system}} the grid takes layout options ({', '.join(LAYOUT_AXES)}); "
                                      "give chip fields with --set", detail=key)
    grid = {key: [_layout_value(key, v) for v in values] for key, values in axes}
    arch, workload, compile_options = workload_options(args)
    if arch.arch != DEFAULT_ARCH:
        raise InputError(f"--arch {arch.arch}: a system sweep takes its chips from --system")
    base = system_options(args)
    results = run_layouts(workload, llm_options(args), compile_options, base, layout_points(grid), arch.overrides)
    phase = llm_options(args).run_phase
    header = [*grid, "status", "workload", "system", "phase", *LAYOUT_COLUMNS, "reason"]
    rows = [{"workload": workload.workload, "system": dict(lp.point).get("system", base.system), "phase": phase,
             **row} for lp, row in zip(results, layout_rows(results), strict=True)]
    write_csv_atomic(s.output, header, [{c: "" if row.get(c) is None else str(row[c]) for c in header}
                                         for row in rows])
    ok = sum(r["status"] == "ok" for r in rows)
    sys.stdout.write(layout_table(results) + f"sweep: {len(rows)} layouts ({ok} ok, {len(rows) - ok} invalid) -> "
                                             f"{s.output}\n")
    return 0
