"""The `tilesim` command line (DESIGN.md section 7): bad input -> one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tilesim.arch import InputError, arch_to_dict, load_arch, preset_names
from tilesim.arch.loader import load_yaml_text, raw_arch
from tilesim.compiler.fusion import POLICIES
from tilesim.compiler.mapper import OBJECTIVES
from tilesim.compiler.schedule import MAPPERS, TIMING_MODES, CompileOptions, load_pinned, lower
from tilesim.core.files import write_atomic
from tilesim.core.simulate import kernel_evaluator, simulate
from tilesim.report.plots import check_plots
from tilesim.report.text import render
from tilesim.studies.llm import PHASES
from tilesim.studies.sweep import add_sweep_arguments, cmd_sweep

DEFAULT_WORKLOAD = "resnet50"
DEFAULT_ARCH = "tpu-v1"
FORMATS = ("table", "json", "csv")


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse on one line and exits with status 2."""

    def error(self, message: str):
        raise InputError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    p = _Parser(prog="tilesim", description="Cycle-approximate accelerator simulator.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser,
                           metavar="{run,compare,sweep,report,validate-array,show-arch,list}")
    sub.required = True

    run = sub.add_parser("run", help="simulate a workload on an arch and print the report")
    _workload_args(run)
    run.add_argument("--format", "-f", choices=FORMATS, default="table")
    run.add_argument("-o", "--output", help="write the report to this file instead of stdout")
    run.add_argument("--top", type=int, help="table format: show only the N longest kernels")
    run.add_argument("--phase", choices=PHASES,
                     help="decoder LLMs: prefill (default), decode (one step at --context) or generate")
    run.add_argument("--context", type=int, help="decode: tokens already in the KV cache")
    run.add_argument("--prompt-len", type=int, help="prefill/generate: prompt tokens (default --seq-len, or 128)")
    run.add_argument("--gen-tokens", type=int, default=128, help="generate: tokens to generate (default 128)")
    run.add_argument("--mlp-sparsity", type=float, default=0.0,
                     help="decoder LLMs: share of MLP neurons skipped per token (compute and weight traffic)")
    run.add_argument("--trace", metavar="TRACE.json",
                     help="write a Chrome/Perfetto trace (one track per engine, a slice per tile)")
    run.add_argument("--show-schedule", action="store_true",
                     help="table format: also list each kernel's mapping, traffic per operand and why it won")
    run.add_argument("--plot", action="append", default=[], metavar="FILE",
                     help="roofline.png, energy.png or timeline.png (engine utilisation over time); the kind is "
                          "read from the file name (repeatable; tilesim[plot])")

    cmp = sub.add_parser("compare", help="the same workload under several fusion policies, side by side")
    _workload_args(cmp, fusion=False)
    cmp.add_argument("--fusion", default="none,epilogue,full",
                     help="comma-separated policies to compare (default none,epilogue,full)")
    cmp.add_argument("--format", "-f", choices=("table", "json"), default="table")
    cmp.add_argument("-o", "--output", help="write the comparison to this file instead of stdout")
    cmp.add_argument("--top", type=int, default=10, help="fused groups listed per policy (default 10)")

    add_sweep_arguments(sub)

    rep = sub.add_parser("report", help="one self-contained HTML page of a run or compare JSON or a sweep CSV")
    rep.add_argument("input", help="the output of `run -f json`, `compare -f json` or `sweep -o FILE.csv`")
    rep.add_argument("--html", required=True, metavar="FILE.html", help="the HTML file to write")

    val = sub.add_parser("validate-array", help="check a workload's GEMMs on the cycle-level array model")
    _workload_args(val)
    val.add_argument("--max-macs", type=int, default=2_000_000,
                     help="skip GEMMs larger than this many MACs (default 2,000,000)")

    show = sub.add_parser("show-arch", help="print the resolved arch, energy table and sources included")
    show.add_argument("arch", nargs="?", default=DEFAULT_ARCH, help="preset name, arch YAML or SCALE-Sim .cfg")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    show.add_argument("--format", "-f", choices=("yaml", "json"), default="yaml")

    lst = sub.add_parser("list", help="list built-in workloads or arch presets")
    lst.add_argument("what", choices=("workloads", "archs"))
    return p


def _workload_args(cmd: argparse.ArgumentParser, fusion: bool = True) -> None:
    """The options that choose a workload, an arch and how to lower it."""
    if fusion:
        cmd.add_argument("--fusion", choices=POLICIES, default="full",
                         help="none | epilogue | full (default) | attention (only attention chains, as eager PyTorch "
                              "with scaled_dot_product_attention): which ops run fused in one kernel")
    cmd.add_argument("--workload", "-w", default=DEFAULT_WORKLOAD,
                     help=f"built-in name, gemm:M,N,K, a SCALE-Sim topology .csv or an .onnx model "
                          f"(default {DEFAULT_WORKLOAD}; see `tilesim list workloads`)")
    cmd.add_argument("--arch", "-a", default=DEFAULT_ARCH,
                     help=f"preset name or arch YAML (default {DEFAULT_ARCH}; see `tilesim list archs`)")
    cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                     help="override an arch field by dotted path, e.g. array.rows=64 or memory.dram.bandwidth_gb_s=50")
    cmd.add_argument("--timing", choices=TIMING_MODES, help="array timing model (default: the arch's)")
    cmd.add_argument("--mapper", choices=MAPPERS, default="search",
                     help="search: best tiling and loop order per layer (default); naive: first tiling that fits")
    cmd.add_argument("--objective", choices=OBJECTIVES, default="latency", help="what the mapping search minimises")
    cmd.add_argument("--mapping", metavar="FILE.yaml",
                     help="pin kernels' mappings: {kernel: {dataflow, tile_m, tile_n, tile_k, order}}")
    cmd.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    cmd.add_argument("--seq-len", type=int, help="sequence length of encoders and of prefill (default: the model's)")
    cmd.add_argument("--weight-dtype", help="decoder LLMs: weights' data type (default: --dtype)")
    cmd.add_argument("--activation-dtype", help="decoder LLMs: activations' data type (default: --dtype)")
    cmd.add_argument("--kv-dtype", help="decoder LLMs: the KV cache's data type (default: --dtype)")
    cmd.add_argument("--dtype", help="data type of the workload (default: the array's dtype); 'model' keeps an "
                                     "ONNX model's own types")
    cmd.add_argument("--dim", dest="dims", action="append", default=[], metavar="NAME=VALUE",
                     help="size of a symbolic dimension of an ONNX model's inputs, e.g. --dim batch=8 (repeatable)")


def write_output(text: str, path: str | None) -> None:
    """Print, or write atomically (temporary file then rename) so no half-written file is ever left."""
    if path is None:
        sys.stdout.write(text)
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"-o: directory '{target.parent}' does not exist")
    write_atomic(target, text)


def _graph(args):
    """Arch and Graph from the workload options (decoder LLMs: their prefill, or --phase decode at --context)."""
    from tilesim.workloads import load_workload
    arch = load_arch(args.arch, args.overrides)
    llm = {}
    if getattr(args, "phase", None) == "decode":
        llm = {"phase": "decode", "context": args.context}
    return arch, load_workload(args.workload, seq_len=args.seq_len, batch=args.batch, dtype=_dtype(args, arch),
                               dims=parse_dims(args.dims), dtypes=_dtypes(args), **llm)


def _options(args, fusion: str) -> CompileOptions:
    """Compile options from the command line (pinned mappings read and checked here)."""
    pinned = ()
    if args.mapping:
        path = Path(args.mapping)
        if not path.is_file():
            raise InputError(f"--mapping: no such file '{args.mapping}'")
        pinned = load_pinned(load_yaml_text(path.read_text(), str(path)), str(path))
    return CompileOptions(timing=args.timing, fusion=fusion, mapper=args.mapper, objective=args.objective,
                          pinned=pinned)


def _schedule(args):
    """Arch and Schedule from the workload options."""
    arch, graph = _graph(args)
    options = _options(args, args.fusion)
    evaluate = kernel_evaluator(arch, options.resolved_timing(arch), args.objective)
    return arch, lower(graph, arch, options, evaluate)


def cmd_compare(args) -> None:
    """tilesim compare: fusion policies side by side."""
    from tilesim.studies.compare import compare, comparison_json, comparison_table
    policies = tuple(p.strip() for p in args.fusion.split(",") if p.strip())
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise InputError(f"--fusion: got '{args.fusion}'; give a comma-separated list of {', '.join(POLICIES)}")
    if args.top < 1:
        raise InputError(f"--top: must be >= 1, got {args.top}")
    arch, graph = _graph(args)
    result = compare(graph, arch, policies, _options(args, policies[0]))
    text = comparison_json(result) if args.format == "json" else comparison_table(result, args.top)
    write_output(text, args.output)


def parse_dims(items: list[str]) -> dict[str, int]:
    """--dim NAME=VALUE options as a dict; malformed, non-positive or repeated ones are one-line errors."""
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
    return dims


def _dtype(args, arch) -> str | None:
    """The workload dtype: --dtype, else the array's; 'model' (None) keeps an ONNX model's own types."""
    if args.dtype != "model":
        return args.dtype or arch.array.dtype
    if Path(args.workload).suffix.lower() != ".onnx":
        raise InputError("--dtype model: only .onnx workloads carry their own data types; give a dtype "
                         "(e.g. int8, fp16) or leave --dtype out for the array's")
    return None


def _dtypes(args) -> tuple | None:
    """(weight, activation, kv) data types for decoder LLMs, None when none was given."""
    chosen = (args.weight_dtype, args.activation_dtype, args.kv_dtype)
    return chosen if any(chosen) else None


def prompt_tokens(phase: str, context: int | None, prompt_len: int | None, seq_len: int | None) -> int:
    """Tokens in the KV cache when decoding starts (decode: --context), or the prompt's."""
    from tilesim.workloads.llm import DEFAULT_SEQ_LEN
    return context if phase == "decode" else (prompt_len or seq_len or DEFAULT_SEQ_LEN)


def check_phase_args(phase: str, context: int | None, prompt_len: int | None, seq_len: int | None,
                     gen_tokens: int, max_positions: int, model: str) -> int:
    """The LLM phase options as `run` and `sweep` take them, each bad one a line naming its flag; returns
    prompt_tokens."""
    if phase == "decode" and context is None:
        raise InputError("--context: --phase decode needs the number of tokens already in the KV cache")
    if context is not None and phase != "decode":
        raise InputError("--context: only with --phase decode (generate grows it from --prompt-len)")
    for flag, value in (("--context", context), ("--prompt-len", prompt_len), ("--gen-tokens", gen_tokens)):
        if value is not None and value < (0 if flag == "--context" else 1):
            raise InputError(f"{flag}: must be {'>= 0' if flag == '--context' else '>= 1'}, got {value}")
    prompt = prompt_tokens(phase, context, prompt_len, seq_len)
    if phase == "generate" and prompt + gen_tokens > max_positions:
        raise InputError(f"--gen-tokens: {model} has {max_positions} positions; a {prompt}-token prompt "
                         f"and {gen_tokens} generated tokens need {prompt + gen_tokens}")
    return prompt


def cmd_llm(args, cfg) -> None:
    """tilesim run on a decoder LLM: prefill, one decode step, or generation, with TTFT, TPOT and pJ/token."""
    from tilesim.studies.llm import llm_dict, llm_table, run_llm
    from tilesim.workloads import llm as wl
    phase = args.phase or "prefill"
    prompt = check_phase_args(phase, args.context, args.prompt_len, args.seq_len, args.gen_tokens,
                              cfg.max_positions, cfg.name)
    arch = load_arch(args.arch, args.overrides)
    dtype = _dtype(args, arch)
    types = wl.resolve_dtypes(_dtypes(args), dtype)

    active = wl.sparse_mlp(cfg, args.mlp_sparsity)

    def graph_for(kind: str, size: int):
        sizes = {"seq_len": size} if kind == "prefill" else {"context": size}
        return wl.decoder_graph(active, batch=args.batch, phase=kind, dtypes=types, **sizes)

    result = run_llm(graph_for, arch, _options(args, args.fusion), phase, args.batch, prompt, args.gen_tokens,
                     wl.weight_bytes(cfg, types.weight), wl.kv_cache_bytes_per_token(cfg, types.kv))
    if args.format == "table":
        text = llm_table(result)
    elif args.format == "json":
        text = json.dumps(llm_dict(result), indent=2, allow_nan=False) + "\n"
    else:
        raise InputError("--format csv: LLM runs report as table or json")
    write_output(text, args.output)


def cmd_run(args) -> None:
    """tilesim run: workload -> Graph -> Schedule -> SimResult -> report."""
    from tilesim.workloads import decoder_config
    if args.top is not None and args.top < 1:
        raise InputError(f"--top: must be >= 1, got {args.top}")
    cfg = decoder_config(args.workload)
    plots = check_plots(args.plot)
    if plots and cfg is not None:
        raise InputError("--plot: not for decoder LLM runs yet; `tilesim report` draws the energy plot of their "
                         "JSON result")
    if cfg is not None and not args.show_schedule:
        return cmd_llm(args, cfg)
    if args.phase or args.context is not None or args.prompt_len is not None:
        raise InputError(f"--phase, --context, --prompt-len: only for decoder LLMs (gpt2, llama2-7b, ... or an "
                         f"HF config.json), not '{args.workload}'")
    arch, schedule = _schedule(args)
    result = simulate(schedule, arch, timeline=bool(args.trace) or any(k == "timeline" for k, _ in plots))
    if args.trace:
        from tilesim.report.trace import trace_json
        write_output(trace_json(result), args.trace)
    text = render(result, args.format, args.top)
    if args.show_schedule:
        if args.format != "table":
            raise InputError("--show-schedule: only with --format table (JSON and CSV carry each kernel's mapping)")
        from tilesim.report.explain import schedule_table
        text += "\n" + schedule_table(schedule, result, arch, args.objective)
    write_output(text, args.output)
    draw_plots(plots, result, schedule, arch)


def draw_plots(plots: list[tuple[str, str]], result, schedule, arch) -> None:
    """Draw each (kind, path) of --plot; the energy plot gets per-kernel components from the schedule."""
    from tilesim.report.plots import draw, kernel_components
    components = kernel_components(schedule, arch, result) if any(k == "energy" for k, _ in plots) else None
    for kind, path in plots:
        draw(kind, result, path, components)


def cmd_report(args) -> None:
    """tilesim report: a self-contained HTML summary of a saved result."""
    from tilesim.report.html_page import cmd_report as report
    report(args)


def cmd_validate_array(args) -> int:
    """tilesim validate-array: every GEMM through the register-level array; exit 1 if any disagrees."""
    from tilesim.studies.validate import checks_table, validate_array
    arch, schedule = _schedule(args)
    checks = validate_array(schedule, arch, args.max_macs)
    sys.stdout.write(checks_table(checks))
    return 0 if all(c.agrees for c in checks) else 1


def cmd_show_arch(args) -> None:
    """tilesim show-arch: the arch after defaults and --set, as YAML (loadable again) or JSON."""
    import json

    import yaml
    from tilesim.core.energy import static_power_components_mw
    arch = load_arch(args.arch, args.overrides)
    d = arch_to_dict(arch)
    if args.format == "json":
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(d, sort_keys=False, width=120))
        static = static_power_components_mw(arch)     # per-mm^2 leakage resolved per component: a comment keeps
        if static:                                     # the YAML loadable
            sys.stdout.write("# static power by component, resolved (mW): "
                             + ", ".join(f"{k} {v:.4g}" for k, v in static.items()) + "\n")


def cmd_list(args) -> None:
    """tilesim list workloads|archs."""
    if args.what == "archs":
        rows = [(name, raw_arch(name)[0].get("description", "")) for name in preset_names()]
    else:
        from tilesim.workloads import describe_workloads
        rows = list(describe_workloads().items())
    width = max(len(n) for n, _ in rows)
    sys.stdout.write("".join(f"{n:<{width}}  {d}\n" for n, d in rows))


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 2 bad input, 1 internal error)."""
    try:
        args = build_parser().parse_args(argv)
        commands = {"run": cmd_run, "compare": cmd_compare, "sweep": cmd_sweep, "report": cmd_report,
                    "validate-array": cmd_validate_array, "show-arch": cmd_show_arch,
                    "list": cmd_list}
        return commands[args.command](args) or 0
    except InputError as e:
        print(f"tilesim: error: {e}", file=sys.stderr)
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
