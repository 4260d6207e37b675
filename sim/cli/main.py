"""The `tilesim` command line (docs/design.md section 8): bad input -> one line on stderr, exit status 2.

Built on the Python API (sim/studies/api.py); the flags of run, compare and sweep are generated from the option
dataclasses (sim/cli/args.py)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from tilesim.arch import InputError, arch_to_dict, load_arch, preset_names
from tilesim.arch.authoring import TEMPLATES, editable_yaml, template_text
from tilesim.arch.errors import ArchWarning
from tilesim.arch.loader import raw_arch
from tilesim.cli.args import (
    COMMAND_HELP,
    LLM_FLAGS,
    SYSTEM_FLAGS,
    WORKLOAD_FLAGS,
    Parser,
    add_options,
    api_keywords,
    cli_message,
    output_options,
    system_options,
    workload_options,
)
from tilesim.compiler.fusion import POLICIES
from tilesim.core.energy import static_power_components_mw
from tilesim.core.files import output_target, write_all
from tilesim.report.explain import schedule_table
from tilesim.report.format import sig
from tilesim.report.llm import llm_csv, llm_json, llm_table
from tilesim.report.plots import check_plots, draw, draw_llm, kernel_components
from tilesim.report.text import check_finite, render, tdp_warning
from tilesim.report.trace import llm_trace_json, trace_json
from tilesim.studies import api
from tilesim.studies.llm import llm_dict, phase_runs
from tilesim.studies.runs import schedule, workload_graph
from tilesim.workloads import describe_workloads

# The modules of sweep, serve, systems, compare's report, the HTML report and validate-array load when their
# command runs: a `tilesim run` starts without them.
RUN_OUTPUT_FLAGS = ("format", "output", "top")
RUN_EXTRA_FLAGS = ("trace", "show_schedule", "plot")
COMPARE_LLM_FLAGS = ("phase", "context", "prompt_len")     # compare lowers one graph: a prefill or a decode step


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with its subcommands; given the `command` about to run, the flags of sweep and serve
    (whose modules are slow to load) are added only for their own command."""
    p = Parser(prog="tilesim", description="Cycle-approximate accelerator simulator.")
    sub = p.add_subparsers(dest="command", parser_class=Parser,
                           metavar="{run,compare,sweep,serve,report,validate-array,show-arch,list}")
    sub.required = True

    run = sub.add_parser("run", help="simulate a workload on an arch and print the report")
    add_options(run, (*WORKLOAD_FLAGS, *RUN_OUTPUT_FLAGS, *LLM_FLAGS, *RUN_EXTRA_FLAGS, *SYSTEM_FLAGS),
                gen_tokens={"default": argparse.SUPPRESS})     # absent unless given: refused outside generate

    cmp = sub.add_parser("compare", help="the same workload under several fusion policies, side by side")
    add_options(cmp, (*WORKLOAD_FLAGS[1:], "fusion", *RUN_OUTPUT_FLAGS, *COMPARE_LLM_FLAGS), fusion={
        "default": "none,epilogue,full", "choices": None,
        "help": "comma-separated policies to compare (default none,epilogue,full)"},
        format={"choices": ("table", "json")},
        output={"help": "write the comparison to this file instead of stdout"},
        top={"default": None, "help": "table format: fused layer patterns listed per policy (default 10)"},
        phase={"choices": ("prefill", "decode"), "help": "decoder LLMs: the prefill (default) or one decode step "
                                                         "at --context"})

    for name, add in (("sweep", add_sweep_arguments), ("serve", add_serve_arguments)):
        if command in (None, name):
            add(sub)
        else:
            sub.add_parser(name, help=COMMAND_HELP[name])

    rep = sub.add_parser("report", help="one self-contained HTML page of a run or compare JSON or a sweep CSV")
    rep.add_argument("input", help="the output of `run -f json`, `compare -f json` or `sweep -o FILE.csv`")
    rep.add_argument("--html", required=True, metavar="FILE.html", help="the HTML file to write")

    val = sub.add_parser("validate-array", help="check a workload's GEMMs on the cycle-level array model")
    add_options(val, WORKLOAD_FLAGS)
    val.add_argument("--max-macs", type=int, default=2_000_000,
                     help="skip GEMMs larger than this many MACs (default 2,000,000)")

    show = sub.add_parser("show-arch", help="print the resolved arch, energy table and sources included")
    show.add_argument("arch", nargs="?", default=None, help="preset name, arch YAML or SCALE-Sim .cfg")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    show.add_argument("--format", "-f", choices=("yaml", "json"), default="yaml")
    show.add_argument("--template", nargs="?", const="edge", choices=TEMPLATES, metavar="{edge,datacenter,gpu}",
                      help="print a minimal commented arch YAML to start from (default edge) instead of an arch")

    lst = sub.add_parser("list", help="list built-in workloads, arch presets or system presets")
    lst.add_argument("what", choices=("workloads", "archs", "systems"))
    return p


def input_files(args: argparse.Namespace) -> tuple[str, ...]:
    """The files a command reads (workload, arch, pinned mappings): no output may replace them."""
    given = (getattr(args, "workload", None), getattr(args, "arch", None), getattr(args, "pinned", None),
             getattr(args, "input", None))
    return tuple(p for p in given if isinstance(p, str) and Path(p).is_file())


def check_outputs(args: argparse.Namespace, **paths: str | None) -> None:
    """Refuse, before any work, outputs that are folders, lie in missing folders or would replace an input."""
    for flag, path in paths.items():
        if path is not None:
            output_target(path, input_files(args), flag)


def write_outputs(outputs: list[tuple[str, str | None, str]]) -> None:
    """Write (flag, path, text) outputs of one command: files all or none, then stdout for those without a path."""
    files = [(Path(path), text) for _, path, text in outputs if path is not None]
    try:
        write_all(files)
    except OSError as e:
        given = [(f, p) for f, p, _ in outputs if p is not None]
        flag, path = next(((f, p) for f, p in given if e.filename and Path(p).name in str(e.filename)), given[0])
        raise InputError(f"{flag}: cannot write '{path}': {e.strerror or e}") from None
    for _, path, text in outputs:
        if path is None:
            sys.stdout.write(text)


def write_output(text: str, path: str | None) -> None:
    """Print, or write the file whole (a regular file through a temporary one; devices and links written through)."""
    write_outputs([("-o", path, text)])


def cmd_compare(args) -> None:
    """tilesim compare: fusion policies side by side."""
    policies = tuple(p.strip() for p in args.fusion.split(",") if p.strip())
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise InputError(f"--fusion: got '{args.fusion}'; give a comma-separated list of {', '.join(POLICIES)}")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top: must be >= 1, got {args.top}")
    if args.top is not None and args.format == "json":
        raise InputError("--top: only with --format table (the JSON lists every fused kernel and pattern)")
    args.fusion = policies[0]
    check_outputs(args, **{"-o": args.output})
    workload, arch, kw = api_keywords(args, llm=False)
    kw.pop("fusion")
    kw |= {name: getattr(args, name) for name in COMPARE_LLM_FLAGS}
    result = api.compare(workload, arch, policies=policies, **kw)
    from tilesim.report.compare import comparison_json, comparison_table  # noqa: PLC0415 (start-up time)
    text = comparison_json(result) if args.format == "json" else comparison_table(result, args.top or 10)
    write_output(text, args.output)


def cmd_run(args) -> None:
    """tilesim run: workload -> Graph -> Schedule -> SimResult -> report."""
    out = output_options(args)
    if hasattr(args, "gen_tokens") and args.phase != "generate":
        raise InputError(f"--gen-tokens: only with --phase generate, not {args.phase or 'prefill (the default)'}")
    if system_options(args).given:              # a decoder LLM on a system of chips (sim/cli/system.py)
        check_outputs(args, **{"-o": out.output, "--trace": out.trace})
        from tilesim.cli.system import run_system_command  # noqa: PLC0415 (start-up time)
        return run_system_command(args, out, write_outputs)
    plots = check_plots(list(out.plot))
    workload, arch, kw = api_keywords(args)
    timeline = bool(out.trace) or any(k == "timeline" for k, _ in plots)
    check_outputs(args, **{"-o": out.output, "--trace": out.trace})
    result = api.run(workload, arch, timeline=timeline, **kw)
    tdp = result.arch.power.tdp_w if result.arch.power else 0.0
    if result.llm is not None:
        return write_llm(result, out, plots, args.objective, tdp)
    warn(tdp_warning(result.sim.power_w, tdp, result.arch.name))
    text = render(result.sim, out.format, out.top, args.objective)
    if out.show_schedule:
        text += "\n" + schedule_table(result.schedule, result.sim, result.arch, args.objective)
    outputs = [("--trace", out.trace, trace_json(result.sim))] if out.trace else []
    write_outputs([*outputs, ("-o", out.output, text)])
    components = kernel_components(result.schedule, result.arch, result.sim) \
        if any(k == "energy" for k, _ in plots) else None
    for kind, path in plots:
        draw(kind, result.sim, path, components)


def write_llm(result: api.RunResult, out, plots: list[tuple[str, str]], objective: str, tdp: float) -> None:
    """A decoder LLM run's report, trace and plots (every output option of a graph run; docs/llm.md)."""
    r = result.llm
    data = llm_dict(r)
    check_finite(data)
    render_llm = {"table": lambda: llm_table(r, out.top), "json": lambda: llm_json(r, data),
                  "csv": lambda: llm_csv(r)}
    text = render_llm[out.format]()
    if out.show_schedule:
        for phase, sim in phase_runs(r):
            plan = r.prefill_schedule if phase == "prefill" else r.decode_schedule
            text += f"\n{phase if phase == 'prefill' else 'last decode step'} " + \
                schedule_table(plan, sim, result.arch, objective)
    outputs = [("--trace", out.trace, llm_trace_json(r))] if out.trace else []
    write_outputs([*outputs, ("-o", out.output, text)])
    warn(tdp_warning(r.power_w, tdp, result.arch.name))
    for kind, path in plots:
        draw_llm(kind, r, path)


def warn(line: str | None) -> None:
    """Write a one-line warning to stderr (nothing for None)."""
    if line:
        sys.stderr.write(line + "\n")


def cmd_report(args) -> None:
    """tilesim report: a self-contained HTML summary of a saved result."""
    from tilesim.report.html_page import write_report  # noqa: PLC0415 (start-up time)
    write_report(args.input, args.html)


def cmd_validate_array(args) -> int:
    """tilesim validate-array: every GEMM through the register-level array; exit 1 if any disagrees."""
    if args.max_macs < 1:
        raise InputError(f"--max-macs: must be >= 1 (GEMMs with more MACs are skipped), got {args.max_macs}")
    arch_options, workload, compile_options = workload_options(args)
    arch = api.load_arch(arch_options.arch, arch_options.overrides)
    plan = schedule(workload_graph(arch, workload), arch, compile_options)
    from tilesim.studies.validate import checks_table, validate_array  # noqa: PLC0415 (start-up time)
    checks = validate_array(plan, arch, args.max_macs)
    if not any(not c.skipped for c in checks):
        smallest = min((c.m * c.n * c.k for c in checks), default=None)
        raise InputError("validate-array: no GEMM to check: " + (
            f"every one has more than --max-macs {args.max_macs:,} MACs (the smallest {smallest:,}); raise "
            "--max-macs" if checks else f"workload '{workload.workload}' has no contraction on the array"))
    sys.stdout.write(checks_table(checks))
    return 0 if all(c.agrees for c in checks) else 1


def cmd_show_arch(args) -> None:
    """tilesim show-arch: the arch after defaults and --set, as JSON (resolved) or YAML (editable: what the models
    derive is marked, so that editing node_nm takes effect); or a commented template to start from."""
    if args.template:
        if args.arch or args.overrides or args.format != "yaml":
            raise InputError("--template: prints a template to start from; give it without an arch, --set or --format")
        sys.stdout.write(template_text(args.template))
        return
    spec = args.arch or api.DEFAULT_ARCH
    arch = load_arch(spec, args.overrides)
    if args.format == "json":
        sys.stdout.write(json.dumps(arch_to_dict(arch), indent=2) + "\n")
    else:
        sys.stdout.write(editable_yaml(spec, args.overrides))
        static = static_power_components_mw(arch)     # per-mm^2 leakage resolved per component: a comment keeps
        if static:                                     # the YAML loadable
            sys.stdout.write("# static power by component, resolved (mW): "
                             + ", ".join(f"{k} {sig(v)}" for k, v in static.items()) + "\n")


def cmd_list(args) -> None:
    """tilesim list workloads|archs."""
    if args.what == "systems":                  # docs/scale-out.md
        from tilesim.arch.system import load_system, system_preset_names  # noqa: PLC0415 (start-up time)
        rows = [(name, load_system(name).description) for name in system_preset_names()]
    elif args.what == "archs":
        rows = [(name, raw_arch(name)[0].get("description", "")) for name in preset_names()]
    else:
        rows = list(describe_workloads().items())
    width = max(len(n) for n, _ in rows)
    sys.stdout.write("".join(f"{n:<{width}}  {d}\n" for n, d in rows))


def add_sweep_arguments(sub) -> None:
    """The `sweep` subcommand (sim/cli/sweep.py, loaded now)."""
    from tilesim.cli.sweep import add_sweep_arguments as add  # noqa: PLC0415 (start-up time)
    add(sub)


def add_serve_arguments(sub) -> None:
    """The `serve` subcommand (sim/cli/serve.py, loaded now)."""
    from tilesim.cli.serve import add_serve_arguments as add  # noqa: PLC0415 (start-up time)
    add(sub)


def cmd_sweep(args) -> int:
    """tilesim sweep (sim/cli/sweep.py)."""
    from tilesim.cli.sweep import cmd_sweep as command  # noqa: PLC0415 (start-up time)
    return command(args)


def cmd_serve(args) -> None:
    """tilesim serve (sim/cli/serve.py)."""
    from tilesim.cli.serve import cmd_serve as command  # noqa: PLC0415 (start-up time)
    return command(args)


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "sweep": cmd_sweep, "serve": cmd_serve, "report": cmd_report,
            "validate-array": cmd_validate_array, "show-arch": cmd_show_arch, "list": cmd_list}


def stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM ends the command like Ctrl-C would: cleanups run, temporary files go (exit status 143)."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 2 bad input, 1 internal error)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_on_sigterm)
    pending: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", ArchWarning)
        warnings.showwarning = collect_arch_warnings(warnings.showwarning, pending)
        status = run_command(argv)
    if status != 2:                  # bad input: its one error line is all that is printed
        for line in pending:
            warn(f"tilesim: warning: {line}")
    return status


def collect_arch_warnings(other, pending: list[str]):
    """A warnings.showwarning that collects each distinct ArchWarning once into `pending` (a sweep loads the arch
    once per point; main prints them, one stderr line each, when the command did not fail on bad input), and hands
    other warnings to `other`."""
    pid = os.getpid()

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, ArchWarning):
            return other(message, category, filename, lineno, file, line)
        if str(message) not in pending:
            pending.append(str(message))
            if os.getpid() != pid:         # a sweep's worker process: its list never returns, so print it now
                warn(f"tilesim: warning: {message}")
        return None
    return show


def run_command(argv: list[str] | None) -> int:
    """Parse and run one command: returns the exit status (0 ok, 2 bad input, 1 internal error)."""
    try:
        given = sys.argv[1:] if argv is None else argv
        args = build_parser(given[0] if given and given[0] in COMMANDS else None).parse_args(given)
        return COMMANDS[args.command](args) or 0
    except InputError as e:
        print(f"tilesim: error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tilesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: one line unless TILESIM_DEBUG asks for the traceback
        if os.environ.get("TILESIM_DEBUG"):
            raise
        print(f"tilesim: internal error: {type(e).__name__}: {e} (set TILESIM_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
