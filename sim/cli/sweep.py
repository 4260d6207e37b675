"""`tilesim sweep`: its flags (the workload and LLM options generated as for `run`, plus the sweep's own) and the
command: check, run the points into the CSV, print the summary, draw the plots."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tilesim.arch.errors import InputError
from tilesim.cli.args import LLM_FLAGS, WORKLOAD_FLAGS, add_options, api_keywords
from tilesim.report import sweep_plot
from tilesim.report.sweep_text import sweep_summary
from tilesim.studies import api
from tilesim.studies.sweep import BACKENDS, OBJECTIVE_METRIC, parse_grids, require_dask, run_sweep


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_sweep_arguments(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand (workload options as for run) to an argparse subparsers action."""
    p = subparsers.add_parser("sweep", help="run a grid of design points (dotted arch fields) into a CSV")
    add_options(p, WORKLOAD_FLAGS)
    p.add_argument("--grid", action="append", default=[], metavar="K=V1,V2,...",
                   help="an arch field by dotted path and its values, e.g. array.rows=16,32,64 or "
                        "memory.sram.capacity_bytes=256KiB,1MiB (repeatable: the cartesian product is run)")
    p.add_argument("--random", type=int, metavar="K", help="run K points drawn from the grid instead of all")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--jobs", "-j", type=int, default=cores(), help=f"worker processes (default {cores()})")
    p.add_argument("--backend", choices=BACKENDS, default="process",
                   help="process: a local process pool (default); serial; dask: a Dask cluster (tilesim[dask])")
    p.add_argument("--scheduler", metavar="ADDR", help="with --backend dask: e.g. tcp://host:8786 "
                                                       "(default: a LocalCluster of --jobs workers)")
    p.add_argument("--resume", action="store_true", help="keep the points already in -o (or its .partial file)")
    p.add_argument("-o", "--output", help="the results CSV (required)")
    p.add_argument("--plot", action="append", default=[], metavar="FILE",
                   help="pareto.png (latency vs energy, area as colour) or heatmap.png (--metric over the first "
                        "two grid axes); the kind is read from the file name (tilesim[plot])")
    p.add_argument("--metric", help="the heatmap's metric (default: the --objective's: latency_s, energy_pj or edp)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    add_options(p, LLM_FLAGS, phase={
        "help": "decoder LLMs: prefill (default), decode (one step at --context) or generate; rows add ttft_s, "
                "tpot_s, tokens_per_s, pj_per_token, ..."})
    return p


def cmd_sweep(args) -> int:
    """tilesim sweep: check the options, run the points, write the CSV, print a summary, draw the plots."""
    if not args.output:
        raise InputError("sweep: -o FILE.csv is required (the results are written there)")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise InputError(f"-o: directory '{out.parent}' does not exist")
    if args.jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.scheduler and args.backend != "dask":
        raise InputError("--scheduler: only with --backend dask")
    if args.backend == "dask":
        require_dask()
    keys = [k for k, _ in parse_grids(args.grid)]
    metric = args.metric or OBJECTIVE_METRIC[args.objective]
    workload, arch, options = api_keywords(args)
    plan = api.plan_sweep(args.grid, workload, arch, random=args.random, seed=args.seed, **options)
    plots = sweep_plot.check_plots(args.plot, keys, metric, plan.spec.is_llm)
    rows = run_sweep(plan.points, plan.spec, out, jobs=args.jobs, backend=args.backend, scheduler=args.scheduler,
                     resume=args.resume, progress=args.progress)
    sys.stdout.write(sweep_summary(rows, keys, str(out)))
    for kind, path in plots:
        sweep_plot.draw(kind, rows, plan.axes, path, metric)
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        print(f"tilesim: {len(failed)} points hit an internal error (status=error in {out}; first: "
              f"{failed[0]['reason']}); please report it", file=sys.stderr)
        return 1
    return 0
