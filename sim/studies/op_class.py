"""Op classes of a decoder LLM: which part of the model an op belongs to (attention, MLP/experts, the qkv/o
projections, lm_head, norms and the rest), as one table of rules over the op's data (tinygrad's GroupOp idea: the
groupings are data, read in one place).

An op's class is the first rule it matches, on its op type, the components of its name (the builders in
workloads/llm.py name ops <layer>.<block>.<role>) and whether it is a contraction against a weight; an op named
X.<suffix> after another op X (a bias, a soft-cap's tanh) takes X's class. A kernel belongs to the class of the op
it is built around, its first (fused epilogue ops follow their contraction).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tilesim.compiler.ir import Graph, Op

OP_CLASSES: tuple[str, ...] = ("attention", "mlp", "projections", "lm_head", "other")   # the order reports use
CLASS_LABELS = {"attention": "attention", "mlp": "MLP/experts", "projections": "projections (qkv/o)",
                "lm_head": "lm_head", "other": "norms/other"}
CONTRACTIONS = frozenset({"MatMul", "Gemm"})
NORMS = frozenset({"RMSNormalization", "LayerNormalization"})


@dataclass(frozen=True)
class ClassRule:
    """Ops of `op_class`: every given condition holds (name component among `components`, type among
    `op_types`, a contraction with a weight operand or not)."""
    op_class: str
    components: frozenset[str] = frozenset()
    op_types: frozenset[str] = frozenset()
    weighted: bool | None = None


RULES: tuple[ClassRule, ...] = (                   # first match wins; no match: "other"
    ClassRule("lm_head", components=frozenset({"lm_head", "logits_softcap"})),
    ClassRule("other", op_types=NORMS),                                  # attn_norm, mlp_norm, q/k norms, MLA's
    ClassRule("other", components=frozenset({"residual", "embed"})),     # residual adds, embeddings
    ClassRule("mlp", components=frozenset({"mlp"})),                     # dense MLP, router, experts, shared expert
    ClassRule("projections", components=frozenset({"attn"}), weighted=True),   # q, k, v, o; MLA's down/up/absorb
    ClassRule("attention", components=frozenset({"attn"})),              # scores, softmax, context, rope, caches
)


def weighted(op: Op, graph: Graph) -> bool:
    """Whether the op is a contraction whose second operand is a weight (a parameter)."""
    return op.op_type in CONTRACTIONS and len(op.inputs) > 1 and graph.tensors[op.inputs[1]].is_param


def matches(rule: ClassRule, op: Op, graph: Graph) -> bool:
    """Whether an op satisfies every condition the rule gives."""
    return ((not rule.components or not rule.components.isdisjoint(op.name.split(".")))
            and (not rule.op_types or op.op_type in rule.op_types)
            and (rule.weighted is None or weighted(op, graph) == rule.weighted))


def op_classes(graph: Graph) -> dict[str, str]:
    """Each op's class (RULES; an op named after another op, X.<suffix>, takes X's)."""
    out: dict[str, str] = {}
    for op in graph.ops:
        parent = op.name.rsplit(".", 1)[0]
        out[op.name] = out.get(parent) or next((r.op_class for r in RULES if matches(r, op, graph)), "other")
    return out


def kernel_class(ops: tuple[str, ...], classes: Mapping[str, str]) -> str:
    """A kernel's class: its first op's ("other" for ops the table does not know)."""
    return classes.get(ops[0], "other") if ops else "other"


__all__ = ["CLASS_LABELS", "OP_CLASSES", "RULES", "ClassRule", "kernel_class", "op_classes"]
