"""Op types the IR knows: their kind, shape inference, and vector-unit cost (ops per element)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from math import prod
from typing import Any

import numpy as np

from tilesim.arch.errors import InputError, allowed_list, did_you_mean


class OpKind(Enum):
    """What hardware an op runs on."""
    CONTRACTION = "contraction"   # PE array: GEMM, conv (implicit GEMM), batched matmul
    VECTOR = "vector"             # vector unit: elementwise, norms, softmax, pooling, reductions
    MOVE = "move"                 # data movement only: transpose, concat, gather, slice
    VIEW = "view"                 # free: reshape-like ops that only reinterpret memory


Shape = tuple[int, ...]
Shapes = list[Shape]
Attrs = dict[str, Any]        # an op's attributes, as ONNX gives them
Count = Callable[[Shapes, Shapes, Attrs], int]   # vector ops of one op from its input and output shapes


@dataclass(frozen=True)
class OpSpec:
    """Kind, shape rule and (for vector ops) total vector ops given input/output shapes."""
    kind: OpKind
    infer: Callable[[Shapes, Attrs], Shapes]
    vector_ops: Count | None = None
    min_inputs: int = 1


class ShapeError(Exception):
    """Raised by shape rules; turned into InputError naming the op."""


# ---------------------------------------------------------------- shape rules

def _broadcast(shapes: Shapes, attrs: Attrs) -> Shapes:
    try:
        return [tuple(int(d) for d in np.broadcast_shapes(*shapes))]
    except ValueError:
        raise ShapeError(f"shapes {', '.join(map(str, shapes))} do not broadcast") from None


def _same(shapes: Shapes, attrs: Attrs) -> Shapes:
    return [shapes[0]]


def _conv_out(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    """ONNX/PyTorch conv output size: floor((H + pads - dil*(k-1) - 1) / stride) + 1."""
    return (size + pad_lo + pad_hi - dil * (k - 1) - 1) // stride + 1


def _window_attrs(attrs: Attrs) -> tuple[int, int, int, int, int, int, int, int, int]:
    """group, strides (h, w), dilations (h, w) and pads (t, l, b, r) of a conv-like op, checked."""
    g = int(attrs.get("group", 1))
    sh, sw = attrs.get("strides", (1, 1))
    dh, dw = attrs.get("dilations", (1, 1))
    pt, pl, pb, pr = attrs.get("pads", (0, 0, 0, 0))
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise ShapeError("strides and dilations must be >= 1 and pads >= 0")
    return g, sh, sw, dh, dw, pt, pl, pb, pr


def conv_geometry(x: Shape, w: Shape, attrs: Attrs) -> dict[str, int]:
    """Resolved conv parameters (strides, pads t/l/b/r, dilations, groups) and output size."""
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"Conv needs 4-d input and weight (NCHW, KCRS), got {x} and {w}")
    n, c, h, wd = x
    k, cg, r, s = w
    g, sh, sw, dh, dw, pt, pl, pb, pr = _window_attrs(attrs)
    if g < 1 or c % g or k % g:
        raise ShapeError(f"group={g} must divide input channels {c} and filters {k}")
    if cg != c // g:
        raise ShapeError(f"weight has {cg} input channels per group, input has {c}/{g} = {c // g}")
    e = _conv_out(h, r, sh, pt, pb, dh)
    f = _conv_out(wd, s, sw, pl, pr, dw)
    if e < 1 or f < 1:
        raise ShapeError(f"kernel {r}x{s} does not fit the padded {h}x{wd} input")
    return {"n": n, "c": c, "h": h, "w": wd, "k": k, "r": r, "s": s, "g": g, "sh": sh, "sw": sw, "dh": dh, "dw": dw,
                "pt": pt, "pl": pl, "pb": pb, "pr": pr, "e": e, "f": f}


def _conv(shapes: Shapes, attrs: Attrs) -> Shapes:
    geo = conv_geometry(shapes[0], shapes[1], attrs)
    if len(shapes) > 2 and shapes[2] != (geo["k"],):
        raise ShapeError(f"bias shape {shapes[2]} must be ({geo['k']},)")
    return [(geo["n"], geo["k"], geo["e"], geo["f"])]


def conv_transpose_geometry(x: Shape, w: Shape, attrs: Attrs) -> dict[str, int]:
    """Resolved ConvTranspose parameters and output size (ONNX ConvTranspose: weight (C, K/group, R, S),
    out = stride * (H - 1) + output_padding + dilation * (R - 1) + 1 - pad_lo - pad_hi)."""
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"ConvTranspose needs 4-d input and weight (NCHW, C K/g R S), got {x} and {w}")
    n, c, h, wd = x
    cw, kg, r, s = w
    g, sh, sw, dh, dw, pt, pl, pb, pr = _window_attrs(attrs)
    oh, ow = attrs.get("output_padding", (0, 0))
    if g < 1 or c % g or cw != c:
        raise ShapeError(f"weight has {cw} input channels, input has {c}; group={g} must divide them")
    if min(oh, ow) < 0:
        raise ShapeError("output_padding must be >= 0")
    e = sh * (h - 1) + oh + dh * (r - 1) + 1 - pt - pb
    f = sw * (wd - 1) + ow + dw * (s - 1) + 1 - pl - pr
    if e < 1 or f < 1:
        raise ShapeError(f"pads {pt, pl, pb, pr} crop away the whole output")
    return {"n": n, "c": c, "h": h, "w": wd, "k": kg * g, "r": r, "s": s, "g": g, "dh": dh, "dw": dw, "e": e, "f": f,
            "sh": sh, "sw": sw, "pt": pt, "pl": pl}


def _conv_transpose(shapes: Shapes, attrs: Attrs) -> Shapes:
    geo = conv_transpose_geometry(shapes[0], shapes[1], attrs)
    if len(shapes) > 2 and shapes[2] != (geo["k"],):
        raise ShapeError(f"bias shape {shapes[2]} must be ({geo['k']},)")
    return [(geo["n"], geo["k"], geo["e"], geo["f"])]


def matmul_shapes(a: Shape, b: Shape) -> tuple[Shape, int, int, int]:
    """numpy matmul rule: (batch shape, M, N, K) for A[..., M, K] @ B[..., K, N]."""
    if len(a) < 1 or len(b) < 1:
        raise ShapeError("MatMul operands must have at least one dimension")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ShapeError(f"inner dimensions differ: {a} @ {b} (K {a2[-1]} vs {b2[-2]})")
    try:
        batch = tuple(int(d) for d in np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError:
        raise ShapeError(f"batch dimensions of {a} and {b} do not broadcast") from None
    return batch, a2[-2], b2[-1], a2[-1]


def _matmul(shapes: Shapes, attrs: Attrs) -> Shapes:
    a, b = shapes[0], shapes[1]
    batch, m, n, _ = matmul_shapes(a, b)
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    return [out]


def _gemm(shapes: Shapes, attrs: Attrs) -> Shapes:
    a, b = shapes[0], shapes[1]
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"Gemm needs 2-d operands, got {a} and {b}")
    m, ka = (a[1], a[0]) if attrs.get("transA", 0) else a
    kb, n = (b[1], b[0]) if attrs.get("transB", 0) else b
    if ka != kb:
        raise ShapeError(f"inner dimensions differ: K {ka} vs {kb}")
    if len(shapes) > 2:
        _broadcast([shapes[2], (m, n)], {})
    return [(m, n)]


def _pool_geometry(x: Shape, attrs: Attrs) -> tuple[int, int, int, int]:
    if len(x) != 4:
        raise ShapeError(f"pooling needs a 4-d NCHW input, got {x}")
    r, s = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", (1, 1))
    pt, pl, pb, pr = attrs.get("pads", (0, 0, 0, 0))
    e = _conv_out(x[2], r, sh, pt, pb, 1)
    f = _conv_out(x[3], s, sw, pl, pr, 1)
    if e < 1 or f < 1:
        raise ShapeError(f"pool window {r}x{s} does not fit the {x[2]}x{x[3]} input")
    return r, s, e, f


def _pool(shapes: Shapes, attrs: Attrs) -> Shapes:
    _, _, e, f = _pool_geometry(shapes[0], attrs)
    return [(shapes[0][0], shapes[0][1], e, f)]


def _global_pool(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    if len(x) < 3:
        raise ShapeError(f"GlobalAveragePool needs N, C and spatial dims, got {x}")
    return [x[:2] + (1,) * (len(x) - 2)]


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _reduce(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    axes = {_axis(a, len(x)) for a in attrs.get("axes", range(len(x)))}
    keep = attrs.get("keepdims", 1)
    return [tuple((1 if i in axes else d) for i, d in enumerate(x) if keep or i not in axes)]


def _flatten(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    a = _axis(attrs.get("axis", 1), len(x) + 1) if x else 0
    return [(prod(x[:a]), prod(x[a:]))]


def _reshape(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    target = list(attrs["shape"])
    target = [x[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        raise ShapeError("Reshape allows at most one -1")
    if -1 in target:
        known = prod(d for d in target if d != -1)
        if known == 0 or prod(x) % known:
            raise ShapeError(f"cannot reshape {x} to {tuple(attrs['shape'])}")
        target[target.index(-1)] = prod(x) // known
    if prod(target) != prod(x):
        raise ShapeError(f"cannot reshape {x} ({prod(x)} elements) to {tuple(target)}")
    return [tuple(target)]


def _transpose(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    perm = attrs.get("perm", tuple(reversed(range(len(x)))))
    if sorted(perm) != list(range(len(x))):
        raise ShapeError(f"perm {perm} is not a permutation of {len(x)} axes")
    return [tuple(x[p] for p in perm)]


def _squeeze(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    axes = {_axis(a, len(x)) for a in attrs.get("axes", [i for i, d in enumerate(x) if d == 1])}
    if any(x[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze non-unit axes {sorted(axes)} of {x}")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _unsqueeze(shapes: Shapes, attrs: Attrs) -> Shapes:
    out = list(shapes[0])
    rank = len(out) + len(attrs["axes"])
    for a in sorted(_axis(a, rank) for a in attrs["axes"]):
        out.insert(a, 1)
    return [tuple(out)]


def _concat(shapes: Shapes, attrs: Attrs) -> Shapes:
    a = _axis(attrs.get("axis", 0), len(shapes[0]))
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(d != e for i, (d, e) in enumerate(zip(s, shapes[0], strict=False))
                                           if i != a):
            raise ShapeError(f"Concat on axis {a}: shapes {', '.join(map(str, shapes))} differ off that axis")
    out = list(shapes[0])
    out[a] = sum(s[a] for s in shapes)
    return [tuple(out)]


def _gather(shapes: Shapes, attrs: Attrs) -> Shapes:
    data, idx = shapes[0], shapes[1]
    a = _axis(attrs.get("axis", 0), len(data))
    return [data[:a] + idx + data[a + 1:]]


def _split(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    a = _axis(attrs.get("axis", 0), len(x))
    parts = attrs["split"]
    if sum(parts) != x[a]:
        raise ShapeError(f"split sizes {parts} do not add up to axis {a} of size {x[a]}")
    return [(*x[:a], p, *x[a + 1:]) for p in parts]


def _slice(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = list(shapes[0])
    for start, end, axis, step in zip(attrs["starts"], attrs["ends"], attrs["axes"], attrs.get("steps", [1] * 8),
                                      strict=False):
        if step == 0:
            raise ShapeError("Slice steps must not be 0")
        a = _axis(axis, len(x))
        x[a] = len(range(*slice(start, end, step).indices(x[a])))
    return [tuple(x)]


def _expand(shapes: Shapes, attrs: Attrs) -> Shapes:
    return _broadcast([shapes[0], tuple(attrs["shape"])], attrs)


def _pad(shapes: Shapes, attrs: Attrs) -> Shapes:
    x, pads = shapes[0], attrs["pads"]     # ONNX Pad: begins then ends, one per axis
    if len(pads) != 2 * len(x):
        raise ShapeError(f"pads {tuple(pads)} need 2 values per axis of {x}")
    return [tuple(d + lo + hi for d, lo, hi in zip(x, pads[:len(x)], pads[len(x):], strict=True))]


def _tile(shapes: Shapes, attrs: Attrs) -> Shapes:
    x, reps = shapes[0], attrs["repeats"]
    if len(reps) != len(x):
        raise ShapeError(f"repeats {tuple(reps)} need one value per axis of {x}")
    return [tuple(d * r for d, r in zip(x, reps, strict=True))]


def _gather_nd(shapes: Shapes, attrs: Attrs) -> Shapes:
    data, idx, b = shapes[0], shapes[1], int(attrs.get("batch_dims", 0))   # ONNX GatherND
    if not idx or idx[-1] > len(data) - b:
        raise ShapeError(f"indices {idx} do not index data {data} past {b} batch dims")
    return [idx[:-1] + data[b + idx[-1]:]]


def _second(shapes: Shapes, attrs: Attrs) -> Shapes:
    return [shapes[1]]


def _given(shapes: Shapes, attrs: Attrs) -> Shapes:
    return [tuple(s) for s in attrs["shapes"]]


def _top_k(shapes: Shapes, attrs: Attrs) -> Shapes:
    x = shapes[0]
    axis, k = _axis(attrs.get("axis", -1), len(x)), int(attrs["k"])
    if not 0 <= k <= x[axis]:
        raise ShapeError(f"k = {k} must be between 0 and the axis size {x[axis]}")
    y = (*x[:axis], k, *x[axis + 1:])
    return [y, y]                                               # values, indices


def _one_hot(shapes: Shapes, attrs: Attrs) -> Shapes:
    idx = shapes[0]
    axis = _axis(attrs.get("axis", -1), len(idx) + 1)
    return [(*idx[:axis], int(attrs["depth"]), *idx[axis:])]


def _non_zero(shapes: Shapes, attrs: Attrs) -> Shapes:
    return [(len(shapes[0]), int(attrs["count"]))]              # the count the importer bounded (ONNX: data-dependent)


def _layernorm(shapes: Shapes, attrs: Attrs) -> Shapes:
    _axis(attrs.get("axis", -1), len(shapes[0]))
    return [shapes[0]]


# ---------------------------------------------------------------- vector costs (ops per element, documented)
# Counts are lane operations; a transcendental (exp, tanh, erf, rsqrt) counts as one special-function op.

def _per_out(n: int) -> Count:
    return lambda ins, outs, attrs: n * prod(outs[0])


def _per_in(n: int) -> Count:
    return lambda ins, outs, attrs: n * prod(ins[0])


def _pool_ops(ins: Shapes, outs: Shapes, attrs: Attrs) -> int:
    r, s = (int(v) for v in attrs["kernel_shape"])
    return r * s * prod(outs[0])  # one compare/add per window element


def _softmax_ops(ins: Shapes, outs: Shapes, attrs: Attrs) -> int:
    return 5 * prod(ins[0])  # max, subtract, exp, sum, divide


def _layernorm_ops(ins: Shapes, outs: Shapes, attrs: Attrs) -> int:
    return 8 * prod(ins[0])  # mean (1), centre (1), square-sum (2), normalise (2), scale and shift (2)


def _rmsnorm_ops(ins: Shapes, outs: Shapes, attrs: Attrs) -> int:
    return 5 * prod(ins[0])  # square-sum (2), rsqrt shared per row, normalise (1), scale (1), + 1 for the mean


def _top_k_ops(ins: Shapes, outs: Shapes, attrs: Attrs) -> int:
    return outs[0][_axis(attrs.get("axis", -1), len(outs[0]))] * prod(ins[0])  # k max passes over each row


SPECS: dict[str, OpSpec] = {
    # contractions on the PE array
    "Conv": OpSpec(OpKind.CONTRACTION, _conv, min_inputs=2),
    "ConvTranspose": OpSpec(OpKind.CONTRACTION, _conv_transpose, min_inputs=2),
    "MatMul": OpSpec(OpKind.CONTRACTION, _matmul, min_inputs=2),
    "Gemm": OpSpec(OpKind.CONTRACTION, _gemm, min_inputs=2),
    # vector unit
    "Relu": OpSpec(OpKind.VECTOR, _same, _per_out(1)),
    "Clip": OpSpec(OpKind.VECTOR, _same, _per_out(2)),
    "Sigmoid": OpSpec(OpKind.VECTOR, _same, _per_out(4)),      # negate, exp, add, divide
    "Tanh": OpSpec(OpKind.VECTOR, _same, _per_out(1)),
    "Erf": OpSpec(OpKind.VECTOR, _same, _per_out(1)),
    "Sqrt": OpSpec(OpKind.VECTOR, _same, _per_out(1)),
    "Gelu": OpSpec(OpKind.VECTOR, _same, _per_out(8)),         # tanh form: x^3, 3 mul/add, tanh, add, 2 mul
    "HardSwish": OpSpec(OpKind.VECTOR, _same, _per_out(4)),    # add, clip (2), mul
    "HardSigmoid": OpSpec(OpKind.VECTOR, _same, _per_out(4)),  # mul, add, clip (2)
    "LeakyRelu": OpSpec(OpKind.VECTOR, _same, _per_out(2)),    # mul, select
    "Silu": OpSpec(OpKind.VECTOR, _same, _per_out(5)),         # sigmoid (4) and a multiply
    # RoPE (Su et al. 2021, arXiv:2104.09864; ONNX opset 23): x*cos + rotate_half(x)*sin, 2 mul, 1 add and the
    # sign flip of rotate_half per element; the cos/sin rows of the token's position are read from an on-chip table
    "RotaryEmbedding": OpSpec(OpKind.VECTOR, _same, _per_out(4)),
    "Cast": OpSpec(OpKind.VECTOR, _same, _per_out(1)),
    "Add": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=2),
    "Sub": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=2),
    "Mul": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=2),
    "Div": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=2),
    "Pow": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=2),
    "Where": OpSpec(OpKind.VECTOR, _broadcast, _per_out(1), min_inputs=3),
    # one lane op per output element: arithmetic, comparisons and logic (bool results), the SFU for exp/sin/cos
    **{t: OpSpec(OpKind.VECTOR, _same, _per_out(1)) for t in ("Neg", "Reciprocal", "Exp", "Log", "Abs", "Sin",
                                                                "Cos", "IsNaN", "IsInf", "Not", "Floor", "Ceil")},
    **{t: OpSpec(OpKind.VECTOR, _broadcast, _per_out(1)) for t in ("Max", "Min", "Mod", "And", "Or", "Xor", "Equal",
                                                                     "Less", "Greater", "LessOrEqual",
                                                                     "GreaterOrEqual")},
    "BatchNormalization": OpSpec(OpKind.VECTOR, _same, _per_out(2), min_inputs=5),  # folded to scale and shift
    "LayerNormalization": OpSpec(OpKind.VECTOR, _layernorm, _layernorm_ops),
    "RMSNormalization": OpSpec(OpKind.VECTOR, _layernorm, _rmsnorm_ops),
    "Softmax": OpSpec(OpKind.VECTOR, _same, _softmax_ops),
    "MaxPool": OpSpec(OpKind.VECTOR, _pool, _pool_ops),
    "AveragePool": OpSpec(OpKind.VECTOR, _pool, _pool_ops),
    "GlobalAveragePool": OpSpec(OpKind.VECTOR, _global_pool, _per_in(1)),
    "ReduceMean": OpSpec(OpKind.VECTOR, _reduce, _per_in(1)),
    "ReduceSum": OpSpec(OpKind.VECTOR, _reduce, _per_in(1)),
    "ReduceMax": OpSpec(OpKind.VECTOR, _reduce, _per_in(1)),
    "ReduceMin": OpSpec(OpKind.VECTOR, _reduce, _per_in(1)),
    "TopK": OpSpec(OpKind.VECTOR, _top_k, _top_k_ops),
    "OneHot": OpSpec(OpKind.VECTOR, _one_hot, _per_out(1)),    # one compare of the index per class
    "NonZero": OpSpec(OpKind.VECTOR, _non_zero, _per_in(1)),   # one compare per element (then compaction)
    # data movement
    "Transpose": OpSpec(OpKind.MOVE, _transpose),
    "Concat": OpSpec(OpKind.MOVE, _concat),
    "Gather": OpSpec(OpKind.MOVE, _gather, min_inputs=2),
    "Split": OpSpec(OpKind.MOVE, _split),
    "Slice": OpSpec(OpKind.MOVE, _slice),
    "Expand": OpSpec(OpKind.MOVE, _expand),
    "Pad": OpSpec(OpKind.MOVE, _pad),
    "Tile": OpSpec(OpKind.MOVE, _tile),
    "GatherND": OpSpec(OpKind.MOVE, _gather_nd, min_inputs=2),
    "GatherElements": OpSpec(OpKind.MOVE, _second, min_inputs=2),    # output has the indices' shape
    "ScatterND": OpSpec(OpKind.MOVE, _same, min_inputs=3),
    "ScatterElements": OpSpec(OpKind.MOVE, _same, min_inputs=3),
    "Opaque": OpSpec(OpKind.MOVE, _given, min_inputs=0),   # an imported op tilesim does not know (--unknown-ops free)
    # free views
    "Reshape": OpSpec(OpKind.VIEW, _reshape),
    "Flatten": OpSpec(OpKind.VIEW, _flatten),
    "Squeeze": OpSpec(OpKind.VIEW, _squeeze),
    "Unsqueeze": OpSpec(OpKind.VIEW, _unsqueeze),
    "Identity": OpSpec(OpKind.VIEW, _same),
    "Dropout": OpSpec(OpKind.VIEW, _same),
}


def spec(op_type: str, where: str = "") -> OpSpec:
    """The OpSpec of `op_type`, or an InputError listing what is supported."""
    if op_type not in SPECS:
        raise InputError(f"{where}unknown op type '{op_type}'{did_you_mean(op_type, SPECS)}; "
                         f"supported: {allowed_list(SPECS)}")
    return SPECS[op_type]


def infer_shapes(op_type: str, name: str, shapes: Shapes, attrs: Attrs) -> Shapes:
    """Output shapes of one op, or an InputError naming the op and the mismatch."""
    s = spec(op_type, f"op '{name}': ")
    if len(shapes) < s.min_inputs:
        raise InputError(f"op '{name}' ({op_type}): needs at least {s.min_inputs} inputs, got {len(shapes)}")
    try:
        out = s.infer(shapes, attrs)
    except ShapeError as e:
        raise InputError(f"op '{name}' ({op_type}): {e}") from None
    except KeyError as e:
        raise InputError(f"op '{name}' ({op_type}): missing attribute {e}") from None
    for shape in out:
        if any(d < 0 for d in shape):
            raise InputError(f"op '{name}' ({op_type}): negative output dimension {shape}")
    return out
