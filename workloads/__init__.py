"""Workloads: turn a `--workload` spec (built-in name, `gemm:M,N,K`, later a file) into a compiler.ir.Graph."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tilesim.arch.errors import InputError, allowed_list, did_you_mean, field_error
from tilesim.compiler import Graph, GraphBuilder
from tilesim.compiler.memo import SizedMemo
from tilesim.workloads import cnn, llm, scalesim_topology, transformer

DEFAULT_DTYPE = llm.DEFAULT_DTYPE
GEMM_FORM = "gemm:M,N,K"
MAX_KERNELS = scalesim_topology.MAX_KERNELS     # operators per workload: bounds a run's memory (peak_memory.py)


@dataclass(frozen=True)
class Builtin:
    """A built-in workload: its builder, a one-line description, whether it has a sequence length, and for decoder
    LLMs their config (they take --phase, --context and separate weight/activation/KV dtypes)."""
    build: Callable[..., Graph]
    description: str
    has_seq_len: bool = False
    decoder: llm.DecoderConfig | None = None


def _decoder_builtin(cfg: llm.DecoderConfig, description: str) -> Builtin:
    """A decoder LLM built-in; its `build(batch, dtype=, seq_len=)` gives the prefill graph."""
    def build(batch: int = 1, dtype: str = DEFAULT_DTYPE, seq_len: int = llm.DEFAULT_SEQ_LEN) -> Graph:
        return llm.prefill_graph(cfg, batch, seq_len, dtype)
    return Builtin(build, description, has_seq_len=True, decoder=cfg)


BUILTINS: dict[str, Builtin] = {
    "resnet18": Builtin(cnn.resnet18, "ResNet-18 (torchvision), 224x224, 11.7 M params, 1.81 GMACs"),
    "resnet50": Builtin(cnn.resnet50, "ResNet-50 v1.5 (torchvision), 224x224, 25.6 M params, 4.09 GMACs"),
    "mobilenet_v2": Builtin(cnn.mobilenet_v2, "MobileNetV2 (torchvision), 224x224, 3.5 M params, 0.30 GMACs"),
    "alexnet": Builtin(cnn.alexnet, "AlexNet (torchvision), 224x224, 61.1 M params, 0.71 GMACs (0.66 G in convs)"),
    "vgg16": Builtin(cnn.vgg16, "VGG-16 (torchvision), 224x224, 138.4 M params, 15.47 GMACs (15.35 G in convs)"),
    "bert-base": Builtin(transformer.bert_base, "BERT-base encoder, 12 layers, d=768, seq 128 by default",
                         has_seq_len=True),
    "vit-b16": Builtin(transformer.vit_b16, "ViT-B/16 classifier, 224x224 (197 tokens), 86.6 M params, 17.6 GMACs"),
    "attention": Builtin(transformer.attention, "attention alone, softmax(QK^T/sqrt(d))V, 32 heads x d=128, "
                                                "seq 2048 by default (fused vs unfused)", has_seq_len=True),
    "gpt2": _decoder_builtin(llm.GPT2, "GPT-2 small decoder, 12 layers, d=768, 124 M params; --phase prefill|decode"),
    "llama2-7b": _decoder_builtin(llm.LLAMA2_7B, "Llama-2-7B decoder, 32 layers, d=4096, MHA 32 heads, SwiGLU, "
                                                 "6.74 B params; --phase prefill|decode"),
    "llama3-8b": _decoder_builtin(llm.LLAMA3_8B, "Llama-3-8B decoder, 32 layers, d=4096, GQA 32/8 heads, SwiGLU, "
                                                 "8.03 B params; --phase prefill|decode"),
    "mistral-7b": _decoder_builtin(llm.MISTRAL_7B, "Mistral-7B decoder, 32 layers, d=4096, GQA 32/8 heads, SwiGLU, "
                                                   "7.24 B params; --phase prefill|decode"),
    "gemma-2b": _decoder_builtin(llm.GEMMA_2B, "Gemma-2B decoder, 18 layers, d=2048, MQA 8/1 heads, GeGLU, tied, "
                                               "2.51 B params; --phase prefill|decode"),
}
BUILTINS |= {name: _decoder_builtin(llm.hf_builtin(name), f"{text}, {total / 1e9:.3g} B params; --phase prefill|decode")
             for name, (text, total) in llm.HF_BUILTINS.items()}

# Readers by file suffix: path, batch, seq_len, dtype (None: the file's own types, else its default), dims -> Graph
# (SCALE-Sim topology .csv, .onnx, an HF config.json; later workload YAML). Loaders of decoder LLMs also take
# phase, context and dtypes (DECODER_SUFFIXES).
def _load_onnx(*args: object, **kwargs: object) -> Graph:
    """workloads.onnx.load_onnx, its package loaded at the first .onnx file (start-up time of other runs)."""
    from tilesim.workloads.onnx import load_onnx  # noqa: PLC0415
    return load_onnx(*args, **kwargs)


FILE_LOADERS: dict[str, Callable[..., Graph]] = {".csv": scalesim_topology.load_topology,
                                                 ".onnx": _load_onnx,
                                                 ".json": llm.load_hf_config}
DECODER_SUFFIXES = {".json"}


def workload_names() -> list[str]:
    """Names of the built-in workloads (spec forms such as gemm:M,N,K are listed by describe_workloads)."""
    return sorted(BUILTINS)


def describe_workloads() -> dict[str, str]:
    """One line per built-in name and per parametric spec form, for `tilesim list workloads`."""
    out = {name: BUILTINS[name].description for name in workload_names()}
    out[GEMM_FORM] = "one MatMul of an (M, K) input by a (K, N) weight: M*N*K MACs"
    return out


def load_workload(spec: str, *, seq_len: int | None = None, batch: int = 1, dtype: str | None = None,
                  dims: dict[str, int] | None = None, phase: str | None = None, context: int | None = None,
                  dtypes: tuple | None = None, unknown_ops: str = "error") -> Graph:
    """The Graph for `spec`; bad specs or sizes raise InputError naming the command-line flag.

    `dtype` None keeps a file's own data types (ONNX) and is DEFAULT_DTYPE elsewhere; `dims` binds the symbolic
    dimensions of an ONNX model (--dim NAME=VALUE). Decoder LLMs (built-ins and HF config.json files) also take
    `phase` ("prefill", the default, or "decode"), `context` (decode: tokens already in the KV cache) and
    `dtypes` = (weight, activation, kv), whose None entries take `dtype`. `unknown_ops` ("error" or "free") is how
    an ONNX model's op types without a handler are treated (workloads/onnx/load.py)."""
    _positive("--batch", batch)
    if seq_len is not None:
        _positive("--seq-len", seq_len)
    if context is not None:
        _positive("--context", context)
    for name, value in (dims or {}).items():
        _positive(f"--dim {name}", value)
    if dtypes is not None and all(d is None for d in dtypes):
        dtypes = None
    spec = spec.strip()
    is_gemm = spec.lower().startswith("gemm:")
    if not is_gemm and ("/" in spec or "." in spec) and _canonical(spec) is None:   # not a name: a file
        return _bounded(_load_file(spec, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims, phase=phase,
                                   context=context, dtypes=dtypes, unknown_ops=unknown_ops), spec)
    if unknown_ops != "error":
        raise field_error("unknown_ops", f"only ONNX models have op types to refuse or cost freely; '{spec}' is not "
                         "an .onnx file")
    if dims:
        raise field_error("dims", f"only ONNX models have symbolic dimensions; '{spec}' is not an .onnx file")
    dtype = dtype or DEFAULT_DTYPE
    if is_gemm:
        _no_seq_len("gemm", seq_len)
        _no_decoder_args("gemm", phase, context, dtypes)
        sizes = _parse_gemm(spec)
        return _remembered(("gemm", sizes, batch, dtype), lambda: gemm(*sizes, batch=batch, dtype=dtype))
    key = _canonical(spec)
    if key is None:
        raise field_error("workload", f"unknown workload '{spec}'{did_you_mean(spec, BUILTINS)}; "
                         f"allowed: {allowed_list([*list(BUILTINS), GEMM_FORM])}")
    item = BUILTINS[key]
    if item.decoder is not None:
        resolved = llm.resolve_dtypes(dtypes, dtype)
        return _remembered((key, batch, phase, seq_len, context, resolved), lambda: llm.decoder_graph(
            item.decoder, batch=batch, phase=phase, seq_len=seq_len, context=context, dtypes=resolved))
    _no_decoder_args(key, phase, context, dtypes)
    if not item.has_seq_len:
        _no_seq_len(key, seq_len)
    extra = {"seq_len": seq_len} if seq_len is not None else {}   # else the builder's default
    return _remembered((key, batch, dtype, seq_len), lambda: item.build(batch, dtype=dtype, **extra))


BUILT_KEPT = 8      # built-in graphs remembered (a graph is not changed once made: compiler/fusion.py group_ops)
_BUILT: SizedMemo[tuple, Graph] = SizedMemo(lambda g: 1)     # least recently used first, each counted once
_BUILT_LOCK = threading.Lock()


def _remembered(key: tuple, build: Callable[[], Graph]) -> Graph:
    """The graph a built-in workload's arguments `key` make, built once and kept among the BUILT_KEPT most recently
    asked for: a process that runs the same workload again (a notebook, a sweep, a benchmark of warm runs) then also
    finds its fusion groupings and loop nests (kept per graph) made."""
    with _BUILT_LOCK:                 # a Dask worker may run points in threads
        graph = _BUILT.get(key)
    if graph is None:
        graph = build()
        with _BUILT_LOCK:
            _BUILT.put(key, graph)
            _BUILT.trim(BUILT_KEPT)
    return graph


def _bounded(graph: Graph, spec: str) -> Graph:
    """The graph, or InputError when it has more ops than a run may have (each op becomes a kernel)."""
    if len(graph.ops) > MAX_KERNELS:
        raise field_error("workload", f"'{spec}' has {len(graph.ops):,} operators, more than the {MAX_KERNELS:,} "
                                      "kernels a run may have")
    return graph


def gemm(m: int, n: int, k: int, *, batch: int = 1, dtype: str = DEFAULT_DTYPE) -> Graph:
    """One MatMul: input A (M, K) (or (batch, M, K)) times weight B (K, N)."""
    b = GraphBuilder(f"gemm_{m}x{n}x{k}", dtype)
    a = b.input("A", ((batch,) if batch > 1 else ()) + (m, k))
    return b.build(b.add("MatMul", [a, b.param("B", (k, n))], name="gemm"))


def _parse_gemm(spec: str) -> tuple[int, int, int]:
    """M, N, K from 'gemm:M,N,K' (positive integers)."""
    parts = spec.split(":", 1)[1].split(",")
    try:
        dims = tuple(int(p.strip()) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise field_error("workload", f"bad GEMM spec '{spec}'; expected {GEMM_FORM} with positive integers, "
                         "e.g. gemm:1,4096,4096")
    return dims


def decoder_config(spec: str) -> llm.DecoderConfig | None:
    """The decoder behind a workload spec (a built-in LLM or an HF config.json), or None for other workloads."""
    spec = spec.strip()
    if spec.lower().endswith(".json"):
        return llm.read_hf_config(spec)
    key = _canonical(spec)
    return BUILTINS[key].decoder if key else None


def _canonical(name: str) -> str | None:
    """The built-in name matching `name`, ignoring case and '-' vs '_'; None if none."""
    norm = name.lower().replace("_", "-")
    return next((n for n in BUILTINS if n.replace("_", "-") == norm), None)


def _load_file(path: str, *, batch: int, seq_len: int | None, dtype: str | None,
               dims: dict[str, int] | None, phase: str | None = None, context: int | None = None,
               dtypes: tuple | None = None, unknown_ops: str = "error") -> Graph:
    """Dispatch a workload file on its suffix; unsupported suffixes are an InputError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_LOADERS:
        supported = allowed_list(FILE_LOADERS) if FILE_LOADERS else "none yet"
        raise field_error("workload", f"cannot read '{path}': unsupported file type '{suffix or '(none)'}' "
                         f"(supported: {supported}); built-in names: {allowed_list(BUILTINS)}")
    if suffix in DECODER_SUFFIXES:
        return FILE_LOADERS[suffix](path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims, phase=phase,
                                    context=context, dtypes=dtypes)
    _no_decoder_args(Path(path).name, phase, context, dtypes)
    if suffix == ".onnx":
        return FILE_LOADERS[suffix](path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims,
                                    unknown_ops=unknown_ops)
    return FILE_LOADERS[suffix](path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims)


def _positive(flag: str, value) -> None:
    """InputError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{flag}: must be a positive integer, got {value!r}")


def _no_decoder_args(name: str, phase: str | None, context: int | None, dtypes: tuple | None) -> None:
    """InputError when decoder-only options (--phase, --context, separate dtypes) reach another workload."""
    for flag, value in (("--phase", phase), ("--context", context)):
        if value is not None:
            raise InputError(f"{flag}: workload '{name}' is not a decoder LLM (phases and a KV cache apply to "
                             f"{allowed_list(n for n, b in BUILTINS.items() if b.decoder)} and HF config.json files)")
    if dtypes is not None:
        raise InputError(f"workload '{name}' is not a decoder LLM: separate weight, activation and KV dtypes apply "
                         "to decoders only; use --dtype")


def _no_seq_len(name: str, seq_len: int | None) -> None:
    """InputError when --seq-len is given to a workload without a sequence."""
    if seq_len is not None:
        raise field_error("seq_len", f"workload '{name}' has no sequence length")


__all__ = ["BUILTINS", "FILE_LOADERS", "describe_workloads", "gemm", "load_workload", "workload_names"]
