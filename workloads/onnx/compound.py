"""Handlers of ONNX ops that become several IR ops: opset-23 Attention (laid out as the built-in decoders lay it
out, so --fusion full finds one flash-attention kernel), two-operand Einsum (a batched MatMul between transposes
and reshapes) and DynamicQuantizeLinear (min/max reductions and a quantizing cast); with them the other
transformer ops of opset 23, RMSNormalization and RotaryEmbedding."""
from __future__ import annotations

from math import prod, sqrt

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.workloads.onnx.importer import Importer
from tilesim.workloads.onnx.model import node_attrs


def h_rms_norm(imp: Importer, node) -> None:
    """RMSNormalization (opset 23): X, scale; x / sqrt(mean(x^2) + eps) * scale over the axes from `axis` on."""
    a = node_attrs(node)
    imp.op(node, "RMSNormalization", [t for t in node.input[:2] if t],
           {"axis": a.get("axis", -1), "epsilon": a.get("epsilon", 1e-5)}, outputs=[node.output[0]])


def h_rotary(imp: Importer, node) -> None:
    """RotaryEmbedding (opset 23, or fused from its decomposed form): x rotated; cos/sin caches and position ids
    are tables read on chip (their cost is in the op's 4 ops per element)."""
    imp.op(node, "RotaryEmbedding", [node.input[0]], outputs=[node.output[0]])


# ---------------------------------------------------------------- Attention (opset 23)

def _heads(imp: Importer, node, x: str, heads: int | None, what: str) -> str:
    """A 3-d (B, S, H * d) input viewed as 4-d (B, H, S, d); 4-d inputs pass."""
    shape = imp.shape(x)
    if len(shape) == 4:
        return x
    if len(shape) != 3 or not heads or shape[2] % heads:
        raise InputError(f"{imp.where}: node '{node.name}' (Attention): {what} '{x}' of shape {shape} needs to be "
                         f"4-d (B, heads, S, d), or 3-d with its heads attribute dividing the last dim")
    b, s, hd = shape
    x = imp.op(node, "Reshape", [x], {"shape": (b, s, heads, hd // heads)})[0]
    return imp.op(node, "Transpose", [x], {"perm": (0, 2, 1, 3)})[0]


def _scale_const(imp: Importer, node, value: float) -> str:
    """A scalar constant (the softmax scale) as an IR parameter."""
    name = imp.fresh(f"{node.name}/scale")
    imp.add_static(name, (1,), imp.elem_type(node.input[0]), np.array([value], np.float32))
    return name


def _kv_with_past(imp: Importer, node, new: str, past_index: int, present_index: int) -> str:
    """K or V with the past cache (input `past_index`) concatenated before it on the sequence axis; the result is
    the `present` output when the node names one."""
    if len(node.input) <= past_index or not node.input[past_index]:
        return new
    out = [node.output[present_index]] if len(node.output) > present_index and node.output[present_index] else None
    return imp.op(node, "Concat", [node.input[past_index], new], {"axis": 2}, outputs=out)[0]


def h_attention(imp: Importer, node) -> None:
    """Attention(Q, K, V, attn_mask, past_key, past_value): softmax(scale Q K^T + mask) V per head. Query heads
    sharing a KV head (GQA) are stacked along the rows, as the built-in decoders do (Q (B, Hkv, group*S, d)), so K
    and V are read once per KV head. is_causal adds nothing (the built-ins do not model the causal mask). The
    attribute qk_layout="bshd" (set only by patterns.py, for exported attention) says Q and K are still
    (B, S, heads, d): each then takes one transpose, K straight to K^T, as in the built-ins."""
    a = node_attrs(node)
    if a.get("softcap", 0.0) or a.get("qk_matmul_output_mode", 0) or any(node.output[3:]):
        raise InputError(f"{imp.where}: node '{node.name}' (Attention): softcap and the qk_matmul_output output "
                         "are not supported")
    v = _kv_with_past(imp, node, _heads(imp, node, node.input[2], a.get("kv_num_heads"), "V"), 5, 2)
    if a.get("qk_layout", b"") in (b"bshd", "bshd"):
        q = imp.op(node, "Transpose", [node.input[0]], {"perm": (0, 2, 1, 3)})[0]
        kt = imp.op(node, "Transpose", [node.input[1]], {"perm": (0, 2, 3, 1)})[0]
    else:
        q = _heads(imp, node, node.input[0], a.get("q_num_heads"), "Q")
        k = _kv_with_past(imp, node, _heads(imp, node, node.input[1], a.get("kv_num_heads"), "K"), 4, 1)
        kt = imp.op(node, "Transpose", [k], {"perm": (0, 1, 3, 2)})[0]
    (b, hq, sq, d), (_, hkv, _, skv), dv = imp.shape(q), imp.shape(kt), imp.shape(v)[-1]
    if hkv < 1 or hq % hkv:
        raise InputError(f"{imp.where}: node '{node.name}' (Attention): {hq} query heads are not a multiple of "
                         f"{hkv} KV heads")
    group = hq // hkv
    qg = imp.op(node, "Reshape", [q], {"shape": (b, hkv, group * sq, d)})[0]
    s = imp.op(node, "MatMul", [qg, kt])[0]
    s = imp.op(node, "Mul", [s, _scale_const(imp, node, a.get("scale") or 1 / sqrt(d))])[0]
    if len(node.input) > 3 and node.input[3]:
        s = imp.op(node, "Add", [s, _grouped_mask(imp, node, node.input[3], (b, hkv, group * sq, skv), group)])[0]
    p = imp.op(node, "Softmax", [s], {"axis": -1})[0]
    ctx = imp.op(node, "MatMul", [p, v])[0]
    rank3 = len(imp.shape(node.input[0])) == 3
    ctx = imp.op(node, "Reshape", [ctx], {"shape": (b, hq, sq, dv)}, outputs=None if rank3 else [node.output[0]])[0]
    if rank3:
        ctx = imp.op(node, "Transpose", [ctx], {"perm": (0, 2, 1, 3)})[0]
        imp.op(node, "Reshape", [ctx], {"shape": (b, sq, hq * dv)}, outputs=[node.output[0]])


def _grouped_mask(imp: Importer, node, mask: str, scores: tuple, group: int) -> str:
    """The attention mask laid out as the grouped scores (B, Hkv, group*S, T): a constant mask is made into one
    of that layout (boolean or additive, one element per score either way); a computed (S, T) or (B, 1, S, T) one
    is tiled group times along its rows (data movement)."""
    shape = imp.shape(mask)
    if group == 1 or (len(shape) == 4 and shape[1] == 1 and shape[2] == 1) or len(shape) < 2 or shape[-2] == 1:
        return mask
    if not imp.is_static(mask):
        if len(shape) not in (2, 4) or (len(shape) == 4 and shape[1] != 1):
            raise InputError(f"{imp.where}: node '{node.name}' (Attention): a computed mask of shape {shape} with "
                             f"grouped KV heads (group {group}) is not supported; (S, T) and (B, 1, S, T) are")
        reps = (group, 1) if len(shape) == 2 else (1, 1, group, 1)
        return imp.op(node, "Tile", [mask], {"repeats": reps})[0]
    name = imp.fresh(f"{node.name}/mask")
    b = shape[0] if len(shape) == 4 else 1
    imp.add_static(name, (b, scores[1] if len(shape) == 4 and shape[1] > 1 else 1, scores[2], scores[3]),
                   imp.elem_type(mask))
    return name


# ---------------------------------------------------------------- Einsum

def _einsum_terms(eq: str, shapes: list[tuple]) -> tuple[list[str], str]:
    """Input subscripts and the output's, with '...' spelled out as upper-case letters."""
    lhs, _, rhs = eq.replace(" ", "").partition("->")
    ins = lhs.split(",")
    ell = max((len(s) - len(t.replace("...", "")) for t, s in zip(ins, shapes, strict=True) if "..." in t),
              default=0)
    fill = "".join(chr(ord("A") + i) for i in range(ell))
    ins = [t.replace("...", fill[ell - (len(s) - len(t.replace("...", ""))):]) for t, s in zip(ins, shapes,
                                                                                                strict=True)]
    if "->" not in eq:      # implicit output: the letters seen once, in alphabetical order
        rhs = fill + "".join(sorted(c for c in set("".join(ins)) if "".join(ins).count(c) == 1 and c.islower()))
    return ins, rhs.replace("...", fill)


def h_einsum(imp: Importer, node) -> None:
    """Einsum of two operands that is one contraction: batch letters (in both inputs and the output), M letters
    (first input and output), N letters (second input and output), K letters (both inputs, summed) -> Transpose
    and Reshape each operand to (batch, M, K) and (batch, K, N), one MatMul, then back to the output's layout."""
    eq = node_attrs(node)["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    if len(node.input) != 2:
        raise InputError(f"{imp.where}: node '{node.name}' (Einsum '{eq}'): only two-operand contractions are "
                         "supported (batched matmul, bilinear forms)")
    x, y = node.input
    (ta, tb), tout = _einsum_terms(eq, [imp.shape(x), imp.shape(y)])
    size = dict(zip(ta, imp.shape(x), strict=True)) | dict(zip(tb, imp.shape(y), strict=True))
    batch = [c for c in tout if c in ta and c in tb]
    m = [c for c in tout if c in ta and c not in tb]
    n = [c for c in tout if c in tb and c not in ta]
    k = [c for c in ta if c in tb and c not in tout]
    if len(set(ta)) != len(ta) or len(set(tb)) != len(tb) or set(ta) | set(tb) != set(tout) | set(k):
        raise InputError(f"{imp.where}: node '{node.name}' (Einsum '{eq}'): not a single contraction (a letter is "
                         "repeated within an operand or summed over one operand only); supported: batched matmul "
                         "and bilinear forms such as 'bhid,bhjd->bhij'")
    a = _arrange(imp, node, x, ta, batch + m + k, [size[c] for c in batch] + [_p(size, m), _p(size, k)])
    b = _arrange(imp, node, y, tb, batch + k + n, [size[c] for c in batch] + [_p(size, k), _p(size, n)])
    out = imp.op(node, "MatMul", [a, b])[0]
    order = batch + m + n
    full = tuple(size[c] for c in order)
    perm = tuple(order.index(c) for c in tout)
    if perm == tuple(range(len(perm))):
        imp.op(node, "Reshape", [out], {"shape": full}, outputs=[node.output[0]])
        return
    out = imp.op(node, "Reshape", [out], {"shape": full})[0]
    imp.op(node, "Transpose", [out], {"perm": perm}, outputs=[node.output[0]])


def _p(size: dict, letters: list[str]) -> int:
    return prod(size[c] for c in letters)


def _arrange(imp: Importer, node, x: str, term: str, order: list[str], shape: list[int]) -> str:
    """`x` (subscripts `term`) transposed into `order` and reshaped to `shape`; no op where nothing changes."""
    perm = tuple(term.index(c) for c in order)
    if perm != tuple(range(len(perm))):
        x = imp.op(node, "Transpose", [x], {"perm": perm})[0]
    if tuple(imp.shape(x)) != tuple(shape):
        x = imp.op(node, "Reshape", [x], {"shape": tuple(shape)})[0]
    return x


# ---------------------------------------------------------------- DynamicQuantizeLinear

def h_dynamic_quantize(imp: Importer, node) -> None:
    """DynamicQuantizeLinear(x) -> y (uint8), y_scale, y_zero_point: quantize work of a min and a max over x, the
    scale and zero point from them (scalars), and the quantizing cast of every element."""
    x = node.input[0]
    lo = imp.op(node, "ReduceMin", [x], {"keepdims": 0})[0]
    hi = imp.op(node, "ReduceMax", [x], {"keepdims": 0})[0]
    names = [*node.output, "", ""]
    imp.op(node, "Sub", [hi, lo], outputs=[names[1]] if names[1] else None)
    imp.op(node, "Cast", [lo], {"to": "int8"}, outputs=[names[2]] if names[2] else None, dtype="int8")
    imp.op(node, "Cast", [x], {"to": "int8"}, outputs=[node.output[0]], dtype="int8")
