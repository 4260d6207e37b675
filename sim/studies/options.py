"""The options of a run, declared once: frozen dataclasses whose fields carry their help text (field metadata).

The command line is generated from these fields (sim/cli/args.py: flags, help, choices from Literal types, defaults)
and the Python API takes them as keyword arguments (tilesim.run, tilesim.compare, tilesim.sweep). Bad values raise
OptionError, which names the option's FIELD ("seq_len: ..."); the CLI renders the same error with its flags
("--seq-len: ...").
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from tilesim.arch.errors import InputError
from tilesim.arch.loader import load_yaml_text, read_text
from tilesim.compiler.schedule import CompileOptions, load_pinned
from tilesim.compiler.sparsity import FORMATS as SPARSE_FORMATS
from tilesim.compiler.sparsity import SparseFormat, WeightSparsity, parse_weight_sparsity

DEFAULT_WORKLOAD = "resnet50"
DEFAULT_ARCH = "tpu-v1"
Phase = Literal["prefill", "decode", "generate"]
Format = Literal["table", "json", "csv"]
Backend = Literal["process", "serial", "dask"]
UnknownOps = Literal["error", "free"]
PHASES: tuple[str, ...] = Phase.__args__
FORMATS: tuple[str, ...] = Format.__args__
BACKENDS: tuple[str, ...] = Backend.__args__


def option(help: str, *, flag: str | None = None, short: str | None = None, metavar: str | None = None,
           repeat: bool = False, switch: bool = False) -> dict[str, Any]:
    """Field metadata of an option: its help text; `flag` when the flag is not --<field-name>, a `short` alias,
    `metavar`, `repeat` (a flag given several times makes a tuple), `switch` (a flag without a value)."""
    return {"help": help, "flag": flag, "short": short, "metavar": metavar, "repeat": repeat, "switch": switch}


class OptionError(InputError):
    """A bad option value, named by its field; `{field}` placeholders in the message name other options.
    str() names fields (the Python API); render(names) names them as the caller does (the CLI: flags)."""

    def __init__(self, names: str | tuple[str, ...], message: str, detail: str = ""):
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.message, self.detail = message, detail
        super().__init__(self.render({}))

    def __reduce__(self):
        """Pickled with its parts (errors may cross process boundaries in a sweep)."""
        return OptionError, (self.names, self.message, self.detail)

    def render(self, names: Mapping[str, str]) -> str:
        """The message with each option named through `names` (field -> name; missing ones keep the field)."""
        head = ", ".join(names.get(n, n) for n in self.names) + (f" {self.detail}" if self.detail else "")
        body = re.sub(r"\{(\w+)\}", lambda m: names.get(m[1], m[1]) if m[1] in OPTION_FIELDS else m[0],
                      self.message)
        return f"{head}: {body}".replace("\r", "\\r").replace("\n", "\\n")


def at_least(name: str, value: int | float | None, low: int) -> None:
    """OptionError unless value is None or >= low."""
    if value is not None and value < low:
        raise OptionError(name, f"must be >= {low}, got {value}")


@dataclass(frozen=True)
class ArchOptions:
    """Which arch: a preset name, an arch YAML or a SCALE-Sim .cfg, and dotted-path overrides."""
    arch: str = field(default=DEFAULT_ARCH, metadata=option(
        f"preset name or arch YAML (default {DEFAULT_ARCH}; see `tilesim list archs`)", short="-a"))
    overrides: tuple[str, ...] = field(default=(), metadata=option(
        "override an arch field by dotted path, e.g. array.rows=64 or memory.dram.bandwidth_gb_s=50",
        flag="--set", metavar="K=V", repeat=True))

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))


@dataclass(frozen=True)
class WorkloadOptions:
    """Which workload, at what size and in which data types."""
    workload: str = field(default=DEFAULT_WORKLOAD, metadata=option(
        f"built-in name, gemm:M,N,K, a SCALE-Sim topology .csv or an .onnx model (default {DEFAULT_WORKLOAD}; "
        "see `tilesim list workloads`)", short="-w"))
    batch: int = field(default=1, metadata=option("batch size (default 1)"))
    seq_len: int | None = field(default=None, metadata=option(
        "sequence length of encoders and of prefill (default: the model's)"))
    weight_dtype: str | None = field(default=None, metadata=option(
        "decoder LLMs: weights' data type (default: --dtype)"))
    activation_dtype: str | None = field(default=None, metadata=option(
        "decoder LLMs: activations' data type (default: --dtype)"))
    kv_dtype: str | None = field(default=None, metadata=option(
        "decoder LLMs: the KV cache's data type (default: --dtype)"))
    dtype: str | None = field(default=None, metadata=option(
        "data type of the workload (default: the array's dtype); 'model' keeps an ONNX model's own types"))
    dims: tuple[tuple[str, int], ...] = field(default=(), metadata=option(
        "size of a symbolic dimension of an ONNX model's inputs, e.g. --dim batch=8 (repeatable)",
        flag="--dim", metavar="NAME=VALUE", repeat=True))
    weight_sparsity: str | None = field(default=None, metadata=option(
        "prune every weight matrix: N:M structured (e.g. 2:4) or a share of zero weights (e.g. 0.7: unstructured); "
        "stored compressed with metadata, zeros skipped where array.sparsity allows (default: dense, or an ONNX "
        "model's own zeros)", metavar="N:M|SHARE"))
    weight_format: SparseFormat = field(default="bitmask", metadata=option(
        "storage of unstructured sparse weights (default bitmask)"))
    unknown_ops: UnknownOps = field(default="error", metadata=option(
        "ONNX models: an op tilesim does not know is an error (default), or 'free': a warning naming it, costed as "
        "data movement"))

    def __post_init__(self) -> None:
        at_least("batch", self.batch, 1)
        at_least("seq_len", self.seq_len, 1)          # 0 is a size, not "the model's default"
        if self.unknown_ops not in UnknownOps.__args__:
            raise OptionError("unknown_ops", f"got '{self.unknown_ops}', allowed: error, free")
        dims = tuple(self.dims.items()) if isinstance(self.dims, Mapping) else tuple(map(tuple, self.dims))
        for name, size in dims:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise OptionError("dims", f"the value must be a positive integer, got '{size}'", detail=name)
        object.__setattr__(self, "dims", dims)
        self.sparsity    # noqa: B018  # checks weight_sparsity and weight_format now
        if self.weight_sparsity is None and self.weight_format != "bitmask" and not self.onnx:
            raise OptionError("weight_format", "only with {weight_sparsity} (or an .onnx model's own zeros): the "
                                               "weights are dense otherwise")
        if self.dtype == "model" and Path(self.workload).suffix.lower() != ".onnx":
            raise OptionError("dtype", "only .onnx workloads carry their own data types; give a dtype (e.g. int8, "
                                       "fp16) or leave {dtype} out for the array's", detail="model")

    @property
    def onnx(self) -> bool:
        """Whether the workload is an ONNX model file."""
        return Path(self.workload).suffix.lower() == ".onnx"

    @property
    def sparsity(self) -> WeightSparsity | None:
        """The weight sparsity asked for (None: dense, or the model's own)."""
        if self.weight_sparsity is None:
            if self.weight_format not in SPARSE_FORMATS:
                raise OptionError("weight_format",
                                  f"got '{self.weight_format}', allowed: {', '.join(SPARSE_FORMATS)}")
            return None
        try:
            return parse_weight_sparsity(str(self.weight_sparsity), self.weight_format)
        except InputError as e:
            name, _, message = str(e).partition(": ")
            raise OptionError(name, message) from None

    @property
    def dtypes(self) -> tuple[str | None, str | None, str | None] | None:
        """(weight, activation, kv) data types for decoder LLMs, None when none was given."""
        chosen = (self.weight_dtype, self.activation_dtype, self.kv_dtype)
        return chosen if any(chosen) else None

    def graph_dtype(self, array_dtype: str) -> str | None:
        """The workload's dtype: `dtype`, else the array's; 'model' (None) keeps an ONNX model's own types."""
        return None if self.dtype == "model" else (self.dtype or array_dtype)


@dataclass(frozen=True)
class LLMOptions:
    """Decoder LLMs: which phase, at what context, and how many tokens."""
    phase: Phase | None = field(default=None, metadata=option(
        "decoder LLMs: prefill (default), decode (one step at --context) or generate"))
    context: int | None = field(default=None, metadata=option("decode: tokens already in the KV cache"))
    prompt_len: int | None = field(default=None, metadata=option(
        "prefill/generate: prompt tokens (default --seq-len, or 128)"))
    gen_tokens: int = field(default=128, metadata=option("generate: tokens to generate (default 128)"))
    mlp_sparsity: float = field(default=0.0, metadata=option(
        "decoder LLMs: share of MLP neurons skipped per token (compute and weight traffic)"))
    predictor_rank: int = field(default=0, metadata=option(
        "decoder LLMs: a low-rank predictor of rank R picks the active MLP neurons each token (its d*R + R*ffn MACs "
        "and weights are simulated; default 0: none)", metavar="R"))
    expert_skew: float = field(default=0.0, metadata=option(
        "MoE LLMs: routing load imbalance s, expert e picked in proportion to (e + 1)^-s (0: uniform)"))

    def __post_init__(self) -> None:
        if self.phase is not None and self.phase not in PHASES:
            raise OptionError("phase", f"got '{self.phase}', allowed: {', '.join(PHASES)}")

    @property
    def given(self) -> bool:
        """Whether any option that only decoder LLMs take was given."""
        return self.phase is not None or self.context is not None or self.prompt_len is not None

    @property
    def run_phase(self) -> str:
        """The phase to run (prefill unless another was asked for)."""
        return self.phase or "prefill"

    def prompt_tokens(self, seq_len: int | None, default: int) -> int:
        """Tokens in the KV cache when decoding starts (decode: context), or the prompt's (prompt_len, else
        seq_len, else the model family's default)."""
        if self.run_phase == "decode":
            return self.context or 0
        return self.prompt_len or seq_len or default

    def check_model(self, seq_len: int | None, default: int, max_positions: int, model: str) -> int:
        """Check the options for a decoder LLM with `max_positions` positions; returns prompt_tokens."""
        if self.phase == "decode" and self.context is None:
            raise OptionError("context", "{phase} decode needs the number of tokens already in the KV cache")
        if self.context is not None and self.phase != "decode":
            raise OptionError("context", "only with {phase} decode (generate grows it from {prompt_len})")
        if self.phase == "decode" and (self.prompt_len is not None or seq_len is not None):
            raise OptionError("prompt_len" if self.prompt_len is not None else "seq_len",
                              "not for {phase} decode: one step reads the {context} tokens already cached")
        if self.prompt_len is not None and seq_len is not None:
            raise OptionError(("seq_len", "prompt_len"), "both give the prompt's length; give one")
        at_least("context", self.context, 0)
        at_least("prompt_len", self.prompt_len, 1)
        at_least("gen_tokens", self.gen_tokens, 1)
        prompt = self.prompt_tokens(seq_len, default)
        if self.run_phase == "generate" and prompt + self.gen_tokens > max_positions:
            raise OptionError("gen_tokens", f"{model} has {max_positions} positions; a {prompt}-token prompt "
                                            f"and {self.gen_tokens} generated tokens need {prompt + self.gen_tokens}")
        at_least("predictor_rank", self.predictor_rank, 0)
        if not 0 <= self.mlp_sparsity < 1:
            raise OptionError("mlp_sparsity", f"must be >= 0 and < 1, got {self.mlp_sparsity:g}")
        if not self.expert_skew >= 0:
            raise OptionError("expert_skew", f"must be >= 0 (0: uniform routing), got {self.expert_skew:g}")
        return prompt


def not_an_llm(workload: str) -> OptionError:
    """The error for LLM options given with a workload that is not a decoder LLM."""
    return OptionError(("phase", "context", "prompt_len"), f"only for decoder LLMs (gpt2, llama2-7b, ... or an "
                                                           f"HF config.json), not '{workload}'")


@dataclass(frozen=True)
class OutputOptions:
    """How `tilesim run` reports: format, file, kernels shown, trace, schedule and plots."""
    format: Format = field(default="table", metadata=option("", short="-f"))
    output: str | None = field(default=None, metadata=option(
        "write the report to this file instead of stdout", flag="-o"))
    top: int | None = field(default=None, metadata=option("table format: show only the N longest kernels"))
    trace: str | None = field(default=None, metadata=option(
        "write a Chrome/Perfetto trace (one track per engine, a slice per tile)", metavar="TRACE.json"))
    show_schedule: bool = field(default=False, metadata=option(
        "table format: also list each kernel's mapping, traffic per operand and why it won", switch=True))
    plot: tuple[str, ...] = field(default=(), metadata=option(
        "roofline.png, energy.png or timeline.png (engine utilisation over time); the kind is read from the file "
        "name (repeatable; tilesim[plot])", metavar="FILE", repeat=True))

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise OptionError("format", f"got '{self.format}', allowed: {', '.join(FORMATS)}")
        at_least("top", self.top, 1)
        if self.top is not None and self.format != "table":
            raise OptionError("top", "only with {format} table (JSON and CSV list every kernel)")
        if self.show_schedule and self.format != "table":
            raise OptionError("show_schedule", "only with {format} table (JSON and CSV carry each kernel's "
                                               "mapping)")
        object.__setattr__(self, "plot", tuple(self.plot))


@dataclass(frozen=True)
class SweepOptions:
    """How `tilesim sweep` runs: the grid, which points, where and how they run, and what it writes."""
    grid: tuple[str, ...] = field(default=(), metadata=option(
        "an arch field by dotted path or a workload option and its values, e.g. array.rows=16,32,64, "
        "workload=resnet50,mobilenet_v2 or batch=1,8; tied keys vary together: array.rows,array.cols=8,16 "
        "(repeatable: the cartesian product is run)",
        metavar="K=V1,V2,...", repeat=True))
    random: int | None = field(default=None, metadata=option(
        "run K points drawn from the grid instead of all", metavar="K"))
    seed: int = field(default=0, metadata=option("seed of --random (default 0)"))
    jobs: int = field(default=1, metadata=option("worker processes", short="-j"))
    backend: Backend = field(default="process", metadata=option(
        "process: a local process pool (default); serial; dask: a Dask cluster (tilesim[dask])"))
    scheduler: str | None = field(default=None, metadata=option(
        "with --backend dask: e.g. tcp://host:8786 (default: a LocalCluster of --jobs workers)", metavar="ADDR"))
    resume: bool = field(default=False, metadata=option(
        "keep the points already in -o (or its .partial file)", switch=True))
    output: str | None = field(default=None, metadata=option("the results CSV (required)", flag="-o"))
    plot: tuple[str, ...] = field(default=(), metadata=option(
        "pareto.png (the --pareto-metrics front in 2-D projections) or heatmap.png (--metric over the first two "
        "grid axes); "
        "the kind is read from the file name (tilesim[plot])", metavar="FILE", repeat=True))
    metric: str | None = field(default=None, metadata=option(
        "the heatmap's metric (default: the --objective's: latency_s, energy_pj or edp)"))
    progress: bool = field(default=True, metadata=option("no progress bar on stderr", flag="--no-progress",
                                                           switch=True))
    pareto_metrics: str | None = field(default=None, metadata=option(
        "the metrics the Pareto front is non-dominated over, e.g. latency,energy (default latency,energy,area; any "
        "result column)", metavar="M1,M2,..."))
    area_budget_mm2: float | None = field(default=None, metadata=option(
        "the summary adds the lowest-energy point of at most this much silicon", metavar="MM2"))


PipelineSchedule = Literal["gpipe", "1f1b", "interleaved"]
CollectiveAlgorithm = Literal["ring", "tree"]


@dataclass(frozen=True)
class SystemOptions:
    """Decoder LLMs on a system of chips (docs/scale-out.md): which system, and the parallel layout."""
    system: str | None = field(default=None, metadata=option(
        "a system preset (see `tilesim list systems`) or a system YAML: run the decoder LLM on its chips "
        "(replaces --arch; --set applies to the chip)", metavar="FILE|PRESET"))
    tp: int = field(default=1, metadata=option("tensor-parallel chips (Megatron splits; default 1)"))
    pp: int = field(default=1, metadata=option("pipeline stages (default 1)"))
    ep: int = field(default=1, metadata=option("expert-parallel chips of an MoE model (default 1)"))
    dp: int = field(default=1, metadata=option("data-parallel replicas; --batch is per replica (default 1)"))
    micro_batches: int = field(default=1, metadata=option("pipeline micro-batches the batch is split into"))
    virtual_stages: int = field(default=1, metadata=option(
        "layer chunks per pipeline chip (the interleaved schedule; default 1)"))
    pipeline_schedule: PipelineSchedule = field(default="1f1b", metadata=option(
        "gpipe, 1f1b (default) or interleaved (with --virtual-stages >= 2)"))
    sequence_parallel: bool = field(default=False, metadata=option(
        "tensor-parallel blocks end in a reduce-scatter and an all-gather instead of an all-reduce", switch=True))
    collective_algorithm: CollectiveAlgorithm = field(default="ring", metadata=option(
        "all-reduce algorithm: ring (default) or tree"))
    overlap_comm: bool = field(default=False, metadata=option(
        "hide sequence-parallel reduce-scatters and all-gathers behind the adjacent tensor-parallel GEMMs (Megatron "
        "--tp-comm-overlap; plain all-reduces overlap nothing; docs/scale-out.md)", switch=True))

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "ep", "dp", "micro_batches", "virtual_stages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(name, f"must be an integer >= 1, got {value!r}")
        if self.pipeline_schedule not in PipelineSchedule.__args__:
            raise OptionError("pipeline_schedule", f"got '{self.pipeline_schedule}', allowed: gpipe, 1f1b, "
                                                   "interleaved")
        if self.collective_algorithm not in CollectiveAlgorithm.__args__:
            raise OptionError("collective_algorithm", f"got '{self.collective_algorithm}', allowed: ring, tree")
        if (self.pipeline_schedule == "interleaved") != (self.virtual_stages > 1):
            raise OptionError(("pipeline_schedule", "virtual_stages"), "the interleaved schedule and {virtual_stages}"
                                                                       " >= 2 go together")

    @property
    def chips(self) -> int:
        """Chips one layout uses: tp x pp x ep x dp."""
        return self.tp * self.pp * self.ep * self.dp

    @property
    def given(self) -> bool:
        """Whether a system run was asked for (a system, or any parallelism beyond one chip)."""
        return self.system is not None or self != SystemOptions()


def read_pinned(path: str | Path) -> tuple[tuple[str, Any], ...]:
    """Pinned mappings from a YAML file {kernel: {dataflow, tile_m, tile_n, tile_k, order}}."""
    p = Path(path)
    if not p.is_file():
        raise OptionError("pinned", f"no such file '{path}'")
    return load_pinned(load_yaml_text(read_text(p, "pinned"), str(p)), str(p))


OPTION_CLASSES = (ArchOptions, WorkloadOptions, LLMOptions, CompileOptions, OutputOptions, SweepOptions,
                  SystemOptions)
OPTION_FIELDS = frozenset(f.name for cls in OPTION_CLASSES for f in fields(cls))
