"""Cycle-level systolic array model for validation: real outputs and SCALE-Sim-comparable cycle counts.

`run_array` runs the register-transfer kernels in sim/kernels/systolic.py (see its docstring for the exact timing
convention: cycle 0 is the first cycle of the first fold, `cycles` is the cycle in which the last output leaves
the array). `closed_form_cycles` is SCALE-Sim 3.0.0's stall-free formula, which `run_array` must equal exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilesim.arch.config import PEArray
from tilesim.arch.dataflow import DATAFLOWS as DATAFLOW_TABLE
from tilesim.arch.errors import InputError, allowed_list, did_you_mean
from tilesim.compiler.cost import array_cycles, folds, spatial_dims
from tilesim.compiler.lowering import Contraction
from tilesim.core.kernels.systolic import systolic_is, systolic_os, systolic_ws

DATAFLOWS = tuple(DATAFLOW_TABLE)
MAX_DIM = 64  # largest array side the register model accepts (it costs cycles * rows * cols per fold)
_KERNELS = {"ws": systolic_ws, "os": systolic_os, "is": systolic_is}


@dataclass(frozen=True, eq=False)
class ArrayRun:
    """One GEMM on the array: the output matrix, the last cycle (0-based), folds run, and useful MACs (M*N*K)."""
    output: np.ndarray
    cycles: int
    folds: int
    macs: int


def _check_dataflow(dataflow) -> str:
    """The dataflow name, or InputError."""
    if dataflow not in DATAFLOWS:
        hint = did_you_mean(dataflow, DATAFLOWS) if isinstance(dataflow, str) else ""
        raise InputError(f"dataflow: unknown dataflow {dataflow!r}{hint}; allowed: {allowed_list(DATAFLOWS)}")
    return dataflow


def _gemm(m: int, n: int, k: int) -> Contraction:
    return Contraction(1, m, n, k, "int8", "int8", "int32")


def fold_count(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """Folds = ceil(Sr/R) * ceil(Sc/C) (compiler.cost.folds over the dataflow's spatial dims)."""
    sr, sc, _ = spatial_dims(_gemm(m, n, k), _check_dataflow(dataflow))
    return folds(sr, sc, rows, cols)


def closed_form_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim 3.0.0 stall-free cycles, from the compiler's cost model in `scalesim` mode:
    OS F*(T+R+C-2)-1, WS/IS F*(2R+C+T-2)-1 (0-based last cycle)."""
    array = PEArray(rows, cols, _check_dataflow(dataflow))
    return array_cycles(_gemm(m, n, k), array, dataflow, "scalesim", t_tile=1)


def _check_matrix(name: str, x) -> np.ndarray:
    """x as a C-contiguous int64 2-d array with both sides >= 1, or InputError."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        what = f"{x.ndim}-d {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InputError(f"{name}: must be a 2-d integer numpy array, got {what}")
    if min(x.shape) < 1:
        raise InputError(f"{name}: both dimensions must be >= 1, got shape {x.shape}")
    if x.dtype == np.uint64 and x.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name}: values must fit in int64")
    return np.ascontiguousarray(x, dtype=np.int64)


def _check_side(name: str, v) -> int:
    """An array side in 1..MAX_DIM, or InputError."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_DIM:
        raise InputError(f"{name}: must be an integer in 1..{MAX_DIM}, got {v!r}")
    return int(v)


def run_array(a: np.ndarray, b: np.ndarray, rows: int, cols: int, dataflow: str) -> ArrayRun:
    """Run C = A . B cycle by cycle on a rows x cols array with the given dataflow (ws, os or is)."""
    a64 = _check_matrix("a", a)
    b64 = _check_matrix("b", b)
    if a64.shape[1] != b64.shape[0]:
        raise InputError(f"a, b: inner dimensions differ: a is {a64.shape[0]}x{a64.shape[1]}, "
                         f"b is {b64.shape[0]}x{b64.shape[1]}")
    rows = _check_side("rows", rows)
    cols = _check_side("cols", cols)
    dataflow = _check_dataflow(dataflow)
    out, last = _KERNELS[dataflow](a64, b64, rows, cols)
    out.setflags(write=False)
    (m, k), n = a64.shape, b64.shape[1]
    return ArrayRun(output=out, cycles=int(last), folds=fold_count(m, n, k, rows, cols, dataflow), macs=m * n * k)
