"""`tilesim run --system ...`: a decoder LLM on a system of chips (sim/studies/system.py), reported as a table,
JSON or a Perfetto trace."""
from __future__ import annotations

import argparse

from tilesim.arch.errors import InputError
from tilesim.cli.args import llm_options, options_of, workload_options
from tilesim.report.system import system_json, system_table, system_trace
from tilesim.studies.options import DEFAULT_ARCH, OutputOptions, SystemOptions
from tilesim.studies.system import system_run

SYSTEM_FLAGS = ("system", "tp", "pp", "ep", "dp", "micro_batches", "virtual_stages", "pipeline_schedule",
                "sequence_parallel", "collective_algorithm")


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
