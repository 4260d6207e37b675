"""The Python API (re-exported by the `tilesim` package): run, compare and sweep with the CLI's options as keyword
arguments (the fields of sim/studies/options.py and CompileOptions); results are frozen and to_dict() gives the
CLI's JSON."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import did_you_mean
from tilesim.arch.loader import apply_overrides, raw_arch
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions, Schedule
from tilesim.core.result import SimResult
from tilesim.core.simulate import simulate
from tilesim.studies import compare as comparing
from tilesim.studies.compare import Comparison
from tilesim.studies.llm import LLMResult, llm_dict
from tilesim.studies.options import (
    DEFAULT_ARCH,
    DEFAULT_WORKLOAD,
    LLMOptions,
    OptionError,
    SystemOptions,
    WorkloadOptions,
    read_pinned,
)
from tilesim.studies.runs import check_decoder, decoder, resolve_arch, schedule, workload_graph
from tilesim.studies.runs import run_decoder as run_decoder_phase

if TYPE_CHECKING:         # serving, sweeps and systems load when first used: a run starts without them
    from tilesim.studies.serve import RateSweep, ServeResult
    from tilesim.studies.serve_sweep import ServeGrid
    from tilesim.studies.sweep import SweepSpec
    from tilesim.studies.system import SystemResult

CompareResult = Comparison          # policies, results, schedules and savings; to_dict() is `compare -f json`


@dataclass(frozen=True)
class RunResult:
    """One run: a simulated graph (with its schedule) or a decoder LLM's phase; to_dict() is `run -f json`."""
    arch: ArchConfig
    sim: SimResult | None = None
    schedule: Schedule | None = None
    llm: LLMResult | None = None

    def to_dict(self) -> dict:
        """The JSON mapping `tilesim run -f json` prints."""
        return llm_dict(self.llm) if self.llm is not None else self.sim.to_dict()


@dataclass(frozen=True)
class Options:
    """The options of a call, split by kind."""
    workload: WorkloadOptions
    llm: LLMOptions
    compile: CompileOptions


def split_options(workload: str, options: Mapping[str, Any], caller: str, llm: bool = True) -> Options:
    """Keyword options into their dataclasses; `mapping` (a YAML file) is read into `pinned`."""
    kinds = (WorkloadOptions, LLMOptions, CompileOptions) if llm else (WorkloadOptions, CompileOptions)
    names = {f.name: cls for cls in kinds for f in fields(cls)} | {"mapping": CompileOptions}
    names.pop("workload")
    for key in options:
        if key not in names:
            raise TypeError(f"{caller}() got an unexpected option '{key}'{did_you_mean(key, names)}")
    given = dict(options)
    if given.get("mapping") is not None:
        given["pinned"] = read_pinned(given.pop("mapping"))
    given.pop("mapping", None)
    pick = lambda cls: {k: v for k, v in given.items() if names.get(k) is cls}    # noqa: E731
    return Options(WorkloadOptions(workload, **pick(WorkloadOptions)), LLMOptions(**pick(LLMOptions)),
                   CompileOptions(**pick(CompileOptions)))


def load_arch(arch: str | ArchConfig = DEFAULT_ARCH, overrides: Sequence[str] = ()) -> ArchConfig:
    """An arch from a preset name, an arch YAML or a SCALE-Sim .cfg, with dotted-path overrides ('array.rows=64')."""
    return resolve_arch(arch, tuple(overrides))


def load_workload(workload: str = DEFAULT_WORKLOAD, arch: str | ArchConfig = DEFAULT_ARCH, **options: Any) -> Graph:
    """The workload's operator Graph in the arch's dtype (WorkloadOptions fields; decoder LLMs: phase, context)."""
    o = split_options(workload, options, "load_workload")
    decoder(o.workload, o.llm)
    return workload_graph(load_arch(arch), o.workload, o.llm)


def run(workload: str = DEFAULT_WORKLOAD, arch: str | ArchConfig = DEFAULT_ARCH, *, overrides: Sequence[str] = (),
        timeline: bool = False, as_graph: bool = False, **options: Any) -> RunResult:
    """Simulate a workload on an arch, as `tilesim run` (decoder LLMs by phase; as_graph: the prefill or decode
    graph alone, with its schedule; timeline: keep per-tile times for traces and timeline plots)."""
    o = split_options(workload, options, "run")
    if o.llm.gen_tokens != LLMOptions().gen_tokens and o.llm.run_phase != "generate":   # not silently ignored
        raise OptionError("gen_tokens", f"only with {{phase}} generate, not {o.llm.run_phase}")
    cfg = decoder(o.workload, o.llm)
    target = load_arch(arch, overrides)
    if cfg is not None and not as_graph:
        return RunResult(target, llm=run_decoder_phase(cfg, target, o.workload, o.llm, o.compile, timeline=timeline))
    if cfg is not None:
        check_decoder(cfg, o.workload, o.llm, target.array.dtype)
    plan = schedule(workload_graph(target, o.workload, o.llm), target, o.compile)
    return RunResult(target, sim=simulate(plan, target, timeline=timeline), schedule=plan)



def run_system(workload: str, system: str, *, overrides: Sequence[str] = (), **options: Any) -> SystemResult:
    """A decoder LLM on a system of chips, as `tilesim run --system` (docs/scale-out.md): tp, pp, ep, dp,
    micro_batches, ... (SystemOptions) beside the run options; `overrides` apply to the chip."""
    from tilesim.studies.system import system_run  # noqa: PLC0415 (start-up time)
    names = {f.name for f in fields(SystemOptions)} - {"system"}
    layout = SystemOptions(system=system, **{k: v for k, v in options.items() if k in names})
    o = split_options(workload, {k: v for k, v in options.items() if k not in names}, "run_system")
    return system_run(o.workload, o.llm, o.compile, layout, tuple(overrides))

def compare(workload: str = DEFAULT_WORKLOAD, arch: str | ArchConfig = DEFAULT_ARCH, *,
            policies: Sequence[str] = ("none", "epilogue", "full"), overrides: Sequence[str] = (),
            **options: Any) -> CompareResult:
    """The workload under several fusion policies side by side, as `tilesim compare`; a decoder LLM's prefill
    (prompt_len or seq_len tokens) or one decode step (phase='decode', context=N)."""
    o = split_options(workload, {"fusion": policies[0], **options}, "compare")
    target = load_arch(arch, overrides)
    cfg = decoder(o.workload, o.llm)
    w = o.workload
    if cfg is not None:
        if o.llm.phase == "generate":
            raise OptionError("phase", "compare runs one graph: prefill or decode (one step at {context}), not "
                                       "generate")
        prompt = check_decoder(cfg, w, o.llm, target.array.dtype)
        w = replace(w, seq_len=prompt) if o.llm.run_phase == "prefill" else w
    graph = workload_graph(target, w, o.llm)
    return comparing.compare(graph, target, tuple(policies), o.compile)


def grid_items(grid: Mapping[str | tuple[str, ...], Sequence[Any]] | Sequence[str]) -> list[str]:
    """Grid axes as KEY=V1,V2,... texts: {'array.rows': [16, 32]} -> ['array.rows=16,32']; a tuple of keys is a
    tied axis ({('array.rows', 'array.cols'): [8, 16]}); a text value with commas is quoted ('gemm:8,8,8')."""
    if isinstance(grid, Mapping):
        return [f"{key if isinstance(key, str) else ','.join(key)}={','.join(map(_grid_value, values))}"
                for key, values in grid.items()]
    return list(grid)


def _grid_value(value: Any) -> str:
    """One grid value as text, quoted when it is a plain text holding commas."""
    text = str(value)
    return f'"{text}"' if isinstance(value, str) and "," in text and text[:1] not in "[{\"'" else text


def sweep_spec(workload: str, arch: str, overrides: Sequence[str], options: Options,
               axes: Sequence[tuple[str, Sequence[str]]] = ()) -> SweepSpec:
    """The SweepSpec of a sweep: base arch with overrides; the workload (each of a workload axis) and the LLM
    options checked once here (studies/sweep.py check_option_axes), not per point."""
    from tilesim.studies.sweep import SweepSpec, check_option_axes  # noqa: PLC0415 (start-up time)
    raw, source = raw_arch(arch)
    raw = apply_overrides(raw, list(overrides))
    spec = SweepSpec(raw_arch=raw, source=source, arch=arch, workload=options.workload, options=options.compile,
                     llm=options.llm)
    return check_option_axes(spec, list(axes))


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: its spec, grid axes and the points to run."""
    spec: SweepSpec
    axes: list[tuple[str, list[str]]]       # (label, values); a tied axis's label is its keys joined by commas
    points: list[dict[str, str]]


def plan_sweep(grid: Mapping[str, Sequence[Any]] | Sequence[str], workload: str = DEFAULT_WORKLOAD,
               arch: str = DEFAULT_ARCH, *, overrides: Sequence[str] = (), random: int | None = None, seed: int = 0,
               **options: Any) -> SweepPlan:
    """Check a sweep's grid and options and list its points (every point, or `random` of them)."""
    from tilesim.studies.sweep import (  # noqa: PLC0415 (start-up time)
        axis_labels,
        check_fields,
        grid_points,
        parse_grids,
        random_points,
    )
    items = grid_items(grid)
    axes = parse_grids(items)
    spec = sweep_spec(workload, arch, overrides, split_options(workload, options, "sweep"), axes)
    check_fields(spec.raw_arch, axes)
    points = random_points(items, random, seed) if random is not None else grid_points(items)
    return SweepPlan(spec, axis_labels(items), points)


def sweep(grid: Mapping[str, Sequence[Any]] | Sequence[str], workload: str = DEFAULT_WORKLOAD,
          arch: str = DEFAULT_ARCH, *, output: str | Path, overrides: Sequence[str] = (), jobs: int = 1,
          backend: str = "process", scheduler: Any = None, resume: bool = False, progress: bool = False,
          random: int | None = None, seed: int = 0, **options: Any) -> list[dict[str, str]]:
    """Run a grid of design points (dotted arch fields -> values) into the CSV `output`, as `tilesim sweep`;
    returns the rows (every cell text, in point order)."""
    from tilesim.studies.sweep import run_sweep  # noqa: PLC0415 (start-up time)
    plan = plan_sweep(grid, workload, arch, overrides=overrides, random=random, seed=seed, **options)
    return run_sweep(plan.points, plan.spec, output, jobs=jobs, backend=backend, scheduler=scheduler,
                     resume=resume, progress=progress)


def serve(workload: str = "llama2-7b", arch: str | ArchConfig = "h100", *, overrides: Sequence[str] = (),
          **options: Any) -> ServeResult:
    """Serve a request stream (trace=FILE, or rate=... to generate one) with an LLM scheduler, as `tilesim serve`;
    options: the fields of sim/studies/serve.py's TraceOptions, SchedulerOptions and PlacementOptions (system=,
    tp=, disaggregate=...), CompileOptions and dtypes."""
    from tilesim.studies import serve as serving  # noqa: PLC0415 (start-up time)
    w, c, trace, sched, place = serving.split_serve_options(workload, options)
    chip = load_arch(arch, overrides)
    return serving.serve(w, chip, c, trace, sched, place, place.system_config(chip, tuple(overrides)))


def serve_rates(workload: str = "llama2-7b", arch: str | ArchConfig = "h100", *, rates: str,
                overrides: Sequence[str] = (), **options: Any) -> RateSweep:
    """The generated stream at each rate ('1,2,4,8'), as `tilesim serve --rates`: a summary per rate and the knee
    (the highest rate at which slo_share of the requests meet slo_ttft and slo_tpot)."""
    from tilesim.studies import serve as serving  # noqa: PLC0415 (start-up time)
    w, c, trace, sched, place = serving.split_serve_options(workload, {"rates": rates, **options}, "serve_rates")
    chip = load_arch(arch, overrides)
    return serving.serve_rates(w, chip, c, trace, sched, serving.parse_rates(rates), sched.slo_share, place,
                               place.system_config(chip, tuple(overrides)))


def serve_grid(workload: str = "llama2-7b", arch: str = "h100", *, grid: Sequence[str],
               overrides: Sequence[str] = (), **options: Any) -> ServeGrid:
    """The stream (or, with rates='1,2,4', the rate sweep and its knee) at every point of a grid of scheduler,
    placement and arch settings (['max_batch=16,64', 'memory.hbm.bandwidth_gb_s=1500,3000']), as `tilesim serve
    --grid`."""
    from tilesim.studies.serve import split_serve_options  # noqa: PLC0415 (start-up time)
    from tilesim.studies.serve_sweep import serve_grid as serve_grid_points  # noqa: PLC0415
    w, c, trace, sched, place = split_serve_options(workload, options, "serve_grid")
    return serve_grid_points(w, arch, tuple(overrides), c, trace, sched, place, tuple(grid))


def __getattr__(name: str) -> Any:
    """RateSweep and ServeResult, from sim/studies/serve.py on first use."""
    if name in ("RateSweep", "ServeResult"):
        from tilesim.studies import serve as serving  # noqa: PLC0415 (start-up time)
        return getattr(serving, name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


__all__ = ["CompareResult", "RateSweep", "RunResult", "ServeResult", "compare", "load_arch", "load_workload", "run",
           "serve", "serve_grid", "serve_rates", "sweep"]
