"""Sparse weights: how a pruned weight matrix is stored (compressed bytes plus metadata) and what the array skips.

A contraction's B operand (weights, K x N) may carry a WeightSparsity. Stored bytes of a k x n weight tile (each
tile is compressed on its own, as weights are laid out tile by tile offline; docs/sparsity.md):

  N:M structured  kept = n * ((k // M) * N + min(k % M, N))   (a last partial group keeps at most N)
                  bytes = kept values + ceil(kept * ceil(log2 M) / 8) metadata: a ceil(log2 M)-bit position per kept
                  value (NVIDIA A100 Tensor Core GPU Architecture whitepaper, 2020, "Fine-Grained Structured
                  Sparsity": 2:4 keeps 2 values and 2-bit indices per group of 4)
  unstructured    nnz = ceil(density * k * n) (zeros taken as evenly spread over the tensor's tiles), plus
                    bitmask  ceil(k * n / 8): one bit per dense position
                    csr      nnz column indices + (k + 1) row pointers of 4 bytes
                    csc      nnz row indices + (n + 1) column pointers of 4 bytes
                  with indices of 1, 2 or 4 bytes for a dimension of <= 256, <= 65,536 or more positions.

An array that accelerates the pattern (arch `array.sparsity`, arch/sparsity.py) skips the zeros: the reduction
dim K it runs is the kept count (compute_k), so folds, streamed cycles and MACs shrink; activations are still read
in full (the array's multiplexers pick the ones the kept weights need).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil, log2
from typing import Literal, Protocol, TypeVar, get_args

import numpy as np
import numpy.typing as npt

from tilesim.arch.config import PEArray
from tilesim.arch.dtypes import DTYPE_BYTES, tensor_bytes
from tilesim.arch.errors import InputError
from tilesim.arch.sparsity import parse_nm, parse_pattern

SparseFormat = Literal["bitmask", "csr", "csc"]
FORMATS: tuple[str, ...] = get_args(SparseFormat)
POINTER_BYTES = 4          # CSR row / CSC column pointers: int32


class Contraction(Protocol):
    """What these rules read of a compiler.lowering.Contraction (not imported: lowering imports this module)."""

    @property
    def k(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def b_dtype(self) -> str: ...
    @property
    def b_is_param(self) -> bool: ...
    @property
    def b_sparsity(self) -> WeightSparsity | None: ...
    @property
    def skip(self) -> str: ...


C = TypeVar("C", bound=Contraction)     # a contraction type, kept through on_array


@dataclass(frozen=True)
class WeightSparsity:
    """How a weight tensor is pruned: N:M structured (n, m > 0) or unstructured at `density` (share kept)."""
    density: float
    n: int = 0
    m: int = 0
    format: SparseFormat = "bitmask"     # storage of unstructured sparsity

    @property
    def structured(self) -> bool:
        """Whether it is an N:M pattern."""
        return self.m > 0

    def describe(self) -> str:
        """'2:4' or 'density 0.3 (bitmask)'."""
        return f"{self.n}:{self.m}" if self.structured else f"density {self.density:g} ({self.format})"


def nm_sparsity(n: int, m: int) -> WeightSparsity | None:
    """N:M structured sparsity; None for N = M (dense)."""
    return None if n == m else WeightSparsity(density=n / m, n=n, m=m)


def parse_weight_sparsity(text: str, fmt: str = "bitmask", where: str = "weight_sparsity") -> WeightSparsity | None:
    """'2:4' (N:M structured) or a share of zero weights in [0, 1) ('0.7': unstructured, 30% kept, stored as
    `fmt`); None when dense. InputError naming `where` otherwise."""
    if fmt not in FORMATS:
        raise InputError([("weight_format", f"got '{fmt}', allowed: {', '.join(FORMATS)}")])
    nm = parse_nm(text)
    if nm is not None:
        n, m = nm
        if not 1 <= n <= m <= 256:
            raise InputError([(where, f"got '{text}': N:M needs 1 <= N <= M <= 256")])
        return nm_sparsity(n, m)
    try:
        zeros = float(text)
    except ValueError:
        zeros = float("nan")
    if not 0 <= zeros < 1:
        raise InputError([(where, f"got '{text}', allowed: N:M (e.g. 2:4) or a share of zero weights in [0, 1)")])
    return None if zeros == 0 else WeightSparsity(density=1 - zeros, format=fmt)    # type: ignore[arg-type]


def kept_along_k(k: npt.ArrayLike, sp: WeightSparsity) -> npt.NDArray[np.int64]:
    """Kept weights in a column of k weights (elementwise): N:M exact per group, unstructured ceil(density * k)."""
    kk = np.asarray(k, dtype=np.int64)
    if sp.structured:
        return np.asarray((kk // sp.m) * sp.n + np.minimum(kk % sp.m, sp.n), dtype=np.int64)
    return np.asarray(np.ceil(sp.density * kk), dtype=np.int64)


def index_bytes(positions: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Bytes of an index into a dimension of `positions` entries: 1, 2 or 4."""
    p = np.asarray(positions, dtype=np.int64)
    return np.where(p <= 256, 1, np.where(p <= 65_536, 2, 4)).astype(np.int64)


def metadata_bytes(k: npt.ArrayLike, n: npt.ArrayLike, sp: WeightSparsity) -> npt.NDArray[np.int64]:
    """Metadata bytes of compressed k x n weight tiles (elementwise; module docstring)."""
    kk, nn = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    if sp.structured:
        kept = kept_along_k(kk, sp) * nn
        return np.asarray(-(-(kept * ceil(log2(sp.m))) // 8), dtype=np.int64)
    nnz = np.ceil(sp.density * kk * nn).astype(np.int64)
    if sp.format == "bitmask":
        return np.asarray(-(-(kk * nn) // 8), dtype=np.int64)
    if sp.format == "csr":
        return np.asarray(nnz * index_bytes(nn) + (kk + 1) * POINTER_BYTES, dtype=np.int64)
    return np.asarray(nnz * index_bytes(kk) + (nn + 1) * POINTER_BYTES, dtype=np.int64)


def value_elems(k: npt.ArrayLike, n: npt.ArrayLike, sp: WeightSparsity) -> npt.NDArray[np.int64]:
    """Kept (stored) weight values of k x n tiles (elementwise)."""
    kk, nn = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    if sp.structured:
        return np.asarray(kept_along_k(kk, sp) * nn, dtype=np.int64)
    return np.asarray(np.ceil(sp.density * kk * nn), dtype=np.int64)


def stored_weight_bytes(k: npt.ArrayLike, n: npt.ArrayLike, dtype: str,
                        sp: WeightSparsity | None) -> npt.NDArray[np.int64]:
    """Bytes of k x n weight tiles as stored: dense, or kept values plus metadata (elementwise)."""
    kk, nn = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    if sp is None:
        return np.asarray(tensor_bytes(kk * nn, dtype))
    return np.asarray(tensor_bytes(value_elems(kk, nn, sp), dtype)) + metadata_bytes(kk, nn, sp)


def b_tile_bytes(work: Contraction, k: npt.ArrayLike, n: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Bytes of B tiles of a contraction (weights as stored when sparse; activations dense)."""
    sp = work.b_sparsity if work.b_is_param else None
    return stored_weight_bytes(k, n, work.b_dtype, sp)


def compute_extent(k: npt.ArrayLike, sp: WeightSparsity | None, skip: str) -> npt.NDArray[np.int64]:
    """The K the array runs for k weights along K under the array.sparsity entry `skip` ('' : none)."""
    kk = np.asarray(k, dtype=np.int64)
    if not skip:
        return kk
    pattern = parse_pattern(skip)
    if pattern.kind == "rowwise":            # SCALE-Sim OptimizedMapping: K padded to 2B, two blocks per B rows
        b = pattern.m
        return -(-kk // (2 * b)) * b
    return kk if sp is None else kept_along_k(kk, sp)


def sparse_k(work: Contraction, k: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """compute_extent of K tiles of `work` (elementwise): what a K tile streams through the array."""
    return compute_extent(k, work.b_sparsity if work.b_is_param else None, work.skip)


def skipped_pattern(array: PEArray, sp: WeightSparsity | None) -> str:
    """The first array.sparsity entry that skips weights stored as `sp` ('' when none does)."""
    for text in array.sparsity:
        p = parse_pattern(text)
        if p.kind == "rowwise" or (sp is not None and (
                p.kind == "unstructured" or (sp.structured and (p.kind == "structured"
                                                                  or (p.n, p.m) == (sp.n, sp.m))))):
            return text
    return ""


def on_array(work: C, array: PEArray) -> C:
    """The contraction as this array runs it: `skip` set when the array skips its weights' zeros (weights only:
    a product of two activations, such as attention's scores, runs dense)."""
    skip = skipped_pattern(array, work.b_sparsity) if work.b_is_param else ""
    return work if skip == work.skip else replace(work, skip=skip)  # type: ignore[type-var]


def weight_bytes_per_fed_value(work: Contraction) -> float:
    """Bytes that feed the array per weight value it runs: the dtype's bytes when dense, else stored bytes / values
    run (kept values when it skips zeros; metadata included)."""
    sp = work.b_sparsity if work.b_is_param else None
    if sp is None and not work.skip:
        return DTYPE_BYTES[work.b_dtype]
    stored = int(stored_weight_bytes(work.k, work.n, work.b_dtype, sp))
    fed = int(compute_extent(work.k, sp, work.skip)) * work.n
    return stored / fed if fed else 0.0


__all__ = ["FORMATS", "SparseFormat", "WeightSparsity", "b_tile_bytes", "compute_extent", "index_bytes",
           "kept_along_k", "metadata_bytes", "nm_sparsity", "on_array", "parse_weight_sparsity",
           "skipped_pattern", "sparse_k", "stored_weight_bytes", "value_elems", "weight_bytes_per_fed_value"]
