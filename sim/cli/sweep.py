"""`tilesim sweep`: its flags (the workload and LLM options generated as for `run`, plus the sweep's own) and the
command: check, run the points into the CSV, print the summary, draw the plots."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from tilesim.arch.errors import InputError
from tilesim.cli.args import (
    COMMAND_HELP,
    LLM_FLAGS,
    SYSTEM_FLAGS,
    WORKLOAD_FLAGS,
    add_options,
    api_keywords,
    options_of,
    sweep_status,
)
from tilesim.cli.system import is_system_sweep, sweep_layouts_command
from tilesim.core.files import output_target
from tilesim.report import sweep_plot
from tilesim.report.sweep_text import sweep_summary
from tilesim.studies import api
from tilesim.studies.options import OptionError, SweepOptions
from tilesim.studies.sweep import (
    LLM_METRICS,
    METRICS,
    OBJECTIVE_METRIC,
    parse_grids,
    parse_pareto_metrics,
    require_dask,
    run_sweep,
)


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OneWorkload(argparse.Action):
    """-w given twice is an error naming the workload axis (argparse would silently keep the last)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = vars(namespace).setdefault("_workloads_given", [])
        seen.append(values)
        if len(seen) > 1:
            raise InputError(f"{option_string}: given {len(seen)} times ({', '.join(seen)}); a sweep runs one "
                             f"workload per point: vary it with --grid workload={','.join(seen)}")
        setattr(namespace, self.dest, values)


def add_sweep_arguments(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand (workload options as for run) to an argparse subparsers action."""
    p = subparsers.add_parser("sweep", help=COMMAND_HELP["sweep"])
    add_options(p, WORKLOAD_FLAGS, workload={"action": OneWorkload})
    add_options(p, tuple(f.name for f in fields(SweepOptions)), SweepOptions,
                jobs={"default": cores(), "help": f"worker processes (default {cores()})"})
    add_options(p, SYSTEM_FLAGS)                 # layouts of a decoder LLM on a system (sim/cli/system.py)
    add_options(p, LLM_FLAGS, phase={
        "help": "decoder LLMs: prefill (default), decode (one step at --context) or generate; rows add ttft_s, "
                "tpot_s, tokens_per_s, pj_per_token, ..."})
    return p


def cmd_sweep(args) -> int:
    """tilesim sweep: check the options, run the points, write the CSV, print a summary, draw the plots."""
    s = options_of(SweepOptions, args)
    if not s.output:
        raise InputError("sweep: -o FILE.csv is required (the results are written there)")
    inputs = tuple(p for p in (args.workload, args.arch, getattr(args, "pinned", None))
                   if isinstance(p, str) and Path(p).is_file())
    out = output_target(s.output, inputs)          # not a folder, a missing folder or one of the inputs
    if s.jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {s.jobs}")
    if s.scheduler and s.backend != "dask":
        raise InputError("--scheduler: only with --backend dask")
    if s.backend == "dask":
        require_dask()
    if is_system_sweep(args, list(s.grid)):
        if s.pareto_metrics is not None or s.area_budget_mm2 is not None:
            raise InputError("--pareto-metrics, --area-budget-mm2: not for system sweeps (their table lists every "
                             "layout)")
        return sweep_layouts_command(args, s)
    keys = [k for k, _ in parse_grids(list(s.grid))]
    metric = s.metric or OBJECTIVE_METRIC[args.objective]
    workload, arch, options = api_keywords(args)
    plan = api.plan_sweep(list(s.grid), workload, arch, random=s.random, seed=s.seed, **options)
    llm = plan.spec.has_llm_columns
    plots = sweep_plot.check_plots(list(s.plot), keys, metric, llm)
    front = parse_pareto_metrics(s.pareto_metrics, METRICS + LLM_METRICS if llm else METRICS)
    if s.area_budget_mm2 is not None and not s.area_budget_mm2 > 0:
        raise OptionError("area_budget_mm2", f"must be > 0, got {s.area_budget_mm2:g}")
    rows = run_sweep(plan.points, plan.spec, out, jobs=s.jobs, backend=s.backend, scheduler=s.scheduler,
                     resume=s.resume, progress=s.progress)
    sys.stdout.write(sweep_summary(rows, keys, str(out), front, s.area_budget_mm2))
    for kind, path in plots:
        sweep_plot.draw(kind, rows, plan.axes, path, metric, front, s.area_budget_mm2)
    return sweep_status(rows, out)
