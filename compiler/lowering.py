"""Lowering: every op becomes a loop nest — a Contraction on the PE array or VectorWork — or nothing (views)."""
from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from typing import Any, ClassVar

from tilesim.arch.dtypes import DTYPE_BYTES
from tilesim.arch.errors import InputError
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.ops import OpKind, conv_geometry, conv_transpose_geometry, matmul_shapes, spec
from tilesim.compiler.sparsity import WeightSparsity, b_tile_bytes, compute_extent


@dataclass(frozen=True)
class ConvWindow:
    """Sliding-window geometry of a conv as implicit GEMM, so input traffic counts feature-map rows, not im2col."""
    out_w: int        # F: output pixels per output row
    stride_h: int
    span_h: int       # (R - 1) * dilation + 1 input rows under one output row
    in_h: int         # input height in memory (padding is not fetched: it is generated on chip)
    in_w: int         # input width in memory
    window: int       # R * S: GEMM K elements per input channel

    def input_elems(self, m_rows: int, k_elems: int, im2col_elems: int) -> int:
        """Input elements of a tile covering m_rows output pixels and k_elems of K: the needed feature-map
        region (output rows -> input rows with halo), capped by the im2col size."""
        out_rows = -(-m_rows // self.out_w)
        in_rows = min((out_rows - 1) * self.stride_h + self.span_h, self.in_h)
        channels = -(-k_elems // self.window)
        return min(in_rows * self.in_w * channels, im2col_elems)


@dataclass(frozen=True)
class Contraction:
    """C[g, m, n] = sum_k A[g, m, k] * B[g, k, n]: g independent GEMMs (groups, batched matmul heads)."""
    g: int
    m: int
    n: int
    k: int
    a_dtype: str
    b_dtype: str
    c_dtype: str
    b_is_param: bool = True
    window: ConvWindow | None = None
    b_sparsity: WeightSparsity | None = None   # pruned weights, stored compressed (compiler/sparsity.py)
    skip: str = ""                             # the array.sparsity entry whose zeros the array skips ('' none)
    on_array: ClassVar[bool] = True

    def parts(self) -> tuple[Contraction, ...]:
        """The contractions it runs on the array: itself."""
        return (self,)

    def operand_read_bytes(self) -> tuple[float, float]:
        """Bytes of A (the feature-map region for convs) and of B, each read once."""
        return (self.g * self.a_elems(self.m, self.k) * DTYPE_BYTES[self.a_dtype],
                self.g * int(b_tile_bytes(self, self.k, self.n)))

    @property
    def k_compute(self) -> int:
        """The reduction length the array runs: K, or the kept weights per column when it skips zeros."""
        if not self.skip:
            return self.k
        return int(compute_extent(self.k, self.b_sparsity if self.b_is_param else None, self.skip))

    @property
    def macs(self) -> int:
        """Multiply-accumulates the array performs: g * M * N * K (K kept when it skips zero weights)."""
        return self.g * self.m * self.n * self.k_compute

    def a_elems(self, m: int, k: int) -> int:
        """Elements of A read for an m x k tile (feature-map region for convs)."""
        return self.window.input_elems(m, k, m * k) if self.window else m * k


@dataclass(frozen=True)
class VectorWork:
    """Work for the vector unit (ops = 0 for pure data movement): total lane ops and bytes in and out."""
    elements: int
    ops: int
    read_bytes: int
    write_bytes: int
    row_bytes: int = 0      # input a row reduction needs before its first output (Softmax: max, sum of exps),
    #                         read again on every extra pass of an implementation that does not keep rows on chip
    row_elems: int = 0      # elements per row of that reduction
    on_array: ClassVar[bool] = False

    def parts(self) -> tuple[Contraction, ...]:
        """Contractions it runs on the array: none."""
        return ()

    def operand_read_bytes(self) -> tuple[int, int]:
        """Array operands it reads: none."""
        return 0, 0

    @property
    def macs(self) -> int:
        """Vector work does no multiply-accumulates on the array."""
        return 0


LoopNest = Contraction | VectorWork


def _bytes(graph: Graph, names: Iterable[str]) -> int:
    return sum(graph.tensors[t].nbytes for t in names)


GATHERS = {"Gather", "GatherND", "GatherElements"}
ROW_REDUCTIONS = {"Softmax"}    # ops that reduce a whole row (max, sum of exps) before writing any of it

MAX_COUNT = 2**62           # any count the simulator keeps (cycles, bytes, ops) stays below this in int64
# Per-op limits, chosen so that every count derived from one op stays below MAX_COUNT: a tiled contraction moves at
# most 16 bytes per MAC (fp32 A and B each reloaded once per tile of the other's loop, fp32 partial sums spilled and
# reloaded once per k tile), so its DRAM traffic stays under 16 * 2**56 = 2**60, plus its output and fused residual
# reads (each under MAX_TENSOR_BYTES); its array cycles stay within a small multiple of its MACs.
MAX_MACS = 2**56
MAX_TENSOR_BYTES = 2**60
MAX_VECTOR_OPS = 2**60


def lower_op(graph: Graph, op: Op) -> LoopNest | None:
    """The loop nest of one op; None for views. Sizes whose MACs, tensor bytes or vector ops would let a 64-bit
    counter overflow are refused here, naming the op, the quantity and the limit. Remembered per graph and op (a
    graph is not changed once made): the fusion pass asks for each op under every policy the fusion guard weighs."""
    known = _LOWERED.setdefault(graph, {})
    if op not in known:
        known[op] = _checked(graph, op)
    return known[op]


_LOWERED: weakref.WeakKeyDictionary[Graph, dict[Op, LoopNest | None]] = weakref.WeakKeyDictionary()


def _checked(graph: Graph, op: Op) -> LoopNest | None:
    """lower_op, worked out."""
    work = _lower(graph, op)
    big = max(op.inputs + op.outputs, key=lambda t: graph.tensors[t].nbytes)
    checks = ((work.macs if work else 0, MAX_MACS, "MACs", "2**56"),
              (graph.tensors[big].nbytes, MAX_TENSOR_BYTES, f"bytes in tensor '{big}'", "2**60"),
              (work.ops if isinstance(work, VectorWork) else 0, MAX_VECTOR_OPS, "vector ops", "2**60"))
    for value, limit, what, text in checks:
        if value >= limit:
            raise InputError(f"op '{op.name}': {value:.3g} {what} exceed the 64-bit counters tilesim uses "
                             f"(< {text} per op); use smaller sizes")
    return work


def _lower(graph: Graph, op: Op) -> LoopNest | None:
    """The loop nest of one op, unchecked."""
    kind = spec(op.op_type).kind
    ts = [graph.tensors[t] for t in op.inputs]
    out = graph.tensors[op.outputs[0]]
    if kind is OpKind.VIEW:
        return None
    if kind is OpKind.CONTRACTION:
        return _lower_contraction(op, ts, out)
    if kind is OpKind.VECTOR:
        count = spec(op.op_type).vector_ops
        if count is None:
            raise TypeError(f"op type {op.op_type}: a vector op without a vector_ops rule")   # a bug in compiler/ops.py
        ops = count([t.shape for t in ts], [graph.tensors[o].shape for o in op.outputs], op.attrs)
        row = op.op_type in ROW_REDUCTIONS
        return VectorWork(out.elements, ops, _bytes(graph, op.inputs), _bytes(graph, op.outputs),
                          ts[0].nbytes if row else 0, ts[0].shape[op.attrs.get("axis", -1)] if row else 0)
    # MOVE: bytes in and out, no arithmetic. Gathers read only the elements they pick (plus the indices).
    read = _bytes(graph, op.outputs) + ts[1].nbytes if op.op_type in GATHERS else _bytes(graph, op.inputs)
    return VectorWork(out.elements, 0, read, _bytes(graph, op.outputs))


def _lower_contraction(op: Op, ts: list[Tensor], out: Tensor) -> Contraction:
    a, b = ts[0], ts[1]
    if op.op_type == "Conv":
        geo = conv_geometry(a.shape, b.shape, op.attrs)
        g = geo["g"]
        window = ConvWindow(out_w=geo["f"], stride_h=geo["sh"], span_h=(geo["r"] - 1) * geo["dh"] + 1,
                            in_h=geo["h"], in_w=geo["w"],
                            window=geo["r"] * geo["s"])
        return Contraction(g=g, m=geo["n"] * geo["e"] * geo["f"], n=geo["k"] // g,
                           k=(geo["c"] // g) * geo["r"] * geo["s"], a_dtype=a.dtype, b_dtype=b.dtype,
                           c_dtype=out.dtype, b_is_param=True, window=window, b_sparsity=b.sparsity)
    if op.op_type == "ConvTranspose":
        return _lower_conv_transpose(op, a, b, out)
    if op.op_type == "Gemm":
        m, k = (a.shape[1], a.shape[0]) if op.attrs.get("transA", 0) else a.shape
        n = b.shape[0] if op.attrs.get("transB", 0) else b.shape[1]
        return Contraction(1, m, n, k, a.dtype, b.dtype, out.dtype, b.is_param, b_sparsity=b.sparsity)
    batch, m, n, k = matmul_shapes(a.shape, b.shape)
    if len(b.shape) <= 2:   # a shared (K, N) matrix: fold A's batch dims into M
        return Contraction(1, prod(batch) * m, n, k, a.dtype, b.dtype, out.dtype, b.is_param, b_sparsity=b.sparsity)
    return Contraction(prod(batch), m, n, k, a.dtype, b.dtype, out.dtype, b.is_param, b_sparsity=b.sparsity)


def conv_transpose_macs(x: tuple[int, ...], w: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, int]:
    """(useful, zero-stuffed) MACs of a ConvTranspose. Useful: every input pixel times every tap,
    N x H x W x C_in x C_out/groups x R x S, what torch's FlopCounterMode counts (taps that padding crops off the
    output included: the scatter form computes them). Zero-stuffed: the extra MACs of running it as a stride-1
    conv over the input with (stride - 1) zeros inserted between pixels, N E F x C_out x C_in/groups x R S, minus
    the useful ones: taps on inserted zeros."""
    geo = conv_transpose_geometry(x, w, attrs)
    useful = geo["n"] * geo["h"] * geo["w"] * geo["c"] * (geo["k"] // geo["g"]) * geo["r"] * geo["s"]
    stuffed = geo["n"] * geo["e"] * geo["f"] * geo["k"] * (geo["c"] // geo["g"]) * geo["r"] * geo["s"]
    return useful, stuffed - useful


def _lower_conv_transpose(op: Op, a: Tensor, b: Tensor, out: Tensor) -> Contraction:
    """ConvTranspose by its useful MACs (conv_transpose_macs) in the sub-pixel form: each output pixel is a dot
    product over the taps that reach it, t_h x t_w = (H R / E) x (W S / F) of them (stride 2, kernel 4, pad 1:
    2 x 2), so M = N * E * F, N = C_out / groups, K = C_in / groups * t_h * t_w. When the taps do not split evenly
    over the outputs, M counts (input pixel, tap) pairs instead (the scatter form: M = N H W R S, K = C_in /
    groups), the same MACs. The zero-stuffed GEMM's taps on inserted zeros are not counted as work."""
    geo = conv_transpose_geometry(a.shape, b.shape, op.attrs)
    g = geo["g"]
    uh, uw = geo["h"] * geo["r"], geo["w"] * geo["s"]
    even = uh % geo["e"] == 0 and uw % geo["f"] == 0
    th, tw = (uh // geo["e"], uw // geo["f"]) if even else (1, 1)
    m = geo["n"] * (geo["e"] * geo["f"] if even else uh * uw)
    # the input is fetched as it is (no inserted zeros): rows of real pixels under each output row
    window = ConvWindow(out_w=geo["f"] if even else uw, stride_h=1, span_h=(geo["r"] - 1) * geo["dh"] + 1,
                        in_h=a.shape[2], in_w=a.shape[3], window=th * tw)
    return Contraction(g=g, m=m, n=geo["k"] // g, k=(geo["c"] // g) * th * tw, a_dtype=a.dtype, b_dtype=b.dtype,
                       c_dtype=out.dtype, b_is_param=True, window=window, b_sparsity=b.sparsity)


def graph_macs(graph: Graph) -> int:
    """Total multiply-accumulates of a graph's contractions."""
    return sum(n.macs for op in graph.ops if (n := lower_op(graph, op)) is not None)
