"""Operator fusion: which IR ops run together in one kernel, and what each fused kernel costs.

Policies (DESIGN.md section 5):
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

from dataclasses import dataclass, field, replace
from math import prod
from typing import NamedTuple

from tilesim.arch.errors import InputError
from tilesim.compiler.ir import Graph, Op
from tilesim.compiler.lowering import Contraction, LoopNest, VectorWork, lower_op
from tilesim.compiler.ops import OpKind, matmul_shapes, spec

POLICIES = ("none", "epilogue", "full", "attention")
ELEMENTWISE = {"Relu", "Clip", "Sigmoid", "Tanh", "Erf", "Sqrt", "Gelu", "HardSwish", "Silu", "Cast", "Add", "Sub",
               "Mul", "Div", "Pow", "Where", "BatchNormalization",
               "RotaryEmbedding"}   # pairs elements within one head: elementwise for tiles spanning whole heads
SCORE_CHAIN = {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Tanh"}   # scale, soft-cap, mask before softmax
SOFTMAX_OPS = 5                 # per score: max, subtract, exp, sum, divide (compiler/ops.py)
RESCALE_OPS = 2                 # online softmax: per output element and kv block, rescale and accumulate


@dataclass(frozen=True)
class Epilogue:
    """Elementwise ops applied to a contraction's results as they drain: total vector ops, extra bytes read."""
    ops: int
    read_bytes: int


@dataclass(frozen=True)
class AttentionWork:
    """Fused attention over g = batch x heads: S = Q K^T (sq x skv, K = d), softmax, O = S V (sq x dv, K = skv).
    K and V are shared by `kv_share` query heads (GQA/MQA); `score_ops` are the fused scale/mask ops per score.
    `kv_dtype` is K's and V's type when it differs from Q's (a quantized KV cache); "" means `dtype`."""
    g: int
    sq: int
    skv: int
    d: int
    dv: int
    dtype: str
    kv_share: int = 1
    score_ops: int = 0
    extra_read_bytes: int = 0     # mask or other inputs of the score chain
    kv_dtype: str = ""

    @property
    def kv_type(self) -> str:
        """The data type K and V are read in."""
        return self.kv_dtype or self.dtype

    @property
    def macs(self) -> int:
        """QK^T and PV multiply-accumulates."""
        return self.g * self.sq * self.skv * (self.d + self.dv)

    def parts(self) -> tuple[Contraction, Contraction]:
        """The two contractions it fuses, as unfused kernels would run them."""
        qk = Contraction(self.g, self.sq, self.skv, self.d, self.dtype, self.kv_type, self.dtype, b_is_param=False)
        pv = Contraction(self.g, self.sq, self.dv, self.skv, self.dtype, self.kv_type, self.dtype, b_is_param=False)
        return qk, pv


@dataclass
class _Group:
    """A kernel under construction."""
    anchor: Op
    ops: list[str]
    work: LoopNest
    output: str
    deps: set[int] = field(default_factory=set)
    epilogue_ops: int = 0
    epilogue_read: int = 0
    reads: list = field(default_factory=list)       # (tensor, role): role a | b (contraction operands) | extra


class KernelSpec(NamedTuple):
    """One kernel the fusion pass formed: its ops, loop nest, dependencies, epilogue, and the tensors it reads
    (with their role) and writes, so later passes can keep activations on chip."""
    name: str
    ops: tuple[str, ...]
    work: LoopNest
    deps: tuple[int, ...]
    epilogue: Epilogue | None
    reads: tuple[tuple[str, str], ...]
    output: str


@dataclass(frozen=True)
class Grouping:
    """The fusion pass's result: kernels and notes on what was fused and why the rest was not."""
    kernels: tuple[KernelSpec, ...]
    notes: tuple[str, ...]
    alias: dict = field(default_factory=dict, hash=False)   # view or absorbed-transpose output -> its source


def _vector_ops(graph: Graph, op: Op) -> int:
    return lower_op(graph, op).ops


def _attention_sets(graph: Graph, canon, uses) -> dict[str, list[Op]]:
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


def _attention_work(graph: Graph, ops: list[Op], canon) -> AttentionWork:
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
    return AttentionWork(g, sq, skv, d, dv, q.dtype, max(g // max(kv_batch, 1), 1), score_ops, extra, kv_dtype)


def group_ops(graph: Graph, policy: str) -> Grouping:
    """Group a graph's ops into kernels under a fusion policy."""
    if policy not in POLICIES:
        raise InputError(f"--fusion: got '{policy}', allowed: {', '.join(POLICIES)}")
    alias: dict[str, str] = {}

    def canon(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    for op in graph.ops:                                  # views reinterpret memory: their output is their input
        if spec(op.op_type).kind is OpKind.VIEW:
            alias[op.outputs[0]] = op.inputs[0]
    uses: dict[str, int] = {}
    readers: dict[str, list[Op]] = {}                     # canonical tensor -> non-view ops reading it
    for op in graph.ops:
        if spec(op.op_type).kind is not OpKind.VIEW:
            for t in op.inputs:
                uses[canon(t)] = uses.get(canon(t), 0) + 1
                readers.setdefault(canon(t), []).append(op)
    for t in graph.outputs:
        uses[canon(t)] = uses.get(canon(t), 0) + 1

    attention = _attention_sets(graph, canon, uses) if policy in ("full", "attention") else {}
    in_attention = {o.name: end for end, ops in attention.items() for o in ops}
    groups: list[_Group] = []
    owner: dict[str, int] = {}                            # canonical tensor -> group producing it
    notes: list[str] = []

    def deps_of(tensors) -> set[int]:
        return {owner[canon(t)] for t in tensors if canon(t) in owner}

    def new_group(op: Op, work: LoopNest, deps: set[int]) -> None:
        roles = ("a", "b") if isinstance(work, Contraction) else ()
        reads = [(canon(t), roles[i] if i < len(roles) else "extra") for i, t in enumerate(op.inputs)]
        groups.append(_Group(op, [op.name], work, op.outputs[0], deps, reads=reads))
        for t in op.outputs:
            owner[canon(t)] = len(groups) - 1

    def absorb(gi: int, op: Op) -> None:
        groups[gi].ops.append(op.name)
        groups[gi].output = op.outputs[0]
        for t in op.outputs:
            owner[canon(t)] = gi

    for op in graph.ops:
        kind = spec(op.op_type).kind
        if kind is OpKind.VIEW:
            continue
        if op.name in in_attention:
            end = in_attention[op.name]
            if op.name == end:
                ops = attention[end]
                inside = {canon(t) for o in ops for t in o.outputs}
                outside = [t for o in ops for t in o.inputs if canon(t) not in inside]
                q, k = ops[0].inputs[:2]
                reads = [(canon(q), "a"), (canon(k), "b"), (canon(ops[-1].inputs[1]), "b")] + \
                    [(canon(t), "extra") for o in ops[1:-2] for t in o.inputs if canon(t) not in inside]
                groups.append(_Group(ops[0], [o.name for o in ops], _attention_work(graph, ops, canon),
                                     op.outputs[0], deps_of(outside), reads=reads))
                for o in ops:
                    for t in o.outputs:
                        owner[canon(t)] = len(groups) - 1
                notes.append(f"{op.name}: attention {' -> '.join(o.op_type for o in ops)} fused (flash attention, "
                             "scores stay on chip)")
            continue
        work = lower_op(graph, op)
        if isinstance(work, Contraction) and work.macs == 0:
            continue
        # contractions start kernels; other ops may join them (never under none; under attention only a transpose
        # that its consumers' strided reads absorb, as attention reads K in place)
        if policy == "none" or kind is OpKind.CONTRACTION or (policy == "attention" and op.op_type != "Transpose"):
            new_group(op, work, deps_of(op.inputs))
            continue
        reason = _try_fuse(graph, op, kind, policy, groups, canon, uses, owner, absorb, notes, alias, readers)
        if reason is None:
            continue
        notes.append(f"{op.name}: not fused ({reason})")
        new_group(op, work, deps_of(op.inputs))

    kernels = []
    for gr in groups:
        work = gr.work
        if isinstance(work, VectorWork) and len(gr.ops) > 1:
            work = replace(work, write_bytes=graph.tensors[gr.output].nbytes,
                           elements=graph.tensors[gr.output].elements)
        epi = Epilogue(gr.epilogue_ops, gr.epilogue_read) if (gr.epilogue_ops or gr.epilogue_read) else None
        reads = tuple(dict.fromkeys((canon(t), role) for t, role in gr.reads))
        kernels.append(KernelSpec(gr.anchor.name, tuple(gr.ops), work, tuple(sorted(gr.deps)), epi, reads,
                                  canon(gr.output)))
    return Grouping(tuple(kernels), tuple(notes), dict(alias))


def _try_fuse(graph, op, kind, policy, groups, canon, uses, owner, absorb, notes, alias, readers) -> str | None:
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
        if op.op_type not in ELEMENTWISE:
            return f"{op.op_type} is not elementwise: it needs whole rows or windows, not one output tile at a time"
        if graph.tensors[main].elements != out.elements:
            return "it broadcasts its main input"
        g.epilogue_ops += lower_op(graph, op).ops
        g.epilogue_read += sum(graph.tensors[t].nbytes for t in others)
        g.reads += [(canon(t), "extra") for t in others]
        g.deps |= {owner[canon(t)] for t in others if canon(t) in owner} - {gi}
        absorb(gi, op)
        return None
    if isinstance(g.work, VectorWork) and kind is OpKind.VECTOR and policy == "full":
        w = g.work
        extra = sum(graph.tensors[t].nbytes for t in others)
        g.work = replace(w, ops=w.ops + lower_op(graph, op).ops, read_bytes=w.read_bytes + extra)
        g.reads += [(canon(t), "extra") for t in others]
        g.deps |= {owner[canon(t)] for t in others if canon(t) in owner} - {gi}
        absorb(gi, op)
        return None
    if isinstance(g.work, VectorWork):
        return "vector chains fuse only under --fusion full"
    return "its producer is not a contraction or vector kernel"


# ---------------------------------------------------------------- fused attention: tiling and cost

@dataclass(frozen=True)
class AttentionMapping:
    """Flash-attention tiling: query rows per block and key/value rows per block (kv blocks innermost)."""
    dataflow: str
    block_q: int
    block_kv: int


def attention_footprint(work: AttentionWork, bq: int, bkv: int, arch) -> dict[str, int]:
    """On-chip bytes per level: the Q block (input), K and V blocks (weight), scores and O accumulators (output)."""
    from tilesim.compiler.cost import nbytes
    acc = arch.array.acc_dtype
    tiles = {"input": int(nbytes(bq * work.d, work.dtype)),
             "weight": int(nbytes(bkv * (work.d + work.dv), work.kv_type)),
             "output": int(nbytes(bq * bkv + bq * work.dv, acc))}
    need = {lv.name: 0 for lv in arch.onchip}
    for operand, size in tiles.items():
        home = arch.home(operand)
        need[home.name] += size * (2 if home.double_buffered else 1)
    return need


def attention_traffic(work: AttentionWork, bq: int) -> tuple[int, int, int]:
    """DRAM bytes (Q and extra inputs, K and V, O): Q and O once; K and V once per query block and per kv head,
    each kv head serving kv_share query heads in turn."""
    from tilesim.compiler.cost import nbytes
    n_q = -(-work.sq // bq)
    q = int(nbytes(work.g * work.sq * work.d, work.dtype)) + work.extra_read_bytes
    kv = int(nbytes(-(-work.g // work.kv_share) * n_q * work.skv * (work.d + work.dv), work.kv_type))
    o = int(nbytes(work.g * work.sq * work.dv, work.dtype))
    return q, kv, o


def attention_tile_compute(work: AttentionWork, mapping: AttentionMapping, arch, timing: str):
    """Cycles of every (head, q block, kv block) tile in order: the two block matmuls on the array, overlapped
    with softmax, score-chain and online-softmax rescaling ops on the vector unit (the longer of the two).
    scalesim timing pays every block product's fills and drains; pipelined timing overlaps them between
    consecutive products, as for the folds of one contraction (compiler/cost.py array_cycles), so the kernel
    pays one fill and drain, on its first tile."""
    import numpy as np
    from tilesim.compiler.cost import array_cycles, compute_cycles, extents, feed_cycles, fold_overhead, streamed_loop
    eq, ek = extents(work.sq, mapping.block_q), extents(work.skv, mapping.block_kv)
    df = mapping.dataflow
    # tiles run on p cores in lockstep: heads and q blocks are independent, and kv blocks split across cores
    # with a final rescale-and-sum as flash-decoding does when heads and q blocks are fewer than the cores
    p = min(arch.cores, work.g * eq.size * ek.size)
    core = arch.per_core() if arch.cores > 1 else arch
    lanes = arch.vector.lanes * arch.vector.ops_per_lane_cycle * p
    t = streamed_loop(df)           # each block product is one tile: its whole streamed loop streams at once
    fill = 0 if timing == "scalesim" else fold_overhead(core.array.rows, core.array.cols, df)

    def product(c: Contraction) -> int:
        if not fill:
            return compute_cycles(c, core, df, timing, getattr(c, t))
        return max(array_cycles(c, core.array, df, timing, getattr(c, t)) - fill, feed_cycles(c, df, core))

    def block(bq: int, bkv: int) -> float:
        qk = Contraction(1, bq, bkv, work.d, work.dtype, work.dtype, work.dtype, b_is_param=False)
        pv = Contraction(1, bq, work.dv, bkv, work.dtype, work.dtype, work.dtype, b_is_param=False)
        ops = (SOFTMAX_OPS + work.score_ops) * bq * bkv + RESCALE_OPS * bq * work.dv
        return max((product(qk) + product(pv)) / p, ops / lanes)       # this tile's 1/p share of a step
    cost = {(int(a), int(b)): block(int(a), int(b)) for a in set(eq) for b in set(ek)}   # <= 4 distinct blocks
    per = np.array([[cost[int(a), int(b)] for b in ek] for a in eq], dtype=np.float64)
    # whole cycles per tile that add up to the exact shares: p consecutive tiles of one block size sum to its
    # cycles (rounding each share up instead would add up to p - 1 cycles per step)
    marks = np.floor(np.cumsum(np.tile(per.ravel(), work.g)) + 1e-6).astype(np.int64)
    out = np.diff(marks, prepend=0)
    out[0] += fill
    return out


def attention_mapping(work: AttentionWork, arch, timing: str, name: str = "", reserve_bytes: int = 0) -> AttentionMapping:
    """Blocks that fit, chosen to minimise max(compute, traffic / bandwidth); ties go to fewer tiles."""
    core = arch.per_core(reserve_bytes)     # tiles share the activation level with activations kept on chip
    r = arch.array.rows
    def sizes(n):
        out, t = {n}, r
        while t < n:
            out.add(t)
            t *= 2
        return sorted(out)
    best = None
    for bq in sizes(work.sq):
        for bkv in sizes(work.skv):
            need = attention_footprint(work, bq, bkv, core)
            if any(need[lv.name] > lv.capacity_bytes for lv in core.onchip):
                continue
            m = AttentionMapping(arch.array.dataflow, bq, bkv)
            compute = int(attention_tile_compute(work, m, arch, timing).sum())
            dma = sum(attention_traffic(work, bq)) / arch.offchip.bandwidth_bytes_per_cycle
            tiles = work.g * -(-work.sq // bq) * -(-work.skv // bkv)
            key = (max(compute, dma), tiles, bq, bkv)
            if best is None or key < best[0]:
                best = (key, m)
    if best is None:
        raise InputError(f"op '{name}': no attention block of {r} query rows fits the on-chip buffers; enlarge "
                         + ", ".join(f"memory.{lv.name}.capacity_bytes" for lv in arch.onchip))
    return best[1]
