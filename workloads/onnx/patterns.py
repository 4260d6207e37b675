"""Decomposed subgraphs that exporters write for fused ops, found in the node list and replaced by the fused node:
LayerNorm (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div [* gamma + beta]), RMSNorm (Pow/ReduceMean/Add/Sqrt and Div or
Reciprocal/Mul [* gamma]), GELU (0.5 x (1 + erf(x / sqrt 2))), SiLU (x * sigmoid(x)), rotary embeddings
(x cos + rotate_half(x) sin) and the NaN guard after an exported softmax."""
from __future__ import annotations

from collections.abc import Callable
from math import isclose

import numpy as np


def _near(value, target: float) -> bool:
    """True for a scalar (or one-element) constant close to `target`."""
    return value is not None and np.size(value) == 1 and isclose(float(np.ravel(value)[0]), target, rel_tol=1e-3)


class Patterns:
    """Finds decomposed LayerNorm and GELU subgraphs in a node list and replaces each with the fused node."""

    def __init__(self, nodes: list, value: Callable[[str], np.ndarray | None], static: Callable[[str], bool],
                 outputs: set[str], make_node):
        self.nodes, self.value, self.static, self.make_node = nodes, value, static, make_node
        self.consumers: dict[str, list] = {}
        self.producer = {}
        for n in nodes:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
            for t in n.output:
                self.producer[t] = n
        self.outputs = outputs

    def only_consumer(self, tensor: str, op_type: str | None = None):
        """The single consumer of `tensor` (of `op_type` if given), or None; graph outputs have none."""
        users = self.consumers.get(tensor, [])
        if tensor in self.outputs or len(users) != 1 or (op_type and users[0].op_type != op_type):
            return None
        return users[0]

    def other(self, node, tensor: str) -> str | None:
        """The input of a binary node that is not `tensor`."""
        if len(node.input) != 2 or tensor not in node.input:
            return None
        return node.input[1] if node.input[0] == tensor else node.input[0]

    def gelu(self, erf):
        """0.5 * x * (1 + erf(x / sqrt(2))) in any association order -> (region, fused node)."""
        div = self.producer.get(erf.input[0])
        if div is None or div.op_type not in ("Div", "Mul") or self.only_consumer(div.output[0]) is not erf:
            return None
        x, c = div.input[0], div.input[1]
        if not _near(self.value(c), 2 ** 0.5 if div.op_type == "Div" else 2 ** -0.5):
            return None
        found = self.half_x_times_one_plus(erf, x, [div])
        return (found[0], self.make_node("Gelu", [x], [found[1]], name=found[0][-1].name, approximate="none")) \
            if found else None

    def gelu_tanh(self, tanh):
        """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) (GPT-2's gelu_new, torch's tanh GELU decomposed)
        -> (region, fused Gelu node with approximate='tanh')."""
        scale = self.producer.get(tanh.input[0])
        if scale is None or scale.op_type != "Mul" or self.only_consumer(scale.output[0]) is not tanh:
            return None
        inner = next((t for t in scale.input if _near(self.value(self.other(scale, t)), (2 / np.pi) ** 0.5)), None)
        add = self.producer.get(inner) if inner else None
        if add is None or add.op_type != "Add" or self.only_consumer(add.output[0]) is not scale:
            return None
        for x in add.input:
            cubic = self.producer.get(self.other(add, x) or "")
            if cubic is None or cubic.op_type != "Mul" or self.only_consumer(cubic.output[0]) is not add:
                continue
            pow_ = next((self.producer.get(t) for t in cubic.input if _near(self.value(self.other(cubic, t)),
                                                                            0.044715)), None)
            if pow_ is not None and pow_.op_type == "Pow" and pow_.input[0] == x and \
                    _near(self.value(pow_.input[1]), 3.0) and self.only_consumer(pow_.output[0]) is cubic:
                found = self.half_x_times_one_plus(tanh, x, [pow_, cubic, add, scale])
                if found:
                    return found[0], self.make_node("Gelu", [x], [found[1]], name=found[0][-1].name,
                                                    approximate="tanh")
        return None

    def half_x_times_one_plus(self, f, x: str, region: list):
        """The common tail of both GELU forms, 0.5 * x * (1 + f) in any association order, after node f ->
        (region with f and the tail, output tensor), or None."""
        add = self.only_consumer(f.output[0], "Add")
        if add is None or not _near(self.value(self.other(add, f.output[0])), 1.0):
            return None
        region, t, have_x, have_half = [*region, f, add], add.output[0], False, False
        while not (have_x and have_half):
            mul = self.only_consumer(t, "Mul")
            if mul is None:
                return None
            o = self.other(mul, t)
            half = self.producer.get(o)
            if o == x and not have_x:
                have_x = True
            elif _near(self.value(o), 0.5) and not have_half:
                have_half = True
            elif (half is not None and half.op_type == "Mul" and not have_x and not have_half and x in half.input
                  and _near(self.value(self.other(half, x)), 0.5) and self.only_consumer(o) is mul):
                region.append(half)
                have_x = have_half = True
            else:
                return None
            region.append(mul)
            t = mul.output[0]
        return region, t

    def reduce_axes(self, node) -> list[int] | None:
        """A ReduceMean's axes (attribute before opset 18, input from 18), None if not constant."""
        for a in node.attribute:
            if a.name == "axes":
                return list(a.ints)
        return [int(v) for v in np.ravel(self.value(node.input[1]))] if len(node.input) > 1 and \
            self.value(node.input[1]) is not None else None

    def layernorm(self, mean):
        """(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* gamma [+ beta]] -> (region, fused node)."""
        axes = self.reduce_axes(mean)
        if not axes or any(a >= 0 for a in axes) or sorted(axes) != list(range(-len(axes), 0)):
            return None   # only trailing axes, written negative as exporters do, map onto LayerNormalization
        x = mean.input[0]
        sub = self.only_consumer(mean.output[0], "Sub")
        if sub is None or list(sub.input) != [x, mean.output[0]]:
            return None
        users = self.consumers.get(sub.output[0], [])
        pow_ = next((u for u in users if u.op_type == "Pow" and _near(self.value(u.input[1]), 2.0)), None)
        div = next((u for u in users if u.op_type == "Div" and u.input[0] == sub.output[0]), None)
        if len(users) != 2 or pow_ is None or div is None or sub.output[0] in self.outputs:
            return None
        var = self.only_consumer(pow_.output[0], "ReduceMean")
        if var is None or self.reduce_axes(var) != axes:
            return None
        add = self.only_consumer(var.output[0], "Add")   # + epsilon (exporters drop it when it is 0 in fp32)
        eps = self.value(self.other(add, var.output[0])) if add is not None else np.zeros(1)
        sqrt = self.only_consumer((add or var).output[0], "Sqrt") if eps is not None and np.size(eps) == 1 else None
        if sqrt is None or self.only_consumer(sqrt.output[0]) is not div or div.input[1] != sqrt.output[0]:
            return None
        region, t, params = [mean, sub, pow_, var] + [add] * (add is not None) + [sqrt, div], div.output[0], []
        for op_type in ("Mul", "Add"):   # the optional affine part: * gamma, then + beta
            nxt = self.only_consumer(t, op_type)
            p = self.other(nxt, t) if nxt is not None else None
            if p is None or not self.static(p):
                break
            region.append(nxt)
            params.append(p)
            t = nxt.output[0]
        return region, self.make_node("LayerNormalization", [x, *params], [t], name=region[-1].name,
                                      axis=min(axes), epsilon=float(np.ravel(eps)[0]))

    def rmsnorm(self, pow_):
        """x / sqrt(mean(x^2) + eps) [* gamma], the division written as Div, or as Reciprocal or Div(1, .) and a Mul
        (torch's rsqrt); HF's float32 round trip (Cast of x before, Cast of the result before gamma) included ->
        (region, fused RMSNormalization node)."""
        if not _near(self.value(pow_.input[1]), 2.0):
            return None
        x = pow_.input[0]
        mean = self.only_consumer(pow_.output[0], "ReduceMean")
        axes = self.reduce_axes(mean) if mean is not None else None
        if not axes or any(a >= 0 for a in axes) or sorted(axes) != list(range(-len(axes), 0)):
            return None
        add = self.only_consumer(mean.output[0], "Add")
        eps = self.value(self.other(add, mean.output[0])) if add is not None else np.zeros(1)
        sqrt = self.only_consumer((add or mean).output[0], "Sqrt") if eps is not None and np.size(eps) == 1 else None
        if sqrt is None:
            return None
        region = [pow_, mean] + [add] * (add is not None) + [sqrt]
        div = self.only_consumer(sqrt.output[0])
        if div is not None and div.op_type == "Div" and list(div.input) == [x, sqrt.output[0]]:
            region.append(div)
        elif div is not None and (div.op_type == "Reciprocal" or (
                div.op_type == "Div" and list(div.input)[1:] == [sqrt.output[0]] and _near(self.value(div.input[0]),
                                                                                            1.0))):
            mul = self.only_consumer(div.output[0], "Mul")
            if mul is None or self.other(mul, div.output[0]) != x:
                return None
            region += [div, mul]
        else:
            return None
        t, params = region[-1].output[0], []
        cast = self.producer.get(x)
        if cast is not None and cast.op_type == "Cast" and \
                {id(n) for n in self.consumers.get(x, [])} == {id(pow_), id(region[-1])}:
            region.append(cast)         # the float32 copy of x is the norm's own (read once)
            x = cast.input[0]
        while (after := self.only_consumer(t, "Cast")) is not None:
            region.append(after)
            t = after.output[0]
        scale = self.only_consumer(t, "Mul")
        p = self.other(scale, t) if scale is not None else None
        if p is not None and self.static(p):
            region.append(scale)
            params.append(p)
            t = scale.output[0]
        return region, self.make_node("RMSNormalization", [x, *params], [t], name=region[-1].name,
                                      axis=min(axes), epsilon=float(np.ravel(eps)[0]))

    def nan_guard(self, isnan):
        """Where(IsNaN(p), 0, p), which torch's attention export puts after Softmax, is p (a softmax has no NaNs
        unless its input has) -> (region, Identity node)."""
        p = isnan.input[0]
        where = self.only_consumer(isnan.output[0], "Where")
        if where is None or list(where.input[::2]) != [isnan.output[0], p] or not _near(self.value(where.input[1]),
                                                                                         0.0):
            return None
        return [isnan, where], self.make_node("Identity", [p], [where.output[0]], name=where.name)

    def silu(self, sigmoid):
        """x * sigmoid(x) (torch's SiLU, the gate of SwiGLU MLPs) -> (region, fused Silu node)."""
        x = sigmoid.input[0]
        mul = self.only_consumer(sigmoid.output[0], "Mul")
        if mul is None or self.other(mul, sigmoid.output[0]) != x:
            return None
        return [sigmoid, mul], self.make_node("Silu", [x], [mul.output[0]], name=mul.name)

    def rope(self, neg):
        """Rotary embedding as exporters write it (Su et al. 2021, arXiv:2104.09864; HF apply_rotary_pos_emb):
        x * cos + Concat(-x2, x1) * sin with x1, x2 the two halves of x's last axis -> (region, RotaryEmbedding)."""
        hi = self.producer.get(neg.input[0])
        cat = self.only_consumer(neg.output[0], "Concat")
        if hi is None or hi.op_type != "Slice" or cat is None or len(cat.input) != 2 or cat.input[0] != neg.output[0]:
            return None
        lo, x = self.producer.get(cat.input[1]), hi.input[0]
        if lo is None or lo.op_type != "Slice" or lo.input[0] != x or self.only_consumer(hi.output[0]) is not neg \
                or self.only_consumer(lo.output[0]) is not cat:
            return None
        rot = self.only_consumer(cat.output[0], "Mul")
        add = self.only_consumer(rot.output[0], "Add") if rot is not None else None
        direct = self.producer.get(self.other(add, rot.output[0])) if add is not None else None
        if direct is None or direct.op_type != "Mul" or x not in direct.input or \
                self.only_consumer(direct.output[0]) is not add:
            return None
        region = [hi, lo, neg, cat, rot, direct, add]
        heads = self.producer.get(x)
        if heads is not None and heads.op_type == "Transpose" and _perm(heads) == HEADS_PERM and \
                len(self.consumers.get(x, [])) == 3 and x not in self.outputs:
            # RoPE is elementwise per (token, head): applied before the (B, S, H, d) -> (B, H, S, d) transpose, as
            # the built-in decoders apply it, it runs as the projection's epilogue and the transpose can feed the
            # attention contraction directly
            rotated = f"{add.name}/rope"
            return [heads, *region], [
                self.make_node("RotaryEmbedding", [heads.input[0]], [rotated], name=rotated),
                self.make_node("Transpose", [rotated], [add.output[0]], name=add.name, perm=HEADS_PERM)]
        return region, self.make_node("RotaryEmbedding", [x], [add.output[0]], name=add.name)

    def repeat_kv(self, t: str) -> tuple[str, list]:
        """(source, nodes) of HF's repeat_kv, x[:, :, None].expand(B, Hkv, group, S, d).reshape(B, H, S, d)
        (Unsqueeze at axis 2 -> Expand -> Reshape), ending in `t`; (t, []) when `t` is not one."""
        reshape = self.producer.get(t)
        expand = self.producer.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
        unsq = self.producer.get(expand.input[0]) if expand is not None and expand.op_type == "Expand" else None
        if unsq is None or unsq.op_type != "Unsqueeze" or self.reduce_axes(unsq) != [2] or \
                self.only_consumer(unsq.output[0]) is not expand or self.only_consumer(expand.output[0]) is not reshape:
            return t, []
        return unsq.input[0], [unsq, expand, reshape]

    def score_chain(self, t: str):
        """Walk back from the softmax input through a scale (Mul or Div by a constant scalar) and a mask (Add, or
        Where(mask, s, -inf)) -> (QK^T MatMul, scale factor, mask or None, chain nodes), or None."""
        scale, mask, chain = 1.0, None, []
        node = self.producer.get(t)
        while node is not None and node.op_type in ("Mul", "Div", "Add", "Where"):
            if self.only_consumer(node.output[0]) is None and chain:
                return None
            if node.op_type == "Where":
                fill = self.value(node.input[2])
                if mask is not None or fill is None or np.size(fill) != 1 or float(np.ravel(fill)[0]) > -1e4:
                    return None
                mask, t = node.input[0], node.input[1]
            else:
                s, o = (node.input[0], node.input[1])
                if self.producer.get(s) is None or (node.op_type != "Add" and self.value(o) is None):
                    s, o = o, s
                if node.op_type == "Add":
                    if mask is not None:
                        return None
                    mask = o
                else:
                    v = self.value(o)
                    if v is None or np.size(v) != 1:
                        return None
                    scale = scale * float(np.ravel(v)[0]) if node.op_type == "Mul" else scale / float(np.ravel(v)[0])
                t = s
            chain.append(node)
            node = self.producer.get(t)
        if node is None or node.op_type != "MatMul" or self.only_consumer(node.output[0]) is not (chain or [None])[-1]:
            return None
        return node, scale, mask, chain

    def attention(self, softmax):
        """Exported attention, MatMul(q, Transpose(repeat_kv(k))) -> scale/mask -> Softmax [-> NaN guard] ->
        MatMul(., repeat_kv(v)) -> (region, one Attention node on q, k, v [, mask]): K and V stay un-repeated, so
        the heads sharing them are grouped as the built-in decoders group them."""
        axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
        found = self.score_chain(softmax.input[0])
        if axis not in (-1, 3) or found is None:
            return None
        qk, scale, mask, chain = found
        region, p = [qk, *chain, softmax], softmax.output[0]
        users = self.consumers.get(p, [])
        guard = self.nan_guard(users[0]) if len(users) == 2 and users[0].op_type == "IsNaN" else None
        if guard is not None:
            region += guard[0]
            p = guard[1].output[0]
        while (cast := self.only_consumer(p, "Cast")) is not None:      # softmax in float32, cast back (HF)
            region.append(cast)
            p = cast.output[0]
        pv = self.only_consumer(p, "MatMul")
        kt = self.producer.get(qk.input[1])
        perm = _perm(kt) if kt is not None else None
        if pv is None or pv.input[0] != p or kt is None or kt.op_type != "Transpose" or perm != [0, 1, 3, 2] or \
                self.only_consumer(kt.output[0]) is not qk:
            return None
        k, k_nodes = self.repeat_kv(kt.input[0])
        v, v_nodes = self.repeat_kv(pv.input[1])
        region += [kt, *k_nodes, *v_nodes, pv]
        q, layout = qk.input[0], {}
        tq, tk = self.producer.get(q), self.producer.get(k)
        if all(t is not None and t.op_type == "Transpose" and _perm(t) == HEADS_PERM for t in (tq, tk)) and \
                self.only_consumer(q) is qk and self.only_consumer(k) is (k_nodes or [kt])[0]:
            region += [tq, tk]          # Q and K stay (B, S, heads, d): one transpose each, K straight to K^T
            q, k, layout = tq.input[0], tk.input[0], {"qk_layout": "bshd"}
        ins = [q, k, v] + ([mask] if mask else [])
        return region, self.make_node("Attention", ins, [pv.output[0]], name=pv.name, scale=scale, **layout)

    def rewrite(self) -> list:
        """The node list with every matched region replaced by its fused node(s), one pass per entry of PASSES
        (attention is matched over the norms, activations and rotary embeddings already fused)."""
        nodes = self.nodes
        for matchers in PASSES:
            nodes = Patterns(nodes, self.value, self.static, self.outputs, self.make_node).rewrite_once(matchers)
        return nodes

    def rewrite_once(self, matchers: dict) -> list:
        """One pass: every region a matcher finds replaced by its fused node(s), placed where the region ends."""
        replace, drop = {}, set()
        position = {id(n): i for i, n in enumerate(self.nodes)}
        for node in self.nodes:
            if id(node) in drop:
                continue
            match = matchers.get(node.op_type)
            found = match(self, node) if match else None
            if found and not any(id(n) in drop for n in found[0]):
                region, fused = found
                drop |= {id(n) for n in region}
                last = max(region, key=lambda n: position[id(n)])
                replace[id(last)] = fused if isinstance(fused, list) else [fused]
        return [f for n in self.nodes if id(n) not in drop or id(n) in replace for f in replace.get(id(n), [n])]


def _perm(node) -> list[int] | None:
    """A Transpose node's perm attribute."""
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


HEADS_PERM = [0, 2, 1, 3]   # (B, S, heads, d) <-> (B, heads, S, d)
PASSES = (   # per pass, the op each pattern starts from
    {"Erf": Patterns.gelu, "Tanh": Patterns.gelu_tanh,
     "ReduceMean": Patterns.layernorm, "Pow": Patterns.rmsnorm, "Sigmoid": Patterns.silu,
     "Neg": Patterns.rope},
    {"Softmax": Patterns.attention, "IsNaN": Patterns.nan_guard},
)
