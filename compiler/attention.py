"""Fused attention (flash attention): its loop nest, block tiling, on-chip footprint, DRAM traffic and per-tile
compute. compiler/fusion.py finds the pattern QK^T -> scale/mask -> softmax -> .V and builds an AttentionWork;
the mapper picks blocks here (attention_mapping); the simulator issues its tiles from attention_traffic and
attention_tile_compute."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from math import floor, lcm
from typing import ClassVar

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.errors import InputError
from tilesim.compiler.cost import (
    IntArray,
    array_cycles,
    compute_cycles,
    extents,
    feed_cycles,
    fold_overhead,
    nbytes,
)
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.mapper import TIE_BAND
from tilesim.compiler.tiling import level_footprint

SOFTMAX_OPS = 5                 # per score: max, subtract, exp, sum, divide (compiler/ops.py)
RESCALE_OPS = 2                 # online softmax: per output element and kv block, rescale and accumulate

# Attention tiles are worked out in chunks and simulated as runs of lockstep steps of the cores (sim/core/commands.py
# attention_commands), so building them takes ~0.1 us a tile and memory grows with the steps, not the tiles: an
# entry of ~150 bytes per step where the steps do not merge into runs (a step's cycles alternate between two whole
# numbers). Bounds far above real multi-core workloads (llama3-8b prefill 64 x 4096 on h100: 8.4 M tiles, 64 k steps
# per layer; 128 k tokens x 32 heads: 134 M tiles) keep a run under a few minutes and ~1 GB.
ATTENTION_MAX_TILES = 2_000_000_000
ATTENTION_MAX_STEPS = 4_000_000


@dataclass(frozen=True)
class AttentionWork:
    """Fused attention over g = batch x heads: S = Q K^T (sq x skv, K = d), softmax, O = S V (sq x dv, K = skv).
    K and V are shared by `kv_share` query heads (GQA/MQA); `score_ops` are the fused scale/mask ops per score.
    `kv_dtype` is K's and V's type when it differs from Q's (a quantized KV cache); "" means `dtype`.
    `kv_shared`: V is the first dv columns of K's buffer (MLA's absorbed decode attends over its latent cache as
    both keys and values, FlashMLA-style), so each K/V block is read once: skv x d values, not skv x (d + dv)."""
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
    kv_shared: bool = False

    on_array: ClassVar[bool] = True

    @property
    def kv_type(self) -> str:
        """The data type K and V are read in."""
        return self.kv_dtype or self.dtype

    @property
    def kv_width(self) -> int:
        """Values per key/value row read: d + dv, or d when V is part of K's buffer (kv_shared)."""
        return self.d if self.kv_shared else self.d + self.dv

    @property
    def macs(self) -> int:
        """QK^T and PV multiply-accumulates."""
        return self.g * self.sq * self.skv * (self.d + self.dv)

    def parts(self) -> tuple[Contraction, Contraction]:
        """The two contractions it fuses, as unfused kernels would run them."""
        qk = Contraction(self.g, self.sq, self.skv, self.d, self.dtype, self.kv_type, self.dtype, b_is_param=False)
        pv = Contraction(self.g, self.sq, self.dv, self.skv, self.dtype, self.kv_type, self.dtype, b_is_param=False)
        return qk, pv

    def operand_read_bytes(self) -> tuple[int, int]:
        """Bytes of Q, and of K and V, each read once (one query block: attention_traffic at block_q = sq)."""
        q_read, kv_read, _ = attention_traffic(self, self.sq)
        return q_read - self.extra_read_bytes, kv_read

    def vector_ops(self, block_kv: int) -> int:
        """Vector-unit ops: softmax and the fused score chain per score, online-softmax rescaling per output element
        and kv block."""
        n_kv = -(-self.skv // block_kv)
        return ((SOFTMAX_OPS + self.score_ops) * self.g * self.sq * self.skv
                + RESCALE_OPS * self.g * self.sq * self.dv * n_kv)


@dataclass(frozen=True)
class AttentionMapping:
    """Flash-attention tiling: query rows per block and key/value rows per block (kv blocks innermost)."""
    dataflow: str
    block_q: int
    block_kv: int

    def describe(self) -> str:
        """One line for reports, e.g. 'ws attention q=128 kv=256'."""
        return f"{self.dataflow} attention q={self.block_q} kv={self.block_kv}"

    def tile_count(self, work: AttentionWork) -> int:
        """Tiles (head, q block, kv block) of `work`."""
        return work.g * -(-work.sq // self.block_q) * -(-work.skv // self.block_kv)


def attention_footprint(work: AttentionWork, bq: int, bkv: int, arch: ArchConfig) -> dict[str, int]:
    """On-chip bytes per level: the Q block (input), K and V blocks (weight), scores and O accumulators (output)."""
    tiles = {"input": int(nbytes(bq * work.d, work.dtype)),
             "weight": int(nbytes(bkv * work.kv_width, work.kv_type)),
             "output": int(nbytes(bq * bkv + bq * work.dv, arch.array.acc_dtype))}
    return level_footprint(tiles, arch)


def attention_traffic(work: AttentionWork, bq: int) -> tuple[int, int, int]:
    """DRAM bytes (Q and extra inputs, K and V, O): Q and O once; K and V once per query block and per kv head,
    each kv head serving kv_share query heads in turn (d + dv values per key row, d when V shares K's buffer)."""
    n_q = -(-work.sq // bq)
    q = int(nbytes(work.g * work.sq * work.d, work.dtype)) + work.extra_read_bytes
    kv = int(nbytes(-(-work.g // work.kv_share) * n_q * work.skv * work.kv_width, work.kv_type))
    o = int(nbytes(work.g * work.sq * work.dv, work.dtype))
    return q, kv, o


def _block_cycles(work: AttentionWork, mapping: AttentionMapping, arch: ArchConfig,
                  timing: str) -> tuple[IntArray, IntArray, dict[tuple[int, int], Fraction], int]:
    """(q block sizes, kv block sizes, exact cycles of each distinct (q block, kv block) tile, the kernel's one fill
    and drain): a tile's two block matmuls on the array, overlapped with softmax, score-chain and online-softmax
    rescaling ops on the vector unit (the longer of the two), as its 1/p share of a step of p cores."""
    eq, ek = extents(work.sq, mapping.block_q), extents(work.skv, mapping.block_kv)
    df = mapping.dataflow
    # tiles run on p cores in lockstep: heads and q blocks are independent, and kv blocks split across cores
    # with a final rescale-and-sum as flash-decoding does when heads and q blocks are fewer than the cores
    p = min(arch.cores, work.g * eq.size * ek.size)
    core = arch.per_core() if arch.cores > 1 else arch
    lanes = arch.vector.lanes * arch.vector.ops_per_lane_cycle * p
    t = DATAFLOWS[df].streamed           # each block product is one tile: its whole streamed loop streams at once
    fill = 0 if timing == "scalesim" else fold_overhead(core.array.rows, core.array.cols, df)

    def product(c: Contraction) -> int:
        if not fill:
            return compute_cycles(c, core, df, timing, getattr(c, t))
        return max(array_cycles(c, core.array, df, timing, getattr(c, t)) - fill, feed_cycles(c, df, core))

    def block(bq: int, bkv: int) -> Fraction:
        qk = Contraction(1, bq, bkv, work.d, work.dtype, work.dtype, work.dtype, b_is_param=False)
        pv = Contraction(1, bq, work.dv, bkv, work.dtype, work.dtype, work.dtype, b_is_param=False)
        ops = (SOFTMAX_OPS + work.score_ops) * bq * bkv + RESCALE_OPS * bq * work.dv
        return max(Fraction(product(qk) + product(pv), p), Fraction(ops, lanes))  # this tile's 1/p share of a step
    cost = {(int(a), int(b)): block(int(a), int(b)) for a in set(eq.tolist()) for b in set(ek.tolist())}  # <= 4
    return eq, ek, cost, fill


def attention_compute_cycles(work: AttentionWork, mapping: AttentionMapping, arch: ArchConfig, timing: str) -> int:
    """All tiles' cycles, the sum of attention_tile_compute in closed form: floor(g x sum over the <= 4 distinct
    (q block, kv block) sizes of their count x exact cycles) + one fill and drain (exact rationals)."""
    eq, ek, cost, fill = _block_cycles(work, mapping, arch, timing)
    nq, nk = Counter(eq.tolist()), Counter(ek.tolist())
    whole = sum(nq[a] * nk[b] * c for (a, b), c in cost.items()) * work.g
    return floor(whole) + fill


def attention_compute_marks(work: AttentionWork, mapping: AttentionMapping, arch: ArchConfig, timing: str,
                            tiles: IntArray) -> IntArray:
    """floor(S_t) for the given tile indices t (tiles in (head, q block, kv block) order): S_t the exact sum of the
    cycle shares (_block_cycles) of tiles 0..t, without the fill; worked out from the tile's head and place in its
    head (one head's prefix sums), never from every tile before it."""
    eq, ek, cost, _ = _block_cycles(work, mapping, arch, timing)
    qs, qi = np.unique(eq, return_inverse=True)        # each block's index among the distinct sizes
    ks, ki = np.unique(ek, return_inverse=True)
    den = lcm(*(c.denominator for c in cost.values()))
    scaled = [cost[int(a), int(b)].numerator * (den // cost[int(a), int(b)].denominator) for a in qs for b in ks]
    code = (qi[:, None] * ks.size + ki[None, :]).ravel()  # one head's tiles: q size index x len(ks) + kv size index
    whole = np.cumsum(np.array([x // den for x in scaled], dtype=np.int64)[code])   # S = whole parts + fractions
    part = np.cumsum(np.array([x % den for x in scaled], dtype=np.int64)[code])     # (x den): both per head
    t = np.asarray(tiles, dtype=np.int64)
    head, at = np.divmod(t, code.size)
    if den * (int(t.max(initial=0)) + 1) < 2**62:       # the fractions' sum in int64 ...
        frac = head * int(part[-1]) + part[at]
    else:                                               # ... or in Python integers
        frac = head.astype(object) * int(part[-1]) + part[at].astype(object)
    cycles: np.ndarray = head * int(whole[-1]) + whole[at] + np.asarray(frac // den, dtype=np.int64)
    return cycles


def attention_tile_compute(work: AttentionWork, mapping: AttentionMapping, arch: ArchConfig,
                           timing: str) -> IntArray:
    """Cycles of every (head, q block, kv block) tile in order (_block_cycles' exact shares). scalesim timing pays
    every block product's fills and drains; pipelined timing overlaps them between consecutive products, as for
    the folds of one contraction (compiler/cost.py array_cycles), so the kernel pays one fill and drain, on its
    first tile. Whole cycles per tile that add up to the exact shares: tile t gets floor(S_t) - floor(S_t-1)
    (attention_compute_marks), so p consecutive tiles of one block size sum to its cycles (rounding each share up
    instead would add up to p - 1 cycles per step)."""
    out = np.diff(attention_compute_marks(work, mapping, arch, timing, np.arange(mapping.tile_count(work))),
                  prepend=0)
    out[0] += attention_tile_compute_fill(work, mapping, arch, timing)
    return out


def attention_tile_compute_fill(work: AttentionWork, mapping: AttentionMapping, arch: ArchConfig, timing: str) -> int:
    """The one fill and drain a kernel pays on its first tile (pipelined timing; 0 for scalesim)."""
    return _block_cycles(work, mapping, arch, timing)[3]


def attention_mapping(work: AttentionWork, arch: ArchConfig, timing: str, name: str = "",
                      reserve_bytes: int = 0) -> AttentionMapping:
    """Blocks that fit, chosen to minimise max(compute, traffic / bandwidth); within TIE_BAND of the least, ties go
    to fewer DRAM bytes, then fewer tiles."""
    core = arch.per_core(reserve_bytes)     # tiles share the activation level with activations kept on chip
    r = arch.array.rows

    def sizes(n: int, t: int = r) -> list[int]:
        out = {n}
        while t < n:
            out.add(t)
            t *= 2
        return sorted(out)

    def search(blocks_q: list[int]) -> list[tuple[float, int, int, int, int, AttentionMapping]]:
        found = []
        for bq in blocks_q:
            for bkv in sizes(work.skv):
                need = attention_footprint(work, bq, bkv, core)
                tiles = work.g * -(-work.sq // bq) * -(-work.skv // bkv)
                steps = -(-tiles // min(arch.cores, tiles))
                if (tiles > ATTENTION_MAX_TILES or steps > ATTENTION_MAX_STEPS
                        or any(need[lv.name] > lv.capacity_bytes for lv in core.onchip)):
                    continue        # more tiles or steps than the simulator works out in a few minutes and ~1 GB
                m = AttentionMapping(arch.array.dataflow, bq, bkv)
                compute = attention_compute_cycles(work, m, arch, timing)
                moved = sum(attention_traffic(work, bq))
                found.append((max(compute, moved / arch.offchip.bandwidth_bytes_per_cycle), moved, tiles, bq, bkv,
                              m))
        return found
    # query blocks of at least the array's rows; only when none fits (MLA decode: 576-wide latent rows with fp32
    # score and O accumulators), blocks of r/2, r/4, ... 1 rows, the array's rows idling in proportion
    found = search(sizes(work.sq)) or search([bq for bq in (r >> s for s in range(1, r.bit_length()))
                                              if bq < work.sq])
    # blocks within TIE_BAND of the best time are ties (as in the mapping search): fewer DRAM bytes, then tiles
    tie = min((f[0] for f in found), default=0.0) * (1 + TIE_BAND)
    best = min(((f[0] > tie, f[1:5] if f[0] <= tie else f[:5]), f[5]) for f in found) if found else None
    if best is None:
        raise InputError(f"op '{name}': no attention block (even of one query row) fits the on-chip buffers in at most "
                         f"{ATTENTION_MAX_STEPS:,} steps of the cores ({ATTENTION_MAX_TILES:,} tiles); use a shorter "
                         "sequence or a smaller batch, or enlarge "
                         + ", ".join(f"memory.{lv.name}.capacity_bytes" for lv in arch.onchip))
    return best[1]


__all__ = ["RESCALE_OPS", "SOFTMAX_OPS", "AttentionMapping", "AttentionWork", "attention_compute_cycles",
           "attention_compute_marks", "attention_footprint", "attention_mapping", "attention_tile_compute",
           "attention_tile_compute_fill", "attention_traffic"]
