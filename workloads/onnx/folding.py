"""Constant folding with numpy: FOLDERS maps an ONNX op type to the function that evaluates it on constant inputs
(shape computations: Shape -> Gather -> Concat -> Reshape, masks built from Range and comparisons, ...)."""
from __future__ import annotations

from collections.abc import Callable
from math import ceil, prod

import numpy as np

from tilesim.workloads.onnx.model import MAX_FOLD_ELEMS, has_data, node_attrs, onnx_module, to_array


def _axes_arg(node, ins: list, index: int) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as input `index` (newer ones)."""
    a = node_attrs(node).get("axes")
    if a is not None:
        return [int(v) for v in a]
    if len(ins) > index and ins[index] is not None:
        return [int(v) for v in np.ravel(ins[index])]
    return None


def _np_unsqueeze(node, ins):
    x, axes = ins[0], _axes_arg(node, ins, 1)
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return [x]


def _np_squeeze(node, ins):
    axes = _axes_arg(node, ins, 1)
    return [np.squeeze(ins[0], axis=None if axes is None else tuple(axes))]


def _np_reshape(node, ins):
    x, shape = ins[0], [int(d) for d in ins[1]]
    if not node_attrs(node).get("allowzero", 0):   # ONNX Reshape: 0 copies the input's dim unless allowzero
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def _np_slice(node, ins):
    x = ins[0]
    starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
    axes = [int(v) for v in ins[3]] if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=False):
        index[a] = slice(s, e, st)
    return [x[tuple(index)]]


def _np_div(node, ins):
    a, b = ins
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return [(np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(a.dtype)]   # truncates, like C
    return [a / b]


def _np_reduce(fn):
    def run(node, ins):
        axes = _axes_arg(node, ins, 1)
        keep = bool(node_attrs(node).get("keepdims", 1))
        return [fn(ins[0], axis=None if axes is None else tuple(axes), keepdims=keep)]
    return run


def _np_cast(node, ins):
    return [ins[0].astype(onnx_module().helper.tensor_dtype_to_np_dtype(node_attrs(node)["to"]))]


def _np_constant_of_shape(node, ins):
    value = node_attrs(node).get("value")
    fill = to_array(value) if value is not None else np.zeros(1, np.float32)
    return [np.full([int(d) for d in ins[0]], fill.ravel()[0], dtype=fill.dtype)]


def _np_split(node, ins):
    a = node_attrs(node)
    axis, x = a.get("axis", 0), ins[0]
    sizes = a.get("split") or (list(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
    sizes = sizes or equal_split(x.shape[axis], len(node.output), a.get("num_outputs"))
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _binary(fn):
    return lambda node, ins: [fn(ins[0], ins[1])]


def _unary(fn):
    return lambda node, ins: [fn(ins[0])]


FOLDERS: dict[str, Callable] = {
    "Identity": lambda node, ins: [ins[0]],
    "Cast": _np_cast,
    "Gather": lambda node, ins: [np.take(ins[0], ins[1], axis=node_attrs(node).get("axis", 0))],
    "Concat": lambda node, ins: [np.concatenate(ins, axis=node_attrs(node)["axis"])],
    "Unsqueeze": _np_unsqueeze,
    "Squeeze": _np_squeeze,
    "Reshape": _np_reshape,
    "Flatten": lambda node, ins: [ins[0].reshape(prod(ins[0].shape[:node_attrs(node).get("axis", 1)]), -1)],
    "Slice": _np_slice,
    "Split": _np_split,
    "Transpose": lambda node, ins: [np.transpose(ins[0], node_attrs(node).get("perm"))],
    "Expand": lambda node, ins: [np.broadcast_to(ins[0], np.broadcast_shapes(ins[0].shape, tuple(ins[1])))],
    "Tile": lambda node, ins: [np.tile(ins[0], [int(v) for v in ins[1]])],
    "Range": lambda node, ins: [np.arange(ins[0], ins[1], ins[2]).astype(ins[0].dtype)],
    "ConstantOfShape": _np_constant_of_shape,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _np_div,
    "Pow": _binary(np.power), "Mod": _binary(np.mod),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "LessOrEqual": _binary(np.less_equal), "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and), "Or": _binary(np.logical_or), "Not": _unary(np.logical_not),
    "Neg": _unary(np.negative), "Abs": _unary(np.abs), "Sqrt": _unary(np.sqrt), "Reciprocal": _unary(np.reciprocal),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Sign": _unary(np.sign),
    "Where": lambda node, ins: [np.where(ins[0], ins[1], ins[2])],
    "Min": lambda node, ins: [np.minimum.reduce(np.broadcast_arrays(*ins))],
    "Max": lambda node, ins: [np.maximum.reduce(np.broadcast_arrays(*ins))],
    "NonZero": lambda node, ins: [np.array(np.nonzero(ins[0]), dtype=np.int64).reshape(ins[0].ndim, -1)],
    "ReduceProd": _np_reduce(np.prod), "ReduceSum": _np_reduce(np.sum),
    "ReduceMax": _np_reduce(np.max), "ReduceMin": _np_reduce(np.min),
}


def equal_split(size: int, parts: int, num_outputs: int | None) -> list[int]:
    """Split sizes without a `split` input: equal parts, the last smaller (ONNX Split-18 num_outputs rule)."""
    n = num_outputs or parts
    chunk = ceil(size / n)
    return [chunk] * (n - 1) + [size - chunk * (n - 1)]


def fold_output_elems(op_type: str, ins: list) -> int | None:
    """Elements a fold would create, for the ops whose output can be far larger than their inputs (None: not one
    of them, or not computable; the fold then reports what is wrong)."""
    try:
        if op_type == "ConstantOfShape":
            return prod(int(d) for d in np.ravel(ins[0]))
        if op_type == "Range":
            start, limit, delta = (float(np.ravel(v)[0]) for v in ins[:3])
            return max(ceil((limit - start) / delta), 0) if delta else None
        if op_type == "Tile":
            return ins[0].size * prod(int(r) for r in np.ravel(ins[1]))
        if op_type == "Expand":
            return prod(np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in np.ravel(ins[1]))))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None

def early_values(model) -> dict[str, np.ndarray]:
    """Values of small inline initializers and Constant nodes (for pattern matching, before the walk)."""
    out = {}
    for t in model.graph.initializer:
        if has_data(t) and prod(t.dims) <= MAX_FOLD_ELEMS:
            out[t.name] = to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value" and \
                node.attribute[0].t.data_location != 1:       # (external data is read in the walk)
            out[node.output[0]] = to_array(node.attribute[0].t)
    return out
