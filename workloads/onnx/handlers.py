"""Op handlers: one function per ONNX op family that emits IR ops through the Importer, and HANDLERS, the table
from ONNX op type to handler, built from groups of op types that share one (as tinygrad groups its ops)."""
from __future__ import annotations

from collections.abc import Callable
from math import ceil, prod

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.compiler.ops import infer_shapes
from tilesim.workloads.onnx.compound import h_attention, h_dynamic_quantize, h_einsum, h_rms_norm, h_rotary
from tilesim.workloads.onnx.contrib import CONTRIB
from tilesim.workloads.onnx.folding import equal_split
from tilesim.workloads.onnx.importer import AttributeCountError, Importer
from tilesim.workloads.onnx.model import ir_dtype, node_attrs, plain, standard
from tilesim.workloads.onnx.routing import ROUTING


def _auto_pad(node) -> str:
    """The auto_pad attribute: NOTSET (explicit pads), SAME_UPPER, SAME_LOWER or VALID."""
    return plain(node_attrs(node).get("auto_pad", "NOTSET")) or "NOTSET"


def _same_pads(auto: str, x: tuple, kernel: tuple, strides: tuple, dilations: tuple) -> tuple[int, int, int, int]:
    """Pads (t, l, b, r) for auto_pad SAME_* or VALID (ONNX Conv: output = ceil(input / stride); SAME_UPPER puts
    the odd pad at the end, SAME_LOWER at the beginning)."""
    if auto == "VALID":
        return 0, 0, 0, 0
    lo, hi = [], []
    for size, k, s, d in zip(x[2:], kernel, strides, dilations, strict=False):
        out = ceil(size / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        lo.append(small if auto == "SAME_UPPER" else big)
        hi.append(big if auto == "SAME_UPPER" else small)
    return lo[0], lo[1], hi[0], hi[1]


def _as_2d(imp: Importer, node, name: str) -> str:
    """A 3-d (N, C, L) tensor viewed as 4-d (N, C, 1, L), so 1-d convs and pools run as 2-d ones."""
    shape = imp.shape(name)
    return imp.op(node, "Reshape", [name], {"shape": (*shape[:2], 1, *shape[2:])})[0]


def _spatial(node, imp: Importer, x: str, w: str | None) -> tuple[str, str | None, bool]:
    """(x, w, was_1d): 1-d operands viewed as 2-d; anything but 1-d or 2-d is an error, and so is a weight whose
    rank differs from the input's."""
    rank = len(imp.shape(x))
    if w is not None and len(imp.shape(w)) != rank:
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): weight '{w}' has shape "
                         f"{imp.shape(w)} but input '{x}' has shape {imp.shape(x)}; their ranks must agree")
    if rank == 4:
        return x, w, False
    if rank == 3:
        return _as_2d(imp, node, x), _as_2d(imp, node, w) if w else None, True
    raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): only 1-d and 2-d spatial ops are "
                     f"supported, input has shape {imp.shape(x)}")


def _pair(values, was_1d: bool, default: int, name: str = "") -> tuple[int, int]:
    """A 2-d attribute from a 1-d or 2-d one."""
    if values is None:
        return default, default
    values = list(values)
    if len(values) != (1 if was_1d else 2):
        raise AttributeCountError(f"attribute '{name}' has {len(values)} values, expected {1 if was_1d else 2} "
                                  "(one per spatial dimension of the input)")
    return (default, values[0]) if was_1d else (values[0], values[1])


def _pads4(values, was_1d: bool) -> tuple[int, int, int, int]:
    """2-d pads (t, l, b, r) from ONNX pads (begins then ends)."""
    if len(values) != (2 if was_1d else 4):
        raise AttributeCountError(f"attribute 'pads' has {len(values)} values, expected {2 if was_1d else 4} "
                                  "(a begin and an end per spatial dimension of the input)")
    if was_1d:
        return 0, values[0], 0, values[1]
    return tuple(values)


def _finish(imp: Importer, node, op_type: str, ins: list[str], attrs: dict, was_1d: bool) -> None:
    """Emit the op into the node's first output, viewing a 1-d result back as 3-d."""
    if not was_1d:
        imp.op(node, op_type, ins, attrs, outputs=[node.output[0]])
        return
    y = imp.op(node, op_type, ins, attrs)[0]
    n, k, _, f = imp.shape(y)
    imp.op(node, "Reshape", [y], {"shape": (n, k, f)}, outputs=[node.output[0]])


def _conv_like(imp: Importer, node, x: str, w: str, bias: str | None) -> None:
    """Conv (1-d or 2-d, grouped, depthwise, dilated, explicit or auto padding) with optional bias."""
    x4, w4, was_1d = _spatial(node, imp, x, w)
    a = node_attrs(node)
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    dilations = _pair(a.get("dilations"), was_1d, 1, "dilations")
    kernel = imp.shape(w4)[2:]
    if _auto_pad(node) != "NOTSET":
        pads = _same_pads(_auto_pad(node), imp.shape(x4), kernel, strides, dilations)
    else:
        pads = _pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d)
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(a.get("group", 1))}
    _finish(imp, node, "Conv", [x4, w4] + ([bias] if bias else []), attrs, was_1d)


def h_conv(imp: Importer, node) -> None:
    """Conv: X, W, optional B."""
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    _conv_like(imp, node, node.input[0], node.input[1], bias)


def h_conv_transpose(imp: Importer, node) -> None:
    """ConvTranspose: pads from `pads`, or from `output_shape`/`auto_pad` as the ONNX operator spec says."""
    x4, w4, was_1d = _spatial(node, imp, node.input[0], node.input[1])
    a = node_attrs(node)
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    dil = _pair(a.get("dilations"), was_1d, 1, "dilations")
    out_pad = list(_pair(a.get("output_padding"), was_1d, 0, "output_padding"))
    r, s = imp.shape(w4)[2:]
    pads = list(_pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d))
    auto = _auto_pad(node)
    wanted = a.get("output_shape")
    if wanted is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        h, w = imp.shape(x4)[2:]
        wanted = _pair(wanted, was_1d, 1, "output_shape") if wanted is not None else (h * strides[0], w * strides[1])
        for i, (size, k, st, d) in enumerate(zip((h, w), (r, s), strides, dil, strict=False)):
            # spec: total_padding = stride * (in - 1) + output_padding + ((kernel - 1) * dilation + 1) - out;
            # SAME_UPPER: pads[start] = total / 2, pads[end] = total - total / 2; otherwise the other way round
            total = st * (size - 1) + out_pad[i] + (k - 1) * d + 1 - wanted[i]
            if total < 0:    # a larger output_shape than the kernel reaches: the rest is output padding
                out_pad[i] -= total
                total = 0
            first = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[i + 2] = first, total - first
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    attrs = {"strides": strides, "pads": tuple(pads), "dilations": dil, "group": int(a.get("group", 1)),
                 "output_padding": tuple(out_pad)}
    _finish(imp, node, "ConvTranspose", [x4, w4] + ([bias] if bias else []), attrs, was_1d)


def h_pool(imp: Importer, node) -> None:
    """MaxPool / AveragePool (1-d or 2-d); ceil_mode becomes extra end padding, which gives the same size."""
    x4, _, was_1d = _spatial(node, imp, node.input[0], None)
    a = node_attrs(node)
    kernel = _pair(a["kernel_shape"], was_1d, 1, "kernel_shape")
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    if any(d != 1 for d in a.get("dilations", [1])):
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): dilated pooling is not supported")
    if _auto_pad(node) != "NOTSET":
        pads = list(_same_pads(_auto_pad(node), imp.shape(x4), kernel, strides, (1, 1)))
    else:
        pads = list(_pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d))
    if a.get("ceil_mode", 0):
        size = imp.shape(x4)[2:]
        for i in range(2):   # ceil output, the last window starting inside the input or its start padding
            span = size[i] + pads[i] + pads[i + 2] - kernel[i]
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= size[i] + pads[i]:
                out -= 1
            pads[i + 2] += max(0, (out - 1) * strides[i] + kernel[i] - (size[i] + pads[i] + pads[i + 2]))
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": tuple(pads)}
    _finish(imp, node, node.op_type, [x4], attrs, was_1d)


def h_same(keep: tuple[str, ...] = ()):
    """A one-input op of the same name in the IR (the attributes named in `keep` are carried over)."""
    def run(imp: Importer, node) -> None:
        a = node_attrs(node)
        imp.op(node, node.op_type, [node.input[0]], {k: plain(a[k]) for k in keep if k in a},
               outputs=[node.output[0]])
    return run


def h_broadcast(imp: Importer, node) -> None:
    """Add, Sub, Mul, Div, Pow, MatMul: two inputs."""
    imp.op(node, node.op_type, list(node.input[:2]), outputs=[node.output[0]])


def h_variadic(imp: Importer, node) -> None:
    """Max, Min: any number of broadcast inputs."""
    imp.op(node, node.op_type, [t for t in node.input if t], outputs=[node.output[0]])


MASK_FILL = -1e4     # fills at or below this (-inf, float min, -1e9 ...) make a Where a mask


def h_where(imp: Importer, node) -> None:
    """Where(cond, x, y). With a constant condition and a scalar of -inf (or below MASK_FILL) on one side (an
    attention mask: scores where allowed, -inf elsewhere) it is an additive mask, one add per element with the
    mask read once: Add(x, mask), the activation first, as the built-in attention writes its score chain."""
    cond, x, y = node.input[:3]
    masked = [t for t in (x, y) if not imp.is_static(t)]
    fill = [t for t in (x, y) if imp.is_static(t) and imp.value(t) is not None and imp.value(t).size == 1
            and float(np.ravel(imp.value(t))[0]) <= MASK_FILL]
    if imp.is_static(cond) and len(masked) == 1 and len(fill) == 1 and \
            imp.shape(masked[0]) == tuple(np.broadcast_shapes(*(imp.shape(t) for t in (cond, x, y)))):
        imp.op(node, "Add", [masked[0], cond], outputs=[node.output[0]], dtype=imp.dtype(masked[0]))
        return
    imp.op(node, "Where", list(node.input[:3]), outputs=[node.output[0]])


def h_clip(imp: Importer, node) -> None:
    """Clip: min and max are attributes before opset 11 and optional inputs from 11 on."""
    a = node_attrs(node)
    lo = imp.const(node, 1, "min") if len(node.input) > 1 else a.get("min")
    hi = imp.const(node, 2, "max") if len(node.input) > 2 else a.get("max")
    attrs = {k: float(np.ravel(v)[0]) for k, v in (("min", lo), ("max", hi)) if v is not None}
    imp.op(node, "Clip", [node.input[0]], attrs, outputs=[node.output[0]])


def h_cast(imp: Importer, node) -> None:
    """Cast: a vector op, or a free view when source and target have the same IR dtype."""
    to = ir_dtype(node_attrs(node)["to"], imp.override, f"{imp.where}: node '{node.name}'")
    x = node.input[0]
    if not imp.is_static(x) and imp.dtype(x) == to:
        imp.op(node, "Identity", [x], outputs=[node.output[0]], dtype=to)
    else:
        imp.op(node, "Cast", [x], {"to": to}, outputs=[node.output[0]], dtype=to)


def h_batchnorm(imp: Importer, node) -> None:
    """BatchNormalization in inference mode (X, scale, B, mean, var)."""
    if node_attrs(node).get("training_mode", 0) or any(node.output[1:]):
        raise InputError(f"{imp.where}: node '{node.name}' (BatchNormalization): training mode (running "
                         "statistics outputs) is not supported; export in eval mode")
    imp.op(node, "BatchNormalization", list(node.input[:5]), {"epsilon": node_attrs(node).get("epsilon", 1e-5)},
           outputs=[node.output[0]])


def h_layernorm(imp: Importer, node) -> None:
    """LayerNormalization (X, Scale, optional B); the Mean / InvStdDev outputs are training-only."""
    if any(node.output[1:]):
        raise InputError(f"{imp.where}: node '{node.name}' (LayerNormalization): the Mean and InvStdDev outputs "
                         "are not supported")
    a = node_attrs(node)
    ins = [t for t in node.input if t]
    imp.op(node, "LayerNormalization", ins, {"axis": a.get("axis", -1), "epsilon": a.get("epsilon", 1e-5)},
           outputs=[node.output[0]])


def h_softmax(imp: Importer, node) -> None:
    """Softmax; the default axis is 1 before opset 13 and -1 from 13 on (the cost does not depend on it)."""
    axis = node_attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    imp.op(node, "Softmax", [node.input[0]], {"axis": axis}, outputs=[node.output[0]])


def h_gelu(imp: Importer, node) -> None:
    """Gelu (opset 20, or fused from its decomposed form): 'none' (erf) or 'tanh' approximation."""
    imp.op(node, "Gelu", [node.input[0]], {"approximate": plain(node_attrs(node).get("approximate", "none"))},
           outputs=[node.output[0]])


def h_reduce(imp: Importer, node) -> None:
    """ReduceMean/Sum/Max/Min: axes an attribute before opset 18 (ReduceSum: 13), an optional input after; the
    other reductions (REDUCED_AS) as an elementwise op before a ReduceSum and one after it."""
    a = node_attrs(node)
    axes = [int(v) for v in a["axes"]] if "axes" in a else imp.ints(node, 1, "axes")
    axes = axes or None                       # absent or empty: every axis, unless noop_with_empty_axes
    if axes is None and a.get("noop_with_empty_axes", 0):
        imp.alias(node, node.input[0], node.output[0])
        return
    attrs = {"keepdims": int(a.get("keepdims", 1))}
    if axes is not None:
        attrs["axes"] = tuple(axes)
    before, after = REDUCED_AS.get(node.op_type, (None, None))
    x = node.input[0]
    if before is not None:
        x = imp.op(node, before, [x, x] if before == "Mul" else [x])[0]
    op_type = "ReduceSum" if node.op_type in REDUCED_AS else node.op_type
    y = imp.op(node, op_type, [x], attrs, outputs=None if after else [node.output[0]])[0]
    if after is not None:
        imp.op(node, after, [y], outputs=[node.output[0]])


# reductions made of a ReduceSum between elementwise ops: (op on x before it, op on the sums after it)
REDUCED_AS = {"ReduceL2": ("Mul", "Sqrt"), "ReduceL1": ("Abs", None), "ReduceSumSquare": ("Mul", None),
              "ReduceLogSum": (None, "Log"), "ReduceLogSumExp": ("Exp", "Log")}


def h_gemm(imp: Importer, node) -> None:
    """Gemm(A, B, optional C): alpha and beta are scalings folded into the weights."""
    a = node_attrs(node)
    ins = [t for t in node.input[:3] if t]
    imp.op(node, "Gemm", ins, {"transA": a.get("transA", 0), "transB": a.get("transB", 0)}, outputs=[node.output[0]])


def h_transpose(imp: Importer, node) -> None:
    """Transpose (default perm reverses the axes)."""
    perm = node_attrs(node).get("perm")
    attrs = {"perm": tuple(perm)} if perm is not None else {}
    imp.op(node, "Transpose", [node.input[0]], attrs, outputs=[node.output[0]])


def h_reshape(imp: Importer, node) -> None:
    """Reshape to a constant (folded) shape; 0 copies the input dim unless allowzero=1 (ONNX Reshape-14)."""
    shape = imp.ints(node, 1, "shape")
    x = imp.shape(node.input[0])
    if not node_attrs(node).get("allowzero", 0):
        shape = [x[i] if d == 0 else d for i, d in enumerate(shape)]
    imp.op(node, "Reshape", [node.input[0]], {"shape": tuple(shape)}, outputs=[node.output[0]])


def h_flatten(imp: Importer, node) -> None:
    """Flatten to 2-d at `axis` (negative counts from the end: ONNX Flatten-11)."""
    rank = len(imp.shape(node.input[0]))
    axis = node_attrs(node).get("axis", 1)
    imp.op(node, "Flatten", [node.input[0]], {"axis": axis + rank if axis < 0 else axis}, outputs=[node.output[0]])


def h_squeeze(imp: Importer, node) -> None:
    """Squeeze: axes an attribute before opset 13, an optional input from 13 on."""
    a = node_attrs(node)
    axes = a.get("axes") if "axes" in a else imp.ints(node, 1, "axes")
    imp.op(node, "Squeeze", [node.input[0]], {"axes": tuple(axes)} if axes else {},   # none: every unit axis
           outputs=[node.output[0]])


def h_unsqueeze(imp: Importer, node) -> None:
    """Unsqueeze: axes an attribute before opset 13, an input from 13 on."""
    a = node_attrs(node)
    axes = a.get("axes") if "axes" in a else imp.ints(node, 1, "axes")
    imp.op(node, "Unsqueeze", [node.input[0]], {"axes": tuple(axes)}, outputs=[node.output[0]])


def h_concat(imp: Importer, node) -> None:
    """Concat along `axis`; empty inputs (an exported `cat(x_rot, x_pass)` whose pass-through part has no
    columns) add nothing, so one non-empty input is the output itself (a view)."""
    ins = [t for t in node.input if t and prod(imp.shape(t))] or [t for t in node.input if t][:1]
    if len(ins) == 1:
        imp.alias(node, ins[0], node.output[0])
        return
    imp.op(node, "Concat", ins, {"axis": node_attrs(node)["axis"]}, outputs=list(node.output))


def h_split(imp: Importer, node) -> None:
    """Split: sizes an attribute before opset 13, an optional input from 13 on, or num_outputs (18)."""
    a = node_attrs(node)
    axis, shape = a.get("axis", 0), imp.shape(node.input[0])
    if not -len(shape) <= axis < len(shape):
        raise InputError(f"{imp.where}: node '{node.name}' (Split): axis {axis} is out of range for input shape "
                         f"{shape}")
    size = shape[axis]
    sizes = a.get("split") or imp.ints(node, 1, "split") or equal_split(size, len(node.output), a.get("num_outputs"))
    outs = [t or imp.fresh(f"{node.name}/unused") for t in node.output]
    imp.op(node, "Split", [node.input[0]], {"axis": axis, "split": tuple(sizes)}, outputs=outs)


def h_slice(imp: Importer, node) -> None:
    """Slice: starts/ends/axes/steps attributes before opset 10, inputs from 10 on."""
    a = node_attrs(node)
    if "starts" in a:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = imp.ints(node, 1, "starts"), imp.ints(node, 2, "ends")
        axes = imp.ints(node, 3, "axes") or list(range(len(starts)))
        steps = imp.ints(node, 4, "steps") or [1] * len(starts)
    shape = imp.shape(node.input[0])
    if all(st == 1 for st in steps) and \
            infer_shapes("Slice", node.name, [shape], {"starts": starts, "ends": ends, "axes": axes})[0] == shape:
        imp.alias(node, node.input[0], node.output[0])     # it keeps every element (exported x[..., :rotary_dim]
        return                                             # with rotary_dim = head_dim): the tensor itself
    imp.op(node, "Slice", [node.input[0]], {"starts": starts, "ends": ends, "axes": axes, "steps": steps},
           outputs=[node.output[0]])


def h_gather(imp: Importer, node) -> None:
    """Gather rows (embedding lookups, picking a token): data, indices. One matrix picked from a stack of weights
    by an index computed at run time (an MoE expert's weights, exported HF experts loop: routing.py) is the weights
    of that matrix's shape, as the built-in MoE layers read an expert's weights: addressing, not a copy."""
    data, idx = node.input[:2]
    axis = node_attrs(node).get("axis", 0)
    if imp.is_static(data) and len(imp.shape(data)) >= 3 and axis == 0 and not imp.is_static(idx) and \
            imp.shape(idx) == ():
        imp.add_static(node.output[0], imp.shape(data)[1:], imp.elem_type(data))
        return
    imp.op(node, "Gather", [data, idx], {"axis": axis}, outputs=[node.output[0]])


def h_expand(imp: Importer, node) -> None:
    """Expand to a constant shape (bidirectional broadcast, as the ONNX spec says)."""
    imp.op(node, "Expand", [node.input[0]], {"shape": tuple(imp.ints(node, 1, "shape"))}, outputs=[node.output[0]])


def h_pad(imp: Importer, node) -> None:
    """Pad (any mode): pads an attribute before opset 11, an input from 11 on, over `axes` (an input from 18)."""
    a = node_attrs(node)
    rank = len(imp.shape(node.input[0]))
    pads = list(a["pads"]) if "pads" in a else imp.ints(node, 1, "pads")
    axes = imp.ints(node, 3, "axes") if "pads" not in a else None
    if axes is not None:     # pads given for these axes only: begins then ends
        full = [0] * (2 * rank)
        for i, ax in enumerate(axes):
            full[ax % rank], full[ax % rank + rank] = pads[i], pads[i + len(axes)]
        pads = full
    imp.op(node, "Pad", [node.input[0]], {"pads": tuple(pads)}, outputs=[node.output[0]])


def h_tile(imp: Importer, node) -> None:
    """Tile by constant repeats."""
    imp.op(node, "Tile", [node.input[0]], {"repeats": tuple(imp.ints(node, 1, "repeats"))}, outputs=[node.output[0]])


def h_gather_like(imp: Importer, node) -> None:
    """GatherND (batch_dims), GatherElements (axis), ScatterND: data movement of the elements they pick or write."""
    keep = {k: v for k, v in node_attrs(node).items() if k in ("batch_dims", "axis")}
    imp.op(node, node.op_type, [t for t in node.input if t], keep, outputs=[node.output[0]])


def h_identity(imp: Importer, node) -> None:
    """Identity: a free view."""
    imp.alias(node, node.input[0], node.output[0])


def h_dropout(imp: Importer, node) -> None:
    """Dropout at inference is the identity (ratio an attribute before opset 12, an input from 12)."""
    if len(node.output) > 1 and node.output[1]:
        raise InputError(f"{imp.where}: node '{node.name}' (Dropout): the mask output is not supported")
    imp.op(node, "Dropout", [node.input[0]], outputs=[node.output[0]])


def h_quantize(imp: Importer, node) -> None:
    """QuantizeLinear: a Cast to the zero point's type (uint8 by default, as in the spec)."""
    et = imp.elem_type(node.input[2]) if len(node.input) > 2 and node.input[2] else 2
    to = ir_dtype(et, imp.override, f"{imp.where}: node '{node.name}'")
    imp.op(node, "Cast", [node.input[0]], {"to": to}, outputs=[node.output[0]], dtype=to)


def h_dequantize(imp: Importer, node) -> None:
    """DequantizeLinear: free, and its output keeps the quantized type (the consumer computes in int8)."""
    x = node.input[0]
    if imp.is_static(x):
        s = imp.static[x]
        imp.add_static(node.output[0], s.shape, s.elem_type)
        return
    imp.op(node, "Identity", [x], outputs=[node.output[0]], dtype=imp.dtype(x))


def h_qlinear_conv(imp: Importer, node) -> None:
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B): Conv on the int8 operands."""
    bias = node.input[8] if len(node.input) > 8 and node.input[8] else None
    _conv_like(imp, node, node.input[0], node.input[3], bias)


def h_conv_integer(imp: Importer, node) -> None:
    """ConvInteger(x, w, x_zp, w_zp): Conv on int8 operands with an int32 output."""
    _conv_like(imp, node, node.input[0], node.input[1], None)


def h_qlinear_matmul(imp: Importer, node) -> None:
    """QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp): MatMul on the int8 operands."""
    imp.op(node, "MatMul", [node.input[0], node.input[3]], outputs=[node.output[0]])


def h_matmul_integer(imp: Importer, node) -> None:
    """MatMulInteger(a, b, a_zp, b_zp): MatMul on int8 operands with an int32 output."""
    imp.op(node, "MatMul", [node.input[0], node.input[1]], outputs=[node.output[0]])


# ---------------------------------------------------------------- the table

UNARY = ("Relu", "Sigmoid", "Silu", "Tanh", "Erf", "Sqrt", "HardSwish", "GlobalAveragePool",   # one input, same op
         "Neg", "Reciprocal", "Exp", "Log", "Abs", "Sin", "Cos", "IsNaN", "IsInf", "Not", "Floor", "Ceil")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "MatMul", "Mod",                           # two broadcast inputs
          "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")
VARIADIC = ("Max", "Min")
REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", *REDUCED_AS)
POOLS = ("MaxPool", "AveragePool")
MOVES = {"Pad": h_pad, "Tile": h_tile, "GatherND": h_gather_like, "GatherElements": h_gather_like,
         "ScatterND": h_gather_like}
QUANTIZED = {"QuantizeLinear": h_quantize, "DequantizeLinear": h_dequantize, "QLinearConv": h_qlinear_conv,
             "QLinearMatMul": h_qlinear_matmul, "ConvInteger": h_conv_integer, "MatMulInteger": h_matmul_integer}
SHAPE_OPS = {"Transpose": h_transpose, "Reshape": h_reshape, "Flatten": h_flatten, "Squeeze": h_squeeze,
             "Unsqueeze": h_unsqueeze, "Concat": h_concat, "Split": h_split, "Slice": h_slice, "Gather": h_gather,
             "Expand": h_expand, "Identity": h_identity, "Dropout": h_dropout}

HANDLERS: dict[str, Callable[[Importer, object], None]] = {
    **dict.fromkeys(UNARY, h_same()), **dict.fromkeys(BINARY, h_broadcast), **dict.fromkeys(POOLS, h_pool),
    **dict.fromkeys(VARIADIC, h_variadic), **dict.fromkeys(REDUCTIONS, h_reduce),
    "HardSigmoid": h_same(keep=("alpha", "beta")), "LeakyRelu": h_same(keep=("alpha",)),
    "Conv": h_conv, "ConvTranspose": h_conv_transpose, "BatchNormalization": h_batchnorm, "Gemm": h_gemm,
    "Gelu": h_gelu, "Clip": h_clip, "Cast": h_cast, "Where": h_where,
    "Softmax": h_softmax, "LayerNormalization": h_layernorm,
    **SHAPE_OPS, **MOVES, **QUANTIZED, **ROUTING,
    "RMSNormalization": h_rms_norm, "RotaryEmbedding": h_rotary, "Attention": h_attention, "Einsum": h_einsum,
    "DynamicQuantizeLinear": h_dynamic_quantize,
}
# com.microsoft (ONNX Runtime) ops: a few standard ones under that domain too, then the contrib ops
MICROSOFT = {**{t: HANDLERS[t] for t in ("Gelu", "QuantizeLinear", "DequantizeLinear", "QLinearConv",
                                         "QLinearMatMul")}, **CONTRIB}


def handler_for(node) -> Callable[[Importer, object], None] | None:
    """The handler of a node's op type, or None."""
    if standard(node):
        return HANDLERS.get(node.op_type)
    return MICROSOFT.get(node.op_type) if node.domain == "com.microsoft" else None
