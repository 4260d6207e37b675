"""One run from options: arch and workload loaded, lowered and simulated; decoder LLMs run by phase (studies/llm.py).

`tilesim run`, `tilesim compare`, the sweep's design points and the Python API (sim/studies/api.py) all run here.
"""
from __future__ import annotations

from dataclasses import replace

from tilesim.arch import load_arch
from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import arch_warning
from tilesim.arch.loader import dtype_warning
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions, Schedule, lower
from tilesim.core.simulate import commands_memo, kernel_evaluator
from tilesim.studies.llm import LLMResult, run_llm
from tilesim.studies.options import LLMOptions, OptionError, WorkloadOptions, not_an_llm
from tilesim.studies.schedule_store import CommandMemo, lowered
from tilesim.workloads import decoder_config, load_workload
from tilesim.workloads import llm as wl
from tilesim.workloads.sparsity import (
    apply_weight_sparsity,
    predictor_bytes,
    pruned_savings_bytes,
    with_predictor,
)

DecoderConfig = wl.DecoderConfig


def resolve_arch(arch: str | ArchConfig, overrides: tuple[str, ...] = ()) -> ArchConfig:
    """The ArchConfig of a preset name, arch YAML or SCALE-Sim .cfg with --set overrides (an ArchConfig as is)."""
    if isinstance(arch, ArchConfig):
        if overrides:
            raise OptionError("overrides", "apply them when loading the arch: tilesim.load_arch(name, overrides)")
        return arch
    return load_arch(arch, list(overrides))


def decoder(workload: WorkloadOptions, llm: LLMOptions) -> DecoderConfig | None:
    """The decoder LLM's config, None for other workloads (which take no LLM options)."""
    cfg = decoder_config(workload.workload)
    if cfg is None and llm.given:
        raise not_an_llm(workload.workload)
    return cfg


def check_decoder(cfg: DecoderConfig, workload: WorkloadOptions, llm: LLMOptions, array_dtype: str) -> int:
    """The LLM options checked against the model (positions, sparsity, data types); returns the prompt tokens."""
    prompt = llm.check_model(workload.seq_len, wl.DEFAULT_SEQ_LEN, cfg.max_positions, cfg.name)
    if workload.dims:             # ONNX-only options: refused, never ignored (as load_workload does for the rest)
        raise OptionError("dims", f"only ONNX models have symbolic dimensions; {cfg.name} is a decoder LLM")
    if workload.unknown_ops != "error":
        raise OptionError("unknown_ops", f"only ONNX models have op types to refuse or cost freely; {cfg.name} is a "
                                         "decoder LLM")
    if llm.expert_skew and not cfg.experts:
        raise OptionError("expert_skew", f"only for mixture-of-experts models; {cfg.name} has no experts")
    wl.resolve_dtypes(workload.dtypes, workload.graph_dtype(array_dtype) or array_dtype)
    return prompt


NO_LLM = LLMOptions()


def workload_graph(arch: ArchConfig, workload: WorkloadOptions, llm: LLMOptions = NO_LLM) -> Graph:
    """The workload's Graph in the arch's dtype (decoder LLMs: the prefill, or one decode step at `context`)."""
    step = {"phase": "decode", "context": llm.context} if llm.phase == "decode" else {}
    note = dtype_warning(arch, workload.graph_dtype(arch.array.dtype))
    if note:
        arch_warning(note)
    graph = load_workload(workload.workload, seq_len=workload.seq_len, batch=workload.batch,
                          dtype=workload.graph_dtype(arch.array.dtype), dims=dict(workload.dims),
                          dtypes=workload.dtypes, unknown_ops=workload.unknown_ops, **step)
    graph = apply_weight_sparsity(graph, workload.sparsity)
    check_graph_fits(graph, arch)
    return graph


def check_graph_fits(graph: Graph, arch: ArchConfig) -> None:
    """The graph's weights, inputs and outputs must fit the off-chip memory (and flash, which may hold weights):
    a lower bound on what a run keeps there, intermediates aside. OptionError naming the capacity otherwise."""
    tensors = graph.tensors.values()
    weights = sum(t.nbytes for t in tensors if t.is_param)
    io = sum(graph.tensors[n].nbytes for n in {*graph.inputs, *graph.outputs} if not graph.tensors[n].is_param)
    off, room = arch.offchip, arch.offchip.capacity_bytes + (arch.flash.capacity_bytes if arch.flash else 0)
    if weights + io > room:
        size = lambda n: f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"    # noqa: E731
        raise OptionError(f"memory.{off.name}.capacity_bytes", f"the workload's weights ({size(weights)}) and "
                          f"inputs and outputs ({size(io)}) need {size(weights + io)}, more than the {size(room)} "
                          "of off-chip memory; use a smaller {batch} or {seq_len}, or a bigger memory")


def schedule(graph: Graph, arch: ArchConfig, options: CompileOptions) -> Schedule:
    """The graph lowered for the arch: fused, mapped (searched by the options' objective) and scheduled; from the
    on-disk store when this graph, arch and options were lowered before (schedule_store.py)."""
    timing = options.resolved_timing(arch)
    return lowered(lambda: lower(graph, arch, options, kernel_evaluator(arch, timing, options.objective)),
                   graph, arch, options, commands=CommandMemo(arch, commands_memo(arch, timing)))


def run_decoder(cfg: DecoderConfig, arch: ArchConfig, workload: WorkloadOptions, llm: LLMOptions,
                options: CompileOptions, graphs: dict | None = None, timeline: bool = False) -> LLMResult:
    """A decoder LLM's phase (prefill, one decode step, or generation); `graphs` caches the graphs of each phase
    and size across calls (a sweep's design points share them); `timeline` keeps each step's tile times."""
    prompt = check_decoder(cfg, workload, llm, arch.array.dtype)
    types = wl.resolve_dtypes(workload.dtypes, workload.graph_dtype(arch.array.dtype) or arch.array.dtype)
    note = dtype_warning(arch, types.activation, "--activation-dtype" if workload.activation_dtype else "--dtype")
    if note:
        arch_warning(note)
    active = wl.sparse_mlp(replace(cfg, expert_skew=llm.expert_skew) if cfg.experts else cfg, llm.mlp_sparsity)
    cache: dict = {} if graphs is None else graphs

    def graph_for(kind: str, size: int) -> Graph:
        key = ("llm", workload.workload, workload.batch, llm.mlp_sparsity, llm.expert_skew, types, kind, size,
               workload.sparsity, llm.predictor_rank)
        if key not in cache:
            sizes = {"seq_len": size} if kind == "prefill" else {"context": size}
            graph = wl.decoder_graph(active, batch=workload.batch, phase=kind, dtypes=types, **sizes)
            # seed 003's predictor over all cfg.ffn neurons (workloads/sparsity.py)
            cache[key] = apply_weight_sparsity(with_predictor(graph, cfg.ffn, llm.predictor_rank), workload.sparsity)
        return cache[key]

    # pruned weights are stored compressed (--weight-sparsity): the decode graph holds every weight once
    # and a predictor's weights are stored besides the model's
    step = graph_for("decode", 1)
    saved = (pruned_savings_bytes(step) if workload.sparsity else 0) - predictor_bytes(step)
    return run_llm(graph_for, arch, options, llm.run_phase, workload.batch, prompt, llm.gen_tokens,
                   wl.weight_bytes(cfg, types.weight) - saved, lambda tokens: wl.kv_cache_bytes(cfg, tokens, types.kv),
                   wl.window_bends(cfg), lambda tokens: wl.expert_load(active, tokens, types.weight), timeline)
