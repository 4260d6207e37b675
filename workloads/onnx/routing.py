"""Mixture-of-experts routing as exporters write it: TopK, OneHot, NonZero and ScatterElements, and the expected
sizes of the tensors whose shapes depend on the routing.

torch's legacy exporter traces HF's eager experts loop (MixtralExperts.forward) into, per MoE layer,
    idx = TopK(softmax(router logits), k)[1]                           (tokens, k) expert ids
    mask = Transpose(OneHot(idx, experts + 1))                         (experts + 1, k, tokens)
    hit = NonZero(Greater(ReduceSum(mask, tokens and k axes), 0))      the experts any token picked
and, for each expert the traced input hit (the loop is unrolled), its (top-k slot, token) pairs
    pairs = NonZero(Gather(mask, expert))                              (2, n)
    y = MLP(Gather(x, tokens of pairs)) with that expert's weights, ScatterElements(zeros, tokens, y) summed.
NonZero's output size depends on the values. It is bounded here as tilesim's built-in MoE layers do
(workloads/moe_routing.py: every token to its top-k experts, uniform routing, q = k/E per expert): the hit NonZero
gives E[D] = E (1 - (1 - k/E)^T) experts, and an expert's NonZero, which the loop reaches only for a hit expert,
gives its expected tokens given that it is hit, T k/E / (1 - (1 - k/E)^T) (T k/E once T is large). Over the E[D]
hit experts that is T k token-expert pairs, the built-in's MACs. Facts are followed from TopK's indices through
OneHot, Transpose, Cast, Gather, ReduceSum and Greater; a NonZero outside that pattern is a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

from tilesim.arch.errors import InputError
from tilesim.workloads import moe_routing
from tilesim.workloads.onnx.importer import Importer
from tilesim.workloads.onnx.model import ir_dtype, node_attrs

INDEX_DTYPE = "int32"     # the IR's index type (ONNX int64 indices: model.ELEM_TYPES)


@dataclass(frozen=True)
class Picks:
    """Top-k expert picks: `tokens` tokens each picking `top_k` distinct experts out of `experts`."""
    tokens: int
    top_k: int
    experts: int

    @property
    def hit_experts(self) -> float:
        """E[D], the experts at least one token picks (moe_routing.expected_distinct_experts)."""
        return moe_routing.expected_distinct_experts(self.probs, self.tokens)

    @property
    def tokens_per_hit_expert(self) -> float:
        """An expert's expected (token, slot) pairs given that it is hit: T q / (1 - (1 - q)^T), q = k/E."""
        q = self.probs[0]
        return self.tokens * q / (1 - (1 - q) ** self.tokens) if self.tokens else 0.0

    @property
    def probs(self) -> tuple[float, ...]:
        """q_e = k/E for every expert (uniform routing, as the built-in MoE layers assume by default)."""
        return moe_routing.selection_probs(self.experts, self.top_k)


@dataclass(frozen=True)
class OneHotPicks:
    """A one-hot tensor of `picks` whose classes lie along `axis`."""
    picks: Picks
    axis: int


def _axis(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


def h_top_k(imp: Importer, node) -> None:
    """TopK(x, k): values and indices along `axis` (k an input from opset 10, an attribute before); k max passes
    over each row. The indices are recorded as expert picks for OneHot."""
    a = node_attrs(node)
    k = [a["k"]] if "k" in a else imp.ints(node, 1, "k")
    shape = imp.shape(node.input[0])
    axis = int(a.get("axis", -1))
    if not k or len(k) != 1 or not -len(shape) <= axis < len(shape):
        raise InputError(f"{imp.where}: node '{node.name}' (TopK): needs one k (an input from opset 10, an "
                         f"attribute before) and an axis within the input's rank {len(shape)}; got k {k}, "
                         f"axis {axis}")
    k, axis = int(k[0]), axis % len(shape)
    outs = [t or imp.fresh(f"{node.name}/unused") for t in node.output]
    imp.op(node, "TopK", [node.input[0]], {"axis": axis, "k": k}, outputs=outs)
    if outs[1] in imp.tensors:         # indices: the IR's index type, not the values'
        imp.builder.tensors[outs[1]] = replace(imp.tensors[outs[1]], dtype=INDEX_DTYPE)
    imp.picks[outs[1]] = Picks(prod(shape) // max(shape[axis], 1), k, shape[axis])


def h_one_hot(imp: Importer, node) -> None:
    """OneHot(indices, depth, values): one compare per output element; its element type is the values'."""
    depth = imp.ints(node, 1, "depth")
    rank = len(imp.shape(node.input[0])) + 1
    axis = int(node_attrs(node).get("axis", -1))
    if len(node.input) < 3 or not node.input[2] or not depth or len(depth) != 1 or not -rank <= axis < rank:
        raise InputError(f"{imp.where}: node '{node.name}' (OneHot): needs indices, one depth and values, and an "
                         f"axis within the output's rank {rank}; got depth {depth}, axis {axis}")
    depth, axis = depth[0], axis % rank
    to = ir_dtype(imp.elem_type(node.input[2]), imp.override, f"{imp.where}: node '{node.name}'")
    idx = node.input[0]
    if imp.is_static(idx) and imp.value(idx) is None:
        raise InputError(f"{imp.where}: node '{node.name}' (OneHot): its indices are a constant whose values are "
                         "not in the file")
    imp.op(node, "OneHot", [idx], {"depth": depth, "axis": axis}, outputs=[node.output[0]], dtype=to)
    if idx in imp.picks:
        imp.one_hot[node.output[0]] = OneHotPicks(imp.picks[idx], axis)


def h_non_zero(imp: Importer, node) -> None:
    """NonZero(x): (rank, n) indices, n the expected count of the routing pattern (module docstring); anything
    else is an error, its size depending on values tilesim does not know."""
    x, out = node.input[0], node.output[0]
    if x not in imp.nonzeros:
        raise InputError(f"{imp.where}: node '{node.name}' (NonZero): its output size depends on the values of "
                         f"'{x}' (shape {imp.shape(x)}), computed at run time; tilesim bounds it only in the "
                         "routed-experts pattern (NonZero over a OneHot of TopK indices, as torch exports HF's MoE "
                         "experts loop)")
    count = max(round(imp.nonzeros[x]), 1)
    imp.op(node, "NonZero", [x], {"count": count}, outputs=[out], dtype=INDEX_DTYPE)


def h_scatter_elements(imp: Importer, node) -> None:
    """ScatterElements(data, indices, updates) (index_add_, index_put_): data movement, the data read and the
    output written, indices and updates read."""
    imp.op(node, "ScatterElements", list(node.input[:3]), {"axis": node_attrs(node).get("axis", 0)},
           outputs=[node.output[0]])


def follow(imp: Importer, node) -> None:
    """After a node is handled: its outputs' routing facts from its inputs' (one-hot picks, expected nonzeros)."""
    ins = [t for t in node.input if t]
    if not ins or not node.output:
        return
    x, out = ins[0], node.output[0]
    hot = imp.one_hot.get(x)
    if node.op_type in ("Cast", "Identity"):
        if hot is not None:
            imp.one_hot[out] = hot
        if x in imp.nonzeros:
            imp.nonzeros[out] = imp.nonzeros[x]
    elif hot is not None and node.op_type == "Transpose":
        perm = node_attrs(node).get("perm") or list(reversed(range(len(imp.shape(x)))))
        imp.one_hot[out] = OneHotPicks(hot.picks, list(perm).index(hot.axis))
    elif hot is not None and node.op_type == "Gather" and len(ins) > 1 and prod(imp.shape(ins[1])) == 1 and \
            _axis(int(node_attrs(node).get("axis", 0)), len(imp.shape(x))) == hot.axis:
        imp.nonzeros[out] = hot.picks.tokens_per_hit_expert      # one expert's picks, an expert the loop reaches
    elif hot is not None and node.op_type == "ReduceSum" and _reduced_all_but(imp, node, hot.axis):
        imp.nonzeros[out] = hot.picks.hit_experts                 # picks per expert: nonzero for hit experts
    elif node.op_type == "Greater" and x in imp.nonzeros and len(ins) > 1 and imp.value(ins[1]) is not None and \
            imp.value(ins[1]).size == 1 and float(imp.value(ins[1]).ravel()[0]) == 0:
        imp.nonzeros[out] = imp.nonzeros[x]                       # counts > 0: the same elements


def _reduced_all_but(imp: Importer, node, axis: int) -> bool:
    """Whether a ReduceSum reduces every axis of its input except `axis`."""
    rank = len(imp.shape(node.input[0]))
    a = node_attrs(node)
    axes = [int(v) for v in a["axes"]] if "axes" in a else \
        (imp.ints(node, 1, "axes") if len(node.input) > 1 and node.input[1] else None)
    return axes is not None and sorted(v % rank for v in axes) == [i for i in range(rank) if i != axis]


ROUTING = {"TopK": h_top_k, "OneHot": h_one_hot, "NonZero": h_non_zero, "ScatterElements": h_scatter_elements}
