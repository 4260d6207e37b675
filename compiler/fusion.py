"""Operator fusion: which IR ops run together in one kernel, and what each fused kernel costs.

Policies (docs/design.md section 3):
  none      every op that is not a free view is its own kernel, with its own DRAM round trip.
  epilogue  Conv -> BatchNormalization folds into the conv's weights (inference); elementwise ops that follow a
            contraction (bias, activation, residual add, scale) are applied as its results drain: their vector
            ops overlap the array and their only DRAM traffic is the extra inputs they read (a residual).
  full      epilogue, plus: chains of vector ops run as one kernel (intermediates stay on chip); a transpose that
            only feeds contractions becomes strided DMA of its consumer; attention QK^T -> scale/mask -> softmax
            -> .V runs as one flash-attention kernel with an online softmax, so S never reaches DRAM.
Every op left unfused under epilogue/full gets a reason in the schedule's notes.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from math import ceil, prod
from typing import NamedTuple

from tilesim.arch.config import VectorUnit
from tilesim.arch.errors import field_error
from tilesim.compiler.attention import AttentionWork
from tilesim.compiler.ir import Graph, Op
from tilesim.compiler.lowering import Contraction, VectorWork, lower_op
from tilesim.compiler.ops import OpKind, matmul_shapes, spec

POLICIES = ("none", "epilogue", "full", "attention")
ELEMENTWISE = {"Relu", "Clip", "Sigmoid", "Tanh", "Erf", "Sqrt", "Gelu", "HardSwish", "Silu", "Cast", "Add", "Sub",
               "Mul", "Div", "Pow", "Where", "BatchNormalization",
               "RotaryEmbedding",   # pairs elements within one head: elementwise for tiles spanning whole heads
               # imported ONNX vector ops, one lane op per element (compiler/ops.py SPECS)
               "HardSigmoid", "LeakyRelu", "Neg", "Reciprocal", "Exp", "Log", "Abs", "Sin", "Cos", "IsNaN", "IsInf",
               "Not", "Floor", "Ceil", "Max", "Min", "Mod", "And", "Or", "Xor", "Equal", "Less", "Greater",
               "LessOrEqual", "GreaterOrEqual"}
SCORE_CHAIN = {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Tanh"}   # scale, soft-cap, mask before softmax

Canon = Callable[[str], str]     # tensor name -> the tensor it aliases (views, absorbed transposes)
Work = Contraction | VectorWork | AttentionWork     # a kernel's loop nest: array, vector unit, or fused attention


@dataclass(frozen=True)
class Epilogue:
    """Elementwise ops applied to a contraction's results as they drain: total vector ops, extra bytes read."""
    ops: int
    read_bytes: int

    def vector_cycles(self, outputs_share: float, vector: VectorUnit) -> int:
        """Vector cycles to apply the ops to `outputs_share` of the kernel's outputs (one core's part):
        ceil(ops x share / (lanes x ops per lane cycle))."""
        return ceil(self.ops * outputs_share / (vector.lanes * vector.ops_per_lane_cycle))


@dataclass
class _Group:
    """A kernel under construction."""
    anchor: Op
    ops: list[str]
    work: Work
    output: str
    deps: set[int] = field(default_factory=set)
    epilogue_ops: int = 0
    epilogue_read: int = 0
    reads: list[tuple[str, str]] = field(default_factory=list)   # (tensor, role): a | b (contraction operands) | extra


class KernelSpec(NamedTuple):
    """One kernel the fusion pass formed: its ops, loop nest, dependencies, epilogue, and the tensors it reads
    (with their role) and writes, so later passes can keep activations on chip."""
    name: str
    ops: tuple[str, ...]
    work: Work
    deps: tuple[int, ...]
    epilogue: Epilogue | None
    reads: tuple[tuple[str, str], ...]
    output: str


@dataclass(frozen=True)
class Grouping:
    """The fusion pass's result: kernels and notes on what was fused and why the rest was not."""
    kernels: tuple[KernelSpec, ...]
    notes: tuple[str, ...]
    alias: dict[str, str] = field(default_factory=dict, hash=False)   # view or absorbed-transpose output -> its source


def _vector_ops(graph: Graph, op: Op) -> int:
    """Vector-unit ops of one op (0 for an op that is not vector work)."""
    work = lower_op(graph, op)
    return work.ops if isinstance(work, VectorWork) else 0


def _attention_sets(graph: Graph, canon: Canon, uses: dict[str, int]) -> dict[str, list[Op]]:
    """MatMul(.V) op name -> the ops of an attention pattern ending there (QK^T, score chain, Softmax, .V)."""
    producer = {canon(t): op for op in graph.ops if spec(op.op_type).kind is not OpKind.VIEW for t in op.outputs}
    found = {}
    for op in graph.ops:
        if op.op_type != "MatMul":
            continue
        chain = [op]
        src = producer.get(canon(op.inputs[0]))
        if src is None or src.op_type != "Softmax" or uses[canon(op.inputs[0])] != 1:
            continue
        chain.append(src)
        cur = producer.get(canon(src.inputs[0]))
        t = canon(src.inputs[0])
        while cur is not None and cur.op_type in SCORE_CHAIN and uses[t] == 1:
            chain.append(cur)
            t = canon(cur.inputs[0])
            cur = producer.get(t)
        if cur is not None and cur.op_type == "MatMul" and uses[t] == 1:
            chain.append(cur)
            found[op.name] = list(reversed(chain))
    return found


def _attention_work(graph: Graph, ops: list[Op], canon: Canon) -> AttentionWork:
    """AttentionWork from a matched pattern's shapes."""
    qk, pv = ops[0], ops[-1]
    q, kt = (graph.tensors[t] for t in qk.inputs)
    v = graph.tensors[pv.inputs[1]]
    batch, sq, skv, d = matmul_shapes(q.shape, kt.shape)
    dv = v.shape[-1]
    g = prod(batch)
    kv_batch = prod(kt.shape[:-2]) if len(kt.shape) > 2 else 1
    chain = ops[1:-2]
    score_ops = sum(_vector_ops(graph, op) for op in chain) // max(g * sq * skv, 1)
    produced = {canon(t) for op in ops for t in op.outputs}
    extra = sum(graph.tensors[t].nbytes for op in chain for t in op.inputs[1:] if canon(t) not in produced)
    kv_dtype = kt.dtype if kt.dtype != q.dtype else ""
    shared = canon(qk.inputs[1]) == canon(pv.inputs[1]) and dv <= d     # V is K's buffer (MLA's latent cache)
    return AttentionWork(g, sq, skv, d, dv, q.dtype, max(g // max(kv_batch, 1), 1), score_ops, extra, kv_dtype,
                         shared)


def group_ops(graph: Graph, policy: str, epilogue_ops: tuple[str, ...] | None = None) -> Grouping:
    """Group a graph's ops into kernels under a fusion policy; `epilogue_ops`: the elementwise op types a
    contraction's epilogue may apply (the arch's epilogue_ops; None: every one in ELEMENTWISE)."""
    if policy not in POLICIES:
        raise field_error("fusion", f"got '{policy}', allowed: {', '.join(POLICIES)}")
    unknown = sorted(set(epilogue_ops or ()) - ELEMENTWISE)
    if unknown:
        raise field_error("epilogue_ops", f"{', '.join(unknown)} not elementwise op types; allowed: "
                                          f"{', '.join(sorted(ELEMENTWISE))}")
    allowed = None if epilogue_ops is None else frozenset(epilogue_ops)
    made = _GROUPINGS.setdefault(graph, {})       # a graph is not changed once made: its groupings are kept
    if (policy, allowed) not in made:             # (the fusion guard groups a graph under each weaker policy)
        grouper = _Grouper(graph, policy, allowed)
        for op in graph.ops:
            grouper.place(op)
        made[policy, allowed] = grouper.result()
    return made[policy, allowed]


_GROUPINGS: weakref.WeakKeyDictionary[Graph, dict[tuple[str, frozenset[str] | None], Grouping]] = \
    weakref.WeakKeyDictionary()


class _Grouper:
    """The fusion pass's state while it walks the ops in order: tensor aliases (views, absorbed transposes), how
    often each tensor is read and by which ops, the kernels formed so far and which kernel produces each tensor."""

    def __init__(self, graph: Graph, policy: str, epilogue_ops: frozenset[str] | None = None) -> None:
        self.graph, self.policy, self.epilogue_ops = graph, policy, epilogue_ops
        self.alias: dict[str, str] = {}
        for op in graph.ops:                              # views reinterpret memory: their output is their input
            if spec(op.op_type).kind is OpKind.VIEW:
                self.alias[op.outputs[0]] = op.inputs[0]
        self.uses: dict[str, int] = {}
        self.readers: dict[str, list[Op]] = {}            # canonical tensor -> non-view ops reading it
        for op in graph.ops:
            if spec(op.op_type).kind is not OpKind.VIEW:
                for t in op.inputs:
                    self.uses[self.canon(t)] = self.uses.get(self.canon(t), 0) + 1
                    self.readers.setdefault(self.canon(t), []).append(op)
        for t in graph.outputs:
            self.uses[self.canon(t)] = self.uses.get(self.canon(t), 0) + 1
        patterns = _attention_sets(graph, self.canon, self.uses)
        self.attention = patterns if policy in ("full", "attention") else {}
        self.in_place: set[str] = set()                  # V slices read in place (strided), fused or not
        producer = {t: o for o in graph.ops for t in o.outputs}
        for ops in patterns.values():                     # V = K's leading columns (MLA's latent): read in place
            k, v = ops[0].inputs[1], ops[-1].inputs[1]
            while k in producer and producer[k].op_type in ("Transpose", "Reshape", "Identity"):
                k = producer[k].inputs[0]
            cut = producer.get(v)
            if cut is not None and cut.op_type == "Slice" and cut.inputs[0] == k and \
                    tuple(cut.attrs["starts"]) == (0,) and self.uses[self.canon(v)] == 1:
                self.alias[v] = k
                self.in_place.add(cut.name)
        self.in_attention = {o.name: end for end, ops in self.attention.items() for o in ops}
        self.groups: list[_Group] = []
        self.owner: dict[str, int] = {}                   # canonical tensor -> group producing it
        self.notes: list[str] = []

    def canon(self, t: str) -> str:
        """The tensor `t` is an alias of (itself when it is not one)."""
        while t in self.alias:
            t = self.alias[t]
        return t

    def deps_of(self, tensors: Iterable[str]) -> set[int]:
        """Groups producing any of `tensors`."""
        return {self.owner[self.canon(t)] for t in tensors if self.canon(t) in self.owner}

    def new_group(self, op: Op, work: Work, deps: set[int]) -> None:
        """Start a kernel with `op`."""
        roles = ("a", "b") if isinstance(work, Contraction) else ()
        reads = [(self.canon(t), roles[i] if i < len(roles) else "extra") for i, t in enumerate(op.inputs)]
        self.groups.append(_Group(op, [op.name], work, op.outputs[0], deps, reads=reads))
        for t in op.outputs:
            self.owner[self.canon(t)] = len(self.groups) - 1

    def absorb(self, gi: int, op: Op) -> None:
        """Add `op` to group `gi`: its outputs become the group's."""
        self.groups[gi].ops.append(op.name)
        self.groups[gi].output = op.outputs[0]
        for t in op.outputs:
            self.owner[self.canon(t)] = gi

    def attention_group(self, end: Op) -> None:
        """One flash-attention kernel for the pattern ending at `end` (its .V MatMul)."""
        canon, ops = self.canon, self.attention[end.name]
        inside = {canon(t) for o in ops for t in o.outputs}
        outside = [t for o in ops for t in o.inputs if canon(t) not in inside]
        q, k = ops[0].inputs[:2]
        reads = [(canon(q), "a"), (canon(k), "b"), (canon(ops[-1].inputs[1]), "b")] + \
            [(canon(t), "extra") for o in ops[1:-2] for t in o.inputs if canon(t) not in inside]
        self.groups.append(_Group(ops[0], [o.name for o in ops], _attention_work(self.graph, ops, canon),
                                  end.outputs[0], self.deps_of(outside), reads=reads))
        for o in ops:
            for t in o.outputs:
                self.owner[canon(t)] = len(self.groups) - 1
        self.notes.append(f"{end.name}: attention {' -> '.join(o.op_type for o in ops)} fused (flash attention, "
                          "scores stay on chip)")

    def place(self, op: Op) -> None:
        """Put one op into a kernel: a new one, or one it fuses into (views and empty contractions need none)."""
        kind = spec(op.op_type).kind
        if kind is OpKind.VIEW or op.name in self.in_place:
            return
        if op.name in self.in_attention:
            if op.name == self.in_attention[op.name]:
                self.attention_group(op)
            return
        work = lower_op(self.graph, op)
        if work is None or (isinstance(work, Contraction) and work.macs == 0):
            return
        # contractions start kernels; other ops may join them (never under none; under attention only a transpose
        # that its consumers' strided reads absorb, as attention reads K in place)
        policy = self.policy
        if policy == "none" or kind is OpKind.CONTRACTION or (policy == "attention" and op.op_type != "Transpose"):
            self.new_group(op, work, self.deps_of(op.inputs))
            return
        reason = _try_fuse(self.graph, op, kind, policy, self.groups, self.canon, self.uses, self.owner, self.absorb,
                           self.notes, self.alias, self.readers, self.epilogue_ops)
        if reason is not None:
            self.notes.append(f"{op.name}: not fused ({reason})")
            self.new_group(op, work, self.deps_of(op.inputs))

    def result(self) -> Grouping:
        """The kernels formed (a fused vector chain writes only its last output) and the notes."""
        kernels = []
        for gr in self.groups:
            work = gr.work
            if isinstance(work, VectorWork) and len(gr.ops) > 1:
                out = self.graph.tensors[gr.output]
                work = replace(work, write_bytes=out.nbytes, elements=out.elements)
            epi = Epilogue(gr.epilogue_ops, gr.epilogue_read) if (gr.epilogue_ops or gr.epilogue_read) else None
            reads = tuple(dict.fromkeys((self.canon(t), role) for t, role in gr.reads))
            kernels.append(KernelSpec(gr.anchor.name, tuple(gr.ops), work, tuple(sorted(gr.deps)), epi, reads,
                                      self.canon(gr.output)))
        return Grouping(tuple(kernels), tuple(self.notes), dict(self.alias))


def _epilogue_refusal(op: Op, broadcasts: bool, epilogue_ops: frozenset[str] | None) -> str | None:
    """Why elementwise `op` cannot be applied to a contraction's results as they drain, or None."""
    if op.op_type not in ELEMENTWISE:
        return f"{op.op_type} is not elementwise: it needs whole rows or windows, not one output tile at a time"
    if epilogue_ops is not None and op.op_type not in epilogue_ops:
        allowed = ", ".join(sorted(epilogue_ops)) or "nothing"
        return f"the arch's GEMM epilogue applies only {allowed} (epilogue_ops)"
    return "it broadcasts its main input" if broadcasts else None


def _try_fuse(graph: Graph, op: Op, kind: OpKind, policy: str, groups: list[_Group], canon: Canon,
              uses: dict[str, int], owner: dict[str, int], absorb: Callable[[int, Op], None], notes: list[str],
              alias: dict[str, str], readers: dict[str, list[Op]], epilogue_ops: frozenset[str] | None = None) \
        -> str | None:
    """Fuse `op` into an existing group and return None, or return why it stays a kernel of its own."""
    ins = [canon(t) for t in op.inputs]
    produced = [(owner[t], t) for t in ins if t in owner]
    if op.op_type == "Transpose" and policy in ("full", "attention"):
        consumers = readers.get(canon(op.outputs[0]), [])              # non-view readers, seen through views
        if consumers and all(spec(o.op_type).kind is OpKind.CONTRACTION for o in consumers):
            alias_note = f"{op.name}: transpose done by strided DMA of its consumer ({consumers[0].name})"
            notes.append(alias_note)
            for t in op.outputs:                          # the consumer reads the untransposed tensor
                if ins[0] in owner:
                    owner[canon(t)] = owner[ins[0]]
                alias[t] = op.inputs[0]
            return None
        return "a transpose feeding more than contractions"
    if not produced:
        return "its inputs come from the graph or parameters"
    gi, main = max(produced)                               # the most recent producer is the one to extend
    g = groups[gi]
    if canon(g.output) != main:
        return "its input is not the latest result of the kernel producing it"
    if uses.get(main, 0) != 1:
        return "its input is read by other ops too, so it must be written out"
    out = graph.tensors[op.outputs[0]]
    others = [t for t in op.inputs if canon(t) != main]
    if any(owner.get(canon(t), -1) > gi for t in others):
        return "its other input is produced by a later kernel"
    if isinstance(g.work, Contraction):
        if op.op_type == "BatchNormalization" and g.anchor.op_type == "Conv" and g.ops == [g.anchor.name]:
            absorb(gi, op)
            notes.append(f"{op.name}: folded into {g.anchor.name}'s weights")
            return None
        refusal = _epilogue_refusal(op, graph.tensors[main].elements != out.elements, epilogue_ops)
        if refusal:
            return refusal
        g.epilogue_ops += _vector_ops(graph, op)
        g.epilogue_read += sum(graph.tensors[t].nbytes for t in others)
        g.reads += [(canon(t), "extra") for t in others]
        g.deps |= {owner[canon(t)] for t in others if canon(t) in owner} - {gi}
        absorb(gi, op)
        return None
    if isinstance(g.work, VectorWork) and kind is OpKind.VECTOR and policy == "full":
        w = g.work
        extra = sum(graph.tensors[t].nbytes for t in others)
        g.work = replace(w, ops=w.ops + _vector_ops(graph, op), read_bytes=w.read_bytes + extra)
        g.reads += [(canon(t), "extra") for t in others]
        g.deps |= {owner[canon(t)] for t in others if canon(t) in owner} - {gi}
        absorb(gi, op)
        return None
    if isinstance(g.work, VectorWork):
        return "vector chains fuse only under --fusion full"
    return "its producer is not a contraction or vector kernel"
