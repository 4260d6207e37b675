"""`tilesim run --system ...`: a decoder LLM on a system of chips (sim/studies/system.py), reported as a table,
JSON or a Perfetto trace."""
from __future__ import annotations

import argparse
import sys

from tilesim.arch.errors import InputError
from tilesim.cli.args import llm_options, sweep_status, system_options, workload_options
from tilesim.report import sweep_plot
from tilesim.report.system import rows_table, system_json, system_table, system_trace
from tilesim.studies.options import DEFAULT_ARCH, OptionError, OutputOptions, SweepOptions
from tilesim.studies.sweep import OBJECTIVE_METRIC, grid_points, parse_grids, random_points, run_sweep
from tilesim.studies.system import system_run
from tilesim.studies.system_sweep import SYSTEM_METRICS, SystemSweepSpec, check_points


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


def is_system_sweep(args: argparse.Namespace, grids: list[str]) -> bool:
    """Whether `tilesim sweep` runs a system sweep: a system or layout option given, or a system grid axis."""
    keys = [g.partition("=")[0].strip() for g in grids]
    return system_options(args).given or any(k == "system" or k.startswith("system.") for k in keys)


def sweep_layouts_command(args: argparse.Namespace, s: SweepOptions) -> int:
    """`tilesim sweep --system S --grid tp=1,2,4 --grid system.link.bandwidth_gb_s=... ...`: a system sweep
    (studies/system_sweep.py) run by run_sweep (process pool, --resume, --random) into the CSV (-o), a table on
    stdout and the --plot files; points that do not divide the model or fit the chips are rows with status invalid
    and the reason."""
    axes = parse_grids(list(s.grid))
    arch, workload, compile_options = workload_options(args)
    if arch.arch != DEFAULT_ARCH:
        raise InputError(f"--arch {arch.arch}: a system sweep takes its chips from --system (grid chip fields "
                         "as chip.<field>)")
    spec = SystemSweepSpec(workload, llm_options(args), compile_options, system_options(args), arch.overrides)
    check_points(spec, axes)
    keys = [k for k, _ in axes]
    metric = s.metric or OBJECTIVE_METRIC[args.objective]
    if metric not in SYSTEM_METRICS:
        raise OptionError("metric", f"system sweeps report {', '.join(SYSTEM_METRICS)}", detail=metric)
    plots = sweep_plot.check_plots(list(s.plot), keys, metric, llm=True)
    points = random_points(list(s.grid), s.random, s.seed) if s.random is not None else grid_points(list(s.grid))
    rows = run_sweep(points, spec, s.output, jobs=s.jobs, backend=s.backend, scheduler=s.scheduler,
                     resume=s.resume, progress=s.progress)
    ok = sum(r["status"] == "ok" for r in rows)
    sys.stdout.write(rows_table(keys, rows) + f"sweep: {len(rows)} layouts ({ok} ok, {len(rows) - ok} invalid) -> "
                                              f"{s.output}\n")
    for kind, path in plots:
        sweep_plot.draw(kind, rows, axes, path, metric)
    return sweep_status(rows, s.output)
