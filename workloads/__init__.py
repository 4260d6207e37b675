"""Workloads: turn a `--workload` spec (built-in name, `gemm:M,N,K`, later a file) into a compiler.ir.Graph."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from arch.errors import InputError, allowed_list, did_you_mean
from compiler import Graph, GraphBuilder

from . import cnn, onnx_import, scalesim_topology, transformer

DEFAULT_DTYPE = "int8"
GEMM_FORM = "gemm:M,N,K"


@dataclass(frozen=True)
class Builtin:
    """A built-in workload: its builder, a one-line description, and whether it has a sequence length."""
    build: Callable[..., Graph]
    description: str
    has_seq_len: bool = False


BUILTINS: dict[str, Builtin] = {
    "resnet18": Builtin(cnn.resnet18, "ResNet-18 (torchvision), 224x224, 11.7 M params, 1.81 GMACs"),
    "resnet50": Builtin(cnn.resnet50, "ResNet-50 v1.5 (torchvision), 224x224, 25.6 M params, 4.09 GMACs"),
    "mobilenet_v2": Builtin(cnn.mobilenet_v2, "MobileNetV2 (torchvision), 224x224, 3.5 M params, 0.30 GMACs"),
    "bert-base": Builtin(transformer.bert_base, "BERT-base encoder, 12 layers, d=768, seq 128 by default",
                         has_seq_len=True),
}

# Readers by file suffix: path, batch, seq_len, dtype (None: the file's own types, else its default), dims -> Graph
# (SCALE-Sim topology .csv, .onnx; later workload YAML, HF config.json).
FILE_LOADERS: dict[str, Callable[..., Graph]] = {".csv": scalesim_topology.load_topology,
                                                 ".onnx": onnx_import.load_onnx}


def workload_names() -> list[str]:
    """Names of the built-in workloads (spec forms such as gemm:M,N,K are listed by describe_workloads)."""
    return sorted(BUILTINS)


def describe_workloads() -> dict[str, str]:
    """One line per built-in name and per parametric spec form, for `tilesim list workloads`."""
    out = {name: BUILTINS[name].description for name in workload_names()}
    out[GEMM_FORM] = "one MatMul of an (M, K) input by a (K, N) weight: M*N*K MACs"
    return out


def load_workload(spec: str, *, seq_len: int | None = None, batch: int = 1, dtype: str | None = None,
                  dims: dict[str, int] | None = None) -> Graph:
    """The Graph for `spec`; bad specs or sizes raise InputError naming the command-line flag.

    `dtype` None keeps a file's own data types (ONNX) and is DEFAULT_DTYPE elsewhere; `dims` binds the symbolic
    dimensions of an ONNX model (--dim NAME=VALUE)."""
    _positive("--batch", batch)
    if seq_len is not None:
        _positive("--seq-len", seq_len)
    for name, value in (dims or {}).items():
        _positive(f"--dim {name}", value)
    spec = spec.strip()
    is_gemm = spec.lower().startswith("gemm:")
    if not is_gemm and ("/" in spec or "." in spec):   # names never contain these: treat as a file
        return _load_file(spec, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims)
    if dims:
        raise InputError(f"--dim: only ONNX models have symbolic dimensions; '{spec}' is not an .onnx file")
    dtype = dtype or DEFAULT_DTYPE
    if is_gemm:
        _no_seq_len("gemm", seq_len)
        return gemm(*_parse_gemm(spec), batch=batch, dtype=dtype)
    key = _canonical(spec)
    if key is None:
        raise InputError(f"--workload: unknown workload '{spec}'{did_you_mean(spec, BUILTINS)}; "
                         f"allowed: {allowed_list(list(BUILTINS) + [GEMM_FORM])}")
    item = BUILTINS[key]
    if not item.has_seq_len:
        _no_seq_len(key, seq_len)
    extra = {"seq_len": seq_len} if seq_len is not None else {}   # else the builder's default
    return item.build(batch, dtype=dtype, **extra)


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
        raise InputError(f"--workload: bad GEMM spec '{spec}'; expected {GEMM_FORM} with positive integers, "
                         "e.g. gemm:1,4096,4096")
    return dims


def _canonical(name: str) -> str | None:
    """The built-in name matching `name`, ignoring case and '-' vs '_'; None if none."""
    norm = name.lower().replace("_", "-")
    return next((n for n in BUILTINS if n.replace("_", "-") == norm), None)


def _load_file(path: str, *, batch: int, seq_len: int | None, dtype: str | None,
               dims: dict[str, int] | None) -> Graph:
    """Dispatch a workload file on its suffix; unsupported suffixes are an InputError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_LOADERS:
        supported = allowed_list(FILE_LOADERS) if FILE_LOADERS else "none yet"
        raise InputError(f"--workload: cannot read '{path}': unsupported file type '{suffix or '(none)'}' "
                         f"(supported: {supported}); built-in names: {allowed_list(BUILTINS)}")
    return FILE_LOADERS[suffix](path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims)


def _positive(flag: str, value) -> None:
    """InputError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{flag}: must be a positive integer, got {value!r}")


def _no_seq_len(name: str, seq_len: int | None) -> None:
    """InputError when --seq-len is given to a workload without a sequence."""
    if seq_len is not None:
        raise InputError(f"--seq-len: workload '{name}' has no sequence length")


__all__ = ["load_workload", "workload_names", "describe_workloads", "gemm", "BUILTINS", "FILE_LOADERS"]
