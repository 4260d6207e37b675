"""Cycle-level systolic array model: numba kernels vs Python references, outputs vs a @ b, cycles vs SCALE-Sim."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim.arch.errors import InputError
from tilesim.core.array_model import ArrayRun, closed_form_cycles, run_array
from tilesim.core.kernels.systolic import (
    systolic_is,
    systolic_is_py,
    systolic_os,
    systolic_os_py,
    systolic_ws,
    systolic_ws_py,
)

KERNELS = {"ws": (systolic_ws, systolic_ws_py), "os": (systolic_os, systolic_os_py),
           "is": (systolic_is, systolic_is_py)}
DATAFLOWS = ("ws", "os", "is")


def _operands(seed, m, n, k):
    """Random int64 A[m,k], B[k,n] with small signed values."""
    rng = np.random.default_rng(seed)
    return rng.integers(-20, 21, (m, k), dtype=np.int64), rng.integers(-20, 21, (k, n), dtype=np.int64)


# Hand-computed cycle counts (R x C array, GEMM M x N x K; F = folds, T = streamed dimension):
#   2x2, M=N=K=2, WS: Sr=K=2, Sc=N=2, T=M=2, F=1 -> 1*(2*2 + 2 + 2 - 2) - 1 = 5
#     (preload cycles 0-1; A[1,1] enters row 1 in cycle R + i + r = 2+1+1 = 4, reaches PE(1,1) in cycle 5)
#   2x2, M=N=K=2, OS: T=K=2, F=1 -> 1*(2 + 2 + 2 - 2) - 1 = 3 (PE(1,1) does its last MAC in cycle s+r+c = 1+1+1)
#   2x2, M=N=K=2, IS: Sr=K=2, Sc=M=2, T=N=2, F=1 -> 5, as WS
#   2x2, M=3, N=K=2, WS: T=3, F=1 -> 2*2 + 2 + 3 - 2 - 1 = 6
#   2x2, M=3, N=K=2, OS: Sr=M=3 -> Fr=2, Fc=1, T=2 -> 2*(2 + 2 + 2 - 2) - 1 = 7
#   2x2, M=3, N=K=2, IS: Sc=M=3 -> Fc=2, T=N=2 -> 2*(4 + 2 + 2 - 2) - 1 = 11
#   1x1, M=N=K=1: WS/IS 1*(2 + 1 + 1 - 2) - 1 = 1 (cycle 0 preloads, cycle 1 MACs); OS 1*(1+1+1-2) - 1 = 0
#   4x4, M=5, N=7, K=3, WS: Fr=1, Fc=2, T=5 -> 2*(8 + 4 + 5 - 2) - 1 = 29
@pytest.mark.parametrize("rows, cols, m, n, k, dataflow, cycles", [
    (2, 2, 2, 2, 2, "ws", 5), (2, 2, 2, 2, 2, "os", 3), (2, 2, 2, 2, 2, "is", 5),
    (2, 2, 3, 2, 2, "ws", 6), (2, 2, 3, 2, 2, "os", 7), (2, 2, 3, 2, 2, "is", 11),
    (1, 1, 1, 1, 1, "ws", 1), (1, 1, 1, 1, 1, "os", 0), (1, 1, 1, 1, 1, "is", 1),
    (4, 4, 5, 7, 3, "ws", 29),
])
def test_hand_computed(rows, cols, m, n, k, dataflow, cycles):
    a, b = _operands(1, m, n, k)
    assert closed_form_cycles(m, n, k, rows, cols, dataflow) == cycles
    fast, ref = KERNELS[dataflow]
    for kernel in (fast, ref):
        out, last = kernel(a, b, rows, cols)
        assert last == cycles
        np.testing.assert_array_equal(out, a @ b)


# (rows, cols, M, N, K): non-multiples, M=1 decode-like, K > rows, shapes smaller than the array, 1x1 array,
# non-square arrays, every dimension spilling into several folds.
SHAPES = [(4, 4, 5, 7, 3), (4, 4, 1, 16, 9), (4, 4, 1, 3, 40), (4, 4, 3, 4, 20), (8, 8, 2, 3, 2),
          (1, 1, 3, 4, 5), (3, 5, 7, 11, 13), (5, 2, 9, 4, 6), (4, 4, 9, 9, 9)]


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("rows, cols, m, n, k", SHAPES)
def test_output_and_cycles_fixed_shapes(rows, cols, m, n, k, dataflow):
    a, b = _operands(2, m, n, k)
    run = run_array(a, b, rows, cols, dataflow)
    np.testing.assert_array_equal(run.output, a @ b)
    assert run.cycles == closed_form_cycles(m, n, k, rows, cols, dataflow)
    assert run.macs == m * n * k
    ref_out, ref_last = KERNELS[dataflow][1](a, b, rows, cols)
    np.testing.assert_array_equal(ref_out, run.output)
    assert ref_last == run.cycles


@given(dataflow=st.sampled_from(DATAFLOWS), rows=st.integers(1, 6), cols=st.integers(1, 6),
       m=st.integers(1, 10), n=st.integers(1, 10), k=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_kernels_equal_python_references(dataflow, rows, cols, m, n, k, seed):
    a, b = _operands(seed, m, n, k)
    fast, ref = KERNELS[dataflow]
    out, last = fast(a, b, rows, cols)
    ref_out, ref_last = ref(a, b, rows, cols)
    np.testing.assert_array_equal(out, ref_out)
    assert last == ref_last
    np.testing.assert_array_equal(out, a @ b)


@given(dataflow=st.sampled_from(DATAFLOWS), rows=st.integers(1, 16), cols=st.integers(1, 16),
       m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_cycles_equal_closed_form(dataflow, rows, cols, m, n, k, seed):
    a, b = _operands(seed, m, n, k)
    run = run_array(a, b, rows, cols, dataflow)
    assert run.cycles == closed_form_cycles(m, n, k, rows, cols, dataflow)
    np.testing.assert_array_equal(run.output, a @ b)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_largest_array(dataflow):
    # 64x64 with every spatial dimension just over one fold: WS Fr=Fc=2 (K=65, N=70), OS Fc=2, IS Fr=2.
    a, b = _operands(3, 3, 70, 65)
    run = run_array(a, b, 64, 64, dataflow)
    np.testing.assert_array_equal(run.output, a @ b)
    assert run.cycles == closed_form_cycles(3, 70, 65, 64, 64, dataflow)
    assert run.folds == {"ws": 4, "os": 2, "is": 2}[dataflow]


def test_closed_form_formula():
    # OS F*(T+R+C-2)-1; WS/IS F*(2R+C+T-2)-1 with (Sr, Sc, T) = OS (M,N,K), WS (K,N,M), IS (K,M,N).
    m, n, k, r, c = 100, 30, 50, 16, 8
    assert closed_form_cycles(m, n, k, r, c, "os") == 7 * 4 * (50 + 16 + 8 - 2) - 1
    assert closed_form_cycles(m, n, k, r, c, "ws") == 4 * 4 * (32 + 8 + 100 - 2) - 1
    assert closed_form_cycles(m, n, k, r, c, "is") == 4 * 13 * (32 + 8 + 30 - 2) - 1


def test_array_run_is_frozen_and_readonly():
    a, b = _operands(4, 3, 3, 3)
    run = run_array(a, b, 2, 2, "os")
    assert isinstance(run, ArrayRun) and run.folds == 4 and run.macs == 27
    with pytest.raises(AttributeError):
        run.cycles = 0
    with pytest.raises(ValueError):
        run.output[0, 0] = 1


def test_accepts_other_integer_dtypes():
    a, b = _operands(5, 4, 5, 6)
    run = run_array(a.astype(np.int8), b.astype(np.int16), 3, 3, "ws")
    np.testing.assert_array_equal(run.output, a @ b)


_I = np.ones((2, 2), np.int64)


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 2)), _I, 2, 2, "ws"), "a: must be a 2-d integer numpy array, got 2-d float64"),
    (([[1]], np.ones((1, 1), np.int64), 2, 2, "ws"), "a: must be a 2-d integer numpy array, got list"),
    ((_I, np.ones(2, np.int64), 2, 2, "ws"), "b: must be a 2-d integer numpy array, got 1-d int64"),
    ((np.ones((0, 2), np.int64), np.ones((2, 2), np.int64), 2, 2, "ws"), "a: both dimensions must be >= 1"),
    ((np.ones((2, 3), np.int64), np.ones((2, 2), np.int64), 2, 2, "ws"), "a, b: inner dimensions differ"),
    ((_I, _I, 0, 2, "ws"), "rows: must be an integer in 1..64, got 0"),
    ((_I, _I, 2, 65, "ws"), "cols: must be an integer in 1..64, got 65"),
    ((_I, _I, True, 2, "ws"), "rows: must be an integer"),
    ((_I, _I, 2.0, 2, "ws"), "rows: must be an integer"),
    ((_I, _I, 2, 2, "wss"), "dataflow: unknown dataflow 'wss' (did you mean 'ws'?)"),
])
def test_input_errors(args, message):
    with pytest.raises(InputError) as info:
        run_array(*args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_closed_form_rejects_unknown_dataflow():
    with pytest.raises(InputError, match="allowed: is, os, ws"):
        closed_form_cycles(1, 1, 1, 1, 1, "rs")
