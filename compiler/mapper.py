"""Mapping search: every legal (tile sizes x loop order x held or not) of a contraction scored with the closed-form
cost model (held: the operand the middle loop does not index stays on chip across it, compiler.cost.Mapping.hold).

The score of a candidate is the same arithmetic the simulator does, in closed form:
  compute  = compute_cycles(work, arch, dataflow, timing, T tile): fold timing of each spatial tile, SRAM feeds
             (compiler.cost),
             each draining tile floored at its share of a fused epilogue's vector cycles, stretched to the one
             on-chip level's time for every byte through it, less the first load and last store, when that
             exceeds the DMA time (as the simulator's level_bound)
  traffic  = sum over operands of reps(order) x sweep bytes, partial-sum spills included (compiler.cost); a held
             operand is swept once and a held A or B loads in the middle loop's first pass only
  latency  ~ first load + last compute + sum over tile transitions of max(compute, transfer, (transfer + latency
             + compute) / 2) + last store + 2 x latency (a draining tile's compute with its epilogue; the last
             compute less what the previous store hides; where whole tiles' compute covers latency + transfer,
             the innermost loop's short last tile costs max(its compute, latency + transfer); tiles of under a
             cycle's compute, c, are whole cycles in the simulator: c max(1, transfer) + (1 - c) transfer), at
             least traffic / bandwidth + latency and (tiles x latency + traffic / bandwidth) / 2  (double buffered)
           ~ compute + traffic / bandwidth + tiles x latency                          (single buffered)
  energy   ~ DRAM read/write bytes x the arch's pJ per byte (the only term that depends on the tiling)
The candidate grid holds every size the naive tiler can reach (its halving chains) and does not depend on buffer
capacities, so the search is never worse than the naive tiling on the objective, and a bigger buffer (a superset of
legal candidates) never makes it worse.
Candidates within 1% (TIE_BAND) of the best objective are ties, the closed form being about that accurate; ties
go to less DRAM traffic, then fewer tiles, then dataflow, sizes and order: deterministic. The shortlist handed to an
evaluator holds the best few of that ranking, the best by pure objective and the naive tiling.
A kernel adds to its loop nest (KernelContext): a fused epilogue's vector cycles, which floor each draining tile's
time, and the cores that share its A or B tiles (a split whose shared level or cache loads them once), whose part
of those tiles' traffic is this core's.
Only whether a candidate fits depends on the buffer capacities. So the scores of every ranking row (computed at
once, _score_rows) are kept per (loop nest, arch without capacities) in _ranked; a search for one capacity checks
which candidates fit and takes the best few of each row: the first time (a single run never asks twice) from the
scores of the fitting candidates alone, with partial sorts, and of those only the ones whose DRAM floor leaves
them a chance (_pickable_scores); when asked again or in a sweep, from every candidate's scores, ranked once and
kept (the compiled estimate leaves unworked the cycles of candidates no capacity lets a search pick). Archs that
differ only in buffer sizes (a sweep, the per-kernel share left beside activations kept on chip) share them; a
single run keeps few (RANKINGS_BYTES) and a sweep many (keep_rankings).
"""
from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from tilesim.arch.config import ArchConfig
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.errors import InputError, field_error
from tilesim.compiler.cost import (
    LOOPS,
    MAX_TILES,
    OPERAND_DIMS,
    Mapping,
    a_tile_bytes,
    feed_cycles,
    fold_overhead,
    folds,
    held_operand,
    hold_matters,
    level_feed_bytes,
    nbytes,
    spatial_dims,
    tiled_folds,
)
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.memo import SizedMemo
from tilesim.compiler.sorting import lexsort, then_by
from tilesim.compiler.sparsity import b_tile_bytes, sparse_k
from tilesim.compiler.tiling import alignment, footprint, halve, level_footprint, naive_mapping, tile_bytes

Array = npt.NDArray[Any]     # per-candidate values (int64 or float64), or (orders, candidates)
Position = tuple[int, Array, dict[str, Any], Array]  # (loop position, its trips, per operand: changes when it
#                                                       steps, its last iteration's extent / its tile)
OBJECTIVES = ("latency", "energy", "edp")
ORDERS = tuple("".join(p) for p in itertools.permutations("mnk"))
ROWS = 2 * len(ORDERS)   # ranking rows: each loop order, without and with its middle loop's operand held
SHORTLIST = 4        # candidates handed to an evaluator (the simulator) when lower() is given one
TIE_BAND = 0.01      # objectives within 1% of the best are ties: closed forms are about that accurate


@dataclass(frozen=True)
class KernelContext:
    """What the estimate needs of a contraction's kernel beyond its loop nest: the vector cycles of a fused
    epilogue over the loop nest's outputs, how many lockstep cores share each A (input) and B (weight) tile (a
    split over cores whose shared level or cache loads such tiles once: sim/core/commands.py combine_cores), and
    which operands an on-chip copy serves (--fusion full: compiler/residency.py), which then cross no channel."""
    epilogue_cycles: int = 0
    a_sharers: int = 1
    b_sharers: int = 1
    a_kept: bool = False
    b_kept: bool = False
    out_kept: bool = False

    def part(self, operand: str) -> float:
        """The part of each of the operand's tiles ("a", "b" or "out") this core moves over the channel."""
        kept, sharers = {"a": (self.a_kept, self.a_sharers), "b": (self.b_kept, self.b_sharers),
                         "out": (self.out_kept, 1)}[operand]
        return 0.0 if kept else 1 / sharers


PLAIN = KernelContext()


@dataclass(frozen=True)
class Choice:
    """The searched mapping with its estimated cost, and the runner-up for explanations."""
    mapping: Mapping
    cycles: float
    dram_bytes: int
    energy_pj: float
    runner_up: Mapping | None
    runner_up_cycles: float
    runner_up_dram_bytes: int
    candidates: int
    shortlist: tuple[Mapping, ...] = ()   # best few by estimate, the naive tiling always among them


def tile_sizes(size: int, unit: int) -> np.ndarray:
    """Candidate tile sizes for a loop of `size`: multiples of `unit` doubling up to the size, the size itself,
    and the sizes that split it into 2..8 near-equal aligned parts."""
    out = {size}
    t = unit
    while t < size:
        out.add(t)
        t *= 2
    for parts in range(2, 9):
        s = -(-size // parts)
        out.add(min(size, -(-s // unit) * unit) if s >= unit else s)
    small = 1
    while small < min(unit, size):       # below one array row: powers of two only (tiny buffers)
        out.add(small)
        small *= 2
    t = size
    while t > 1:                         # every size the naive tiler can reach, so it is always a candidate
        t = halve(t, unit)
        out.add(t)
    return np.array(sorted(out), dtype=np.int64)


def _sweep(f: Callable[[Array, Array], Array], size_a: int, tile_a: Array, size_b: int, tile_b: Array) -> Array:
    """Sum of f(extent_a, extent_b) over the tile grid: full tiles, edge tiles and the corner, elementwise."""
    na, nb = -(-size_a // tile_a), -(-size_b // tile_b)
    ra, rb = size_a - (na - 1) * tile_a, size_b - (nb - 1) * tile_b
    return np.asarray((na - 1) * (nb - 1) * f(tile_a, tile_b) + (na - 1) * f(tile_a, rb) + (nb - 1) * f(ra, tile_b)
            + f(ra, rb))


def _reps(order: str, trips: dict[str, np.ndarray], dims: tuple[str, ...]) -> np.ndarray:
    """Vectorised compiler.cost.reuse_reps: product of the trips of loops the operand does not depend on, taken
    over the loops outside (and at) the innermost loop it does depend on that has more than one trip."""
    reps = np.ones_like(trips["m"])
    pending = np.ones_like(trips["m"])
    for d in order:                     # walk outer to inner; commit pending factors when a relevant loop iterates
        if d in dims:
            active = trips[d] > 1
            reps = np.where(active, reps * pending, reps)
            pending = np.where(active, 1, pending)
        else:
            pending = pending * trips[d]
    return reps


def _compute_cycles(work: Contraction, arch: ArchConfig, dataflow: str, timing: str, t_tile: Array,
                    s_tiles: tuple[Array, Array]) -> Array:
    """Vectorised compiler.cost.compute_cycles over T-tile sizes and spatial tiles (Sr, Sc tiles)."""
    r, c = arch.array.rows, arch.array.cols
    sr, sc, t = spatial_dims(work, dataflow)
    p = arch.array.macs_per_pe_cycle          # streamed elements per PE per cycle (compiler.cost.streamed_cycles)
    t, t_tile = -(-t // p), -(-t_tile // p)
    if timing == "scalesim":
        whole_loops = -(-work.g * folds(sr, sc, r, c) // arch.array.count)
        return np.full(t_tile.shape, whole_loops * (t + fold_overhead(r, c, dataflow)) - 1, dtype=np.int64)
    per_array = -(-work.g * tiled_folds(sr, s_tiles[0], r) * tiled_folds(sc, s_tiles[1], c) // arch.array.count)
    full, rem = t // t_tile, t % t_tile
    per_block = full * np.maximum(t_tile, r) + np.where(rem > 0, np.maximum(rem, r), 0)
    cycles = (r if DATAFLOWS[dataflow].preloads else 0) + per_array * per_block + r + c - 2
    return np.asarray(np.maximum(cycles, feed_cycles(work, dataflow, arch)))     # on-chip levels must keep up


@dataclass(frozen=True)
class _Base:
    """What a set of candidate tiles costs whatever the loop order: sweeps, footprint fit, compute, tile counts."""
    trips: dict[str, Array]
    a_sweep: np.ndarray
    b_sweep: np.ndarray
    c_fin: np.ndarray
    c_acc: np.ndarray
    fits: np.ndarray
    compute: np.ndarray
    n_tiles: np.ndarray
    first: np.ndarray
    last: np.ndarray
    level_feed: float = 0.0      # the one on-chip level holding every operand: bytes it feeds the array ...
    level_bw: float = 0.0        # ... and its bandwidth (0: no such level, or scalesim timing)
    drain_extra: Any = 0.0       # a fused epilogue's cycles beyond a tile's compute, on each output tile's last tile
    drain_share: Any = 0.0       # a fused epilogue's cycles on each output tile's last tile
    last_ratio: dict[str, Array] = field(default_factory=dict)   # per loop: its last tile's extent / its tile


def _fits(tiles: dict[str, np.ndarray], arch: ArchConfig) -> np.ndarray:
    """Whether each candidate's tiles fit every on-chip level (level_footprint), per candidate."""
    need = level_footprint(tiles, arch)
    fits = np.ones(next(iter(tiles.values())).shape, dtype=bool)
    for lv in arch.onchip:
        fits &= need[lv.name] <= lv.capacity_bytes
    return fits


def _trips(work: Contraction, tm: Any, tn: Any, tk: Any) -> dict[str, Any]:
    """Trips of the m, n and k loops for tile sizes (arrays of candidates or one candidate's ints)."""
    return {"m": -(-work.m // tm), "n": -(-work.n // tn), "k": -(-work.k // tk)}


def _base(work: Contraction, arch: ArchConfig, timing: str, dataflow: str, tm: Array, tn: Array, tk: Array,
          context: KernelContext = PLAIN) -> _Base:
    acc = arch.array.acc_dtype
    trips = _trips(work, tm, tn, tk)
    n_tiles = work.g * trips["m"] * trips["n"] * trips["k"]
    dims = DATAFLOWS[dataflow]
    t_tile = {"m": tm, "n": tn, "k": sparse_k(work, tk)}[dims.streamed]
    sr, sc, _ = spatial_dims(work, dataflow)
    spatial = {"m": tm, "n": tn, "k": np.full(tk.shape, sr if dims.rows == "k" else sc) if work.skip else tk}
    compute = _compute_cycles(work, arch, dataflow, timing, t_tile, (spatial[dims.rows], spatial[dims.cols]))
    drain_extra: Any = 0.0
    drain_share: Any = 0.0
    if context.epilogue_cycles:
        # as sim/core/commands.py: a fused epilogue's vector cycles, split over the output tiles as they drain,
        # floor each draining tile's time: compute + drains x max(0, epilogue per drain - compute per tile)
        drains = work.g * trips["m"] * trips["n"]
        drain_share = context.epilogue_cycles / drains
        drain_extra = np.maximum(0.0, drain_share - compute / n_tiles)
        compute = compute + drains * drain_extra
    tiles = tile_bytes(work, tm, tn, tk, arch.array.acc_dtype)
    bw = arch.offchip.bandwidth_bytes_per_cycle
    # a tile that lockstep cores share crosses the channel once for all of them: this core's part of it; an
    # operand kept on chip crosses it not at all (partial-sum spills always do, as in sim/core/commands.py)
    a, b, out = context.part("a"), context.part("b"), context.part("out")
    return _Base(trips=trips,
                 a_sweep=_sweep(lambda m, k: a_tile_bytes(work, m, k), work.m, tm, work.k, tk) * a,
                 b_sweep=_sweep(lambda k, n: b_tile_bytes(work, k, n), work.k, tk, work.n, tn) * b,
                 c_fin=_sweep(lambda m, n: nbytes(m * n, work.c_dtype), work.m, tm, work.n, tn) * out,
                 c_acc=_sweep(lambda m, n: nbytes(m * n, acc), work.m, tm, work.n, tn),
                 fits=_fits(tiles, arch), compute=compute, n_tiles=n_tiles,
                 first=(tiles["input"] * a + tiles["weight"] * b) / bw,
                 last=nbytes(tm * tn, work.c_dtype) * out / bw, drain_extra=drain_extra, drain_share=drain_share,
                 last_ratio={d: (size - (trips[d] - 1) * tile) / tile
                             for d, size, tile in (("m", work.m, tm), ("n", work.n, tn), ("k", work.k, tk))},
                 **_one_level(work, arch, timing, dataflow))


def _one_level(work: Contraction, arch: ArchConfig, timing: str, dataflow: str) -> dict[str, float]:
    """level_feed and level_bw of _Base: when one on-chip level holds every operand, its array feeds and its
    bandwidth, so that _estimate bounds a candidate by every byte through it, as the simulator does (its fills and
    stores too: sim/core/simulate.py level_bound); the scalesim timing assumes the buffers keep up."""
    homes = {arch.home(o).name for o in ("input", "weight", "output")}
    if timing == "scalesim" or len(homes) != 1:
        return {}
    level = arch.home("input")
    return {"level_feed": float(level_feed_bytes(work, dataflow, arch)[level.name]),
            "level_bw": level.bandwidth_bytes_per_cycle}


def score(work: Contraction, arch: ArchConfig, timing: str, dataflow: str, tm: Array, tn: Array, tk: Array,
          order: str, context: KernelContext = PLAIN,
          hold: bool = False) -> tuple[Array, Array, Array, Array, Array]:
    """Estimated (cycles, DRAM bytes, DRAM energy pJ, fits, tiles) for arrays of candidate tiles, one loop order
    (`hold`: Mapping.hold; `fits` is then the held footprint's)."""
    base = _base(work, arch, timing, dataflow, tm, tn, tk, context)
    if hold:
        base = replace(base, fits=_fits(_held_tiles(work, arch, tm, tn, tk, order), arch))
    return _score_order(work, arch, base, order, hold)


def _held_tiles(work: Contraction, arch: ArchConfig, tm: Array, tn: Array, tk: Array,
                order: str) -> dict[str, np.ndarray]:
    """tile_bytes with the operand `order`'s middle loop does not index spanning its innermost loop (Mapping.hold)."""
    tiles = tile_bytes(work, tm, tn, tk, arch.array.acc_dtype)
    held = held_operand(order)
    full = {"m": tm, "n": tn, "k": tk, order[2]: np.full(np.shape(tm), getattr(work, order[2]))}
    tiles[held] = tile_bytes(work, full["m"], full["n"], full["k"], arch.array.acc_dtype)[held]
    return tiles


def _score_order(work: Contraction, arch: ArchConfig, base: _Base, order: str,
                 hold: bool = False) -> tuple[Array, Array, Array, Array, Array]:
    trips, n_tiles = base.trips, base.n_tiles
    held = held_operand(order) if hold else None

    def reps(operand: str) -> Array:
        return np.ones_like(trips["m"]) if operand == held else _reps(order, trips, OPERAND_DIMS[operand])
    visit_spills = _reps(order, trips, OPERAND_DIMS["output"]) - 1
    spills = reps("output") - 1
    read = work.g * (reps("input") * base.a_sweep + reps("weight") * base.b_sweep + spills * base.c_acc)
    write = work.g * (base.c_fin + spills * base.c_acc)
    loops = [("g", np.full(n_tiles.shape, work.g))] + [(d, trips[d]) for d in order]

    def positions() -> Iterator[Position]:
        for p in range(len(loops) - 1, -1, -1):
            d, n_p = loops[p]
            changed = {o: 1.0 if d == "g" else _changes(loops[p:], OPERAND_DIMS[o]) for o in OPERAND_DIMS}
            if held in ("input", "weight") and p >= 2:    # loaded in the middle loop's first pass only
                changed[held] = changed[held] / trips[order[1]] if p == 3 else changed[held] * 0.0
            yield p, n_p, changed, base.last_ratio[d] if d != "g" else np.ones(n_tiles.shape)
    cycles, dram, pj = _estimate(work, arch, base, spills, read, write, positions(), visit_spills)
    return cycles, dram, pj, base.fits, n_tiles


def _estimate(work: Contraction, arch: ArchConfig, base: _Base, spills: Array, read: Array, write: Array,
              positions: Iterable[Position], visit_spills: Array | None = None) -> tuple[Array, Array, Array]:
    """(cycles, DRAM bytes, DRAM pJ) of candidates from their partial-sum spills and DRAM reads and writes, for
    one loop order or every order as rows (_score_orders); `positions` yields, innermost loop first, (position p,
    its trips, per operand the share of that loop's steps on which the operand is loaded); `visit_spills`: the
    output tiles' revisits (default `spills`; held partial sums revisit without spilling)."""
    visit_spills = spills if visit_spills is None else visit_spills
    trips, n_tiles = base.trips, base.n_tiles
    off = arch.offchip
    bw, lat = off.bandwidth_bytes_per_cycle, off.latency_cycles
    double = arch.double_buffered
    compute = base.compute
    if base.level_bw:
        # as sim/core/simulate.py level_bound: when the level's time for every byte through it (fills, feeds,
        # stores) exceeds the DMA time, the compute is stretched, tile by tile, to that time less the first load
        # and the last store (which cannot overlap it, and come on top)
        need = np.ceil(_level_time(base, read, write))
        target = need - base.first - base.last
        compute = np.where((need > (read + write) / bw) & (target > compute), target, compute)
    per_tile = compute / n_tiles
    if double:
        # Between consecutive tiles the DMA moves whatever changed while one tile computes. With 2 slots, tile
        # i + 2's load is issued when tile i has computed, so two loads land per (transfer + latency + compute):
        # a transition costs max(compute of a tile, transfer of what changed, (transfer + latency + compute) / 2)
        # (it was compute vs latency + transfer, which charged the latency of loads that stream back to back: a
        # DMA-bound GEMV 3-5% too high, and its tilings mis-ranked, issue 21). The outermost loop that steps
        # decides what changed; the loop at position p is the outermost to step on a fraction
        # (1 - 1/n_p) / prod(n_q, q inner to p) of transitions.
        visits = work.g * trips["m"] * trips["n"] * (visit_spills + 1)     # output-tile visits
        avg = {"input": base.a_sweep / (trips["m"] * trips["k"]), "weight": base.b_sweep / (trips["k"] * trips["n"])}
        c_moved = (work.g * spills * base.c_acc + write) / visits        # a partial-sum reload and a store
        # A fused epilogue's time falls on each output tile's last tile (the transitions where the output changes
        # after its final visit), where the DMA, two slots ahead, waits: spread over every tile, it hid under the
        # loads of DMA-bound K-split tilings, 35% under their simulated time (issue 21, case 4453)
        drains = work.g * trips["m"] * trips["n"]
        extra = base.drain_extra
        plain = per_tile - extra * drains / n_tiles
        final = 1 / (visit_spills + 1)                                    # visits that drain
        positions = list(positions)

        def moved_at(changed: dict[str, Any]) -> Array:
            return np.asarray(changed["input"] * avg["input"] + changed["weight"] * avg["weight"]
                              + changed["output"] * c_moved)
        # The innermost loop's last tile may be short (its extent `ratio` of a tile; compute is split by MACs).
        # Where whole tiles cover the latency of the load two ahead (compute >= latency + transfer: `bound`), a
        # short tile does not: the load after it waits, so it costs max(its compute, latency + transfer), and the
        # whole tiles their own compute, not the mean (averaged, tilings of K by 5 on 72 came out 4% under their
        # simulated time: case 3055). A draining tile costs at least its share of a fused epilogue (`drain`), the
        # kernel's last tile no wait. Elsewhere the mean stands.
        _, n_in, changed_in, ratio = positions[0]
        short = (n_in > 1) & (ratio < 1)
        scale = n_in / np.where(short, n_in - 1 + ratio, n_in)           # a tile whole along it / the mean tile
        whole = plain * scale
        window = lat + moved_at(changed_in) * scale / bw                  # the latency of a whole tile's load
        bound = short & (whole >= window)
        drain, rem = base.drain_share, whole * ratio
        plain, extra = np.where(bound, whole, plain), np.where(bound, np.maximum(drain - whole, 0), extra)
        short_cost = final * np.maximum(np.maximum(rem, drain), window) + (1 - final) * np.maximum(rem, window)
        short_cost = short_cost - (plain + final * extra)                 # what the transitions charge it
        last_wait = np.maximum(np.maximum(rem, drain), window) - np.maximum(rem, drain)   # none: nothing after it
        steady = (plain + extra).astype(np.float64)                       # the last tile's compute (it drains)
        hidden = np.zeros(n_tiles.shape, dtype=np.float64)
        found = np.zeros(n_tiles.shape, dtype=bool)                       # the innermost loop that steps, seen
        stored = write / visits / bw                                      # a visit's store
        inner = np.ones(n_tiles.shape, dtype=np.float64)
        for p, n_p, changed, _ in positions:
            moved = moved_at(changed)
            transitions = n_tiles / inner * (1 - 1 / n_p) if p else (work.g - 1) * n_tiles / (inner * work.g)
            transfer = moved / bw
            paced_now = _paced(plain, moved, transfer, lat)
            f = changed["output"] * final                                 # transitions out of a draining tile
            plain_cost = _transition(plain, paced_now, moved, transfer, lat)
            if np.any(extra):         # per candidate: one that drains within its compute costs as if none did
                drained = plain + extra
                steady = steady + transitions * np.where(extra > 0, (1 - f) * plain_cost + f * _transition(
                    drained, _paced(drained, moved, transfer, lat), moved, transfer, lat), plain_cost)
            else:
                steady = steady + transitions * plain_cost
            # The last transition steps the innermost loop that steps; the previous tile's store, which the DMA
            # moves after the last tile's load, overlaps the last tile's compute as far as that transition is
            # DMA-bound (charged in full, a 2-tile DMA-bound GEMM came out 16% above the simulated time, which
            # streams every transfer back to back: issue 21, case 1445)
            last = ~found & (n_p > 1)
            hidden = np.where(last, np.minimum(np.minimum(plain, changed["output"] * stored),
                                               np.maximum(paced_now - plain, 0)), hidden)
            found = found | last
            inner = inner * n_p
        steady = steady - hidden + np.where(bound, n_tiles / n_in * short_cost - last_wait, 0)
        # at least the DMA floor (added to the first load and the last store, it counted them twice)
        cycles = np.maximum(steady + base.first + base.last + 2 * lat, _dma_floor(n_tiles, (read + write) / bw, lat))
    else:
        cycles = compute + (read + write) / bw + n_tiles * lat
    if base.level_bw:                     # fills, feeds and stores all take the level's bandwidth
        cycles = np.maximum(cycles, _level_time(base, read, write))
    return cycles.astype(np.float64), (read + write).astype(np.int64), _dram_pj(arch, read, write)


def _dma_floor(n_tiles: Array, dma: Array, lat: float) -> Array:
    """The one DMA moves every byte after the first load's latency, with at most 2 loads outstanding: (n x latency
    + all transfers) / 2 at least (`dma`: the transfers' cycles)."""
    return np.maximum((n_tiles * lat + dma) / 2, dma + lat)


def _level_time(base: _Base, read: Array, write: Array) -> Array:
    """The one on-chip level's cycles for every byte through it: its array feeds, fills and stores."""
    return np.asarray((base.level_feed + read + write) / base.level_bw)


def _dram_pj(arch: ArchConfig, read: Array, write: Array) -> Array:
    """DRAM energy (pJ) of `read` and `write` bytes at the arch's off-chip pJ per byte (1 pJ a byte unpriced)."""
    off, table = arch.offchip, arch.energy.actions
    pj = (read * table[f"{off.name}.read_byte"].pj + write * table[f"{off.name}.write_byte"].pj
          if f"{off.name}.read_byte" in table and f"{off.name}.write_byte" in table else (read + write) * 1.0)
    return np.asarray(pj, dtype=np.float64)


def _cycles_floor(arch: ArchConfig, base: _Base, read: Array, write: Array) -> Array:
    """What _estimate's cycles are never below, from the DRAM bytes alone: the DMA floor its double-buffered cycles
    end with (_dma_floor), or the single-buffered DMA and latencies its compute is added to, and the one on-chip
    level's time (_level_time); the same operations in the same order, so never above them."""
    off = arch.offchip
    bw, lat = off.bandwidth_bytes_per_cycle, off.latency_cycles
    dma = (read + write) / bw
    if arch.double_buffered:
        floor = _dma_floor(base.n_tiles, dma, lat)
    else:
        floor = dma + base.n_tiles * lat
    if base.level_bw:
        floor = np.maximum(floor, _level_time(base, read, write))
    return np.asarray(floor)


def _paced(compute: Any, moved: Array, transfer: Array, lat: float) -> Array:
    """A double-buffered transition's DMA time with `compute` cycles a tile (_estimate): two loads in flight, so
    max(transfer, (transfer + latency + compute) / 2) where something moves."""
    return np.where(moved > 0, np.maximum(transfer, (transfer + lat + compute) / 2), 0)


def _transition(compute: Array, paced: Array, moved: Array, transfer: Array, lat: float) -> Array:
    """A transition's cost: max(compute, paced). The simulator splits a kernel's compute over its tiles in whole
    cycles (sim/core/commands.py): under a cycle a tile, a fraction c of the tiles take one cycle and the rest none,
    and a tile of no compute waits for its own load, so there it costs c max(1, paced(1)) + (1 - c) paced(0)
    (averaged, 2x2x2 tiles of a conv on an 8x8 array came out 29% under their simulated time)."""
    whole = np.maximum(compute, paced)
    under = compute < 1
    if not under.any():
        return whole
    return np.where(under, compute * np.maximum(1.0, _paced(1.0, moved, transfer, lat))
                    + (1 - compute) * _paced(0.0, moved, transfer, lat), whole)


def _changes(loops: list[tuple[str, Array]], dims: tuple[str, ...]) -> Array:
    """1 where an operand indexed by `dims` changes when the first of `loops` steps (and the inner ones reset):
    it depends on that loop or on an inner loop with more than one trip; else 0."""
    d0, _ = loops[0]
    out = np.zeros(loops[0][1].shape, dtype=np.float64) + (1.0 if d0 in dims else 0.0)
    for d, n in loops[1:]:
        if d in dims:
            out = np.maximum(out, (n > 1).astype(np.float64))
    return out


# Loop positions of every order, outermost first, and whether the loop there indexes each operand: constants of
# _score_rows, which scores the six orders (and each with its hold) at once as rows of (rows, N) arrays.
@dataclass(frozen=True)
class _Rows:
    """Per ranking row (each order in ORDERS, once per hold in `holds`), as (rows, 1) arrays: the loop at each
    position, outermost first (`dims`, letters), whether it indexes each operand, whether loop d sits inside loop
    x, whether x is the middle loop, and whether the row holds its middle loop's operand."""
    dims: tuple[tuple[str, ...], ...]
    indexes: dict[str, tuple[Array, ...]]
    inside: dict[tuple[str, str], Array]
    middle: dict[str, Array]
    held: Array


@lru_cache(maxsize=4)
def _rows(holds: tuple[bool, ...]) -> _Rows:
    """_Rows of the orders once per hold in `holds` (ROWS rows for (False, True))."""
    orders = [o for _ in holds for o in ORDERS]
    dims = tuple(tuple(o[p] for o in orders) for p in range(3))
    return _Rows(dims, {operand: tuple(np.array([[d in ds] for d in dims[p]]) for p in range(3))
                        for operand, ds in OPERAND_DIMS.items()},
                 {(x, d): np.array([[o.index(d) > o.index(x)] for o in orders]) for x in LOOPS for d in LOOPS},
                 {x: np.array([[o[1] == x] for o in orders]) for x in LOOPS},
                 np.array([[h] for h in holds for _ in ORDERS]))


def _score_orders(work: Contraction, arch: ArchConfig, base: _Base, hold: bool = False) -> tuple[Array, Array, Array]:
    """_score_order for every order in ORDERS at once: (cycles, DRAM bytes, pJ) as (6, N) arrays, row i for
    ORDERS[i] (with `hold`: each order's middle-loop operand held)."""
    return _score_rows(work, arch, base, (hold,))


def _score_rows(work: Contraction, arch: ArchConfig, base: _Base, holds: tuple[bool, ...],
                traffic: tuple[Array, ...] | None = None) -> tuple[Array, Array, Array]:
    """_score_order for every order in ORDERS, once per hold in `holds` (ranking rows: (False, True)), at once:
    (cycles, DRAM bytes, pJ) as (rows, N) arrays (`traffic`: _order_traffic's, when the caller has it). Only the
    reloads and the loop positions are built for all rows at once; the arithmetic is _estimate's, as for one
    order, so every value equals _score_order's bit for bit (tests/test_mapper.py)."""
    trips, n_tiles = base.trips, base.n_tiles
    k = _rows(holds)
    visit_spills, spills, read, write = _order_traffic(work, base, holds) if traffic is None else traffic
    middle = np.stack([trips[d] for d in k.dims[1]])

    def positions() -> Iterator[Position]:
        # per operand: a loop inside the current one steps and indexes it
        inner_steps: dict[str, Array | bool] = dict.fromkeys(OPERAND_DIMS, False)
        for p in range(3, -1, -1):                        # position 0 is the g loop, 1..3 the order's loops
            if p:
                n_p = np.stack([trips[d] for d in k.dims[p - 1]])          # the loop at position p, per row
                changed = {o: (k.indexes[o][p - 1] | inner_steps[o]).astype(np.float64) for o in OPERAND_DIMS}
                inner_steps = {o: inner_steps[o] | (k.indexes[o][p - 1] & (n_p > 1)) for o in OPERAND_DIMS}
                if any(holds) and p >= 2:                 # a held A or B loads in the middle loop's first pass
                    for o in ("input", "weight"):
                        x = next(d for d in LOOPS if d not in OPERAND_DIMS[o])
                        changed[o] = np.where(k.middle[x] & k.held, changed[o] / middle if p == 3
                                              else changed[o] * 0.0, changed[o])
                yield p, n_p, changed, np.stack([base.last_ratio[d] for d in k.dims[p - 1]])
            else:
                yield p, np.full(n_tiles.shape, work.g), dict.fromkeys(OPERAND_DIMS, 1.0), np.ones(n_tiles.shape)
    return _estimate(work, arch, base, spills, read, write, positions(), visit_spills)


def _order_traffic(work: Contraction, base: _Base, holds: tuple[bool, ...]) -> tuple[Array, Array, Array, Array]:
    """Per order in ORDERS, once per hold in `holds` (rows of (rows, N) arrays): the output tiles' revisits, the
    partial-sum spills, and the DRAM bytes read and written."""
    trips, n_tiles = base.trips, base.n_tiles
    k = _rows(holds)

    def reps(operand: str, held: bool = True) -> Array:
        # _reps per row: the operand does not depend on one loop, x; it is reloaded trips[x] times when a loop it
        # depends on with more than one trip sits inside x, else once; in a held row (x is the middle loop), once
        x = next(d for d in LOOPS if d not in OPERAND_DIMS[operand])
        inside = np.zeros((k.held.shape[0], *n_tiles.shape), dtype=bool)
        for d in OPERAND_DIMS[operand]:
            inside |= k.inside[x, d] & (trips[d] > 1)
        return np.where(inside & ~(k.middle[x] & k.held) if held else inside, trips[x], 1)

    visit_spills = reps("output", False) - 1
    spills = reps("output") - 1
    read = work.g * (reps("input") * base.a_sweep + reps("weight") * base.b_sweep + spills * base.c_acc)
    write = work.g * (base.c_fin + spills * base.c_acc)
    return visit_spills, spills, read, write


def _objective(objective: str, cycles: Array, dram: Array, pj: Array) -> Array:
    return {"latency": cycles, "energy": pj, "edp": cycles * pj}[objective]


def search(work: Contraction, arch: ArchConfig, timing: str, objective: str = "latency", name: str = "",
           context: KernelContext = PLAIN) -> Choice:
    """Best mapping by objective over tile sizes and loop orders for the arch's dataflow (cached per shape);
    `context`: what the kernel adds to its loop nest (a fused epilogue, tiles shared by cores)."""
    if objective not in OBJECTIVES:
        raise field_error("objective", f"got '{objective}', allowed: {', '.join(OBJECTIVES)}")
    try:
        return _search_cached(work, _ArchKey(arch), timing, objective, context)
    except _NoFit:
        naive_mapping(work, arch, name=name)     # raises the InputError naming the level that is too small
        levels = ", ".join(f"memory.{lv.name}.capacity_bytes" for lv in arch.onchip)
        raise InputError(f"op '{name}': every tiling that fits the on-chip buffers needs more than {MAX_TILES:,} "
                         f"tiles; enlarge {levels}") from None


class _NoFit(Exception):
    pass


class _ArchKey:
    """Hashable wrapper: the parts of an arch that decide a mapping (array, memory levels, off-chip energy)."""

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        off = arch.offchip.name
        table = arch.energy.actions
        self.key = (arch.array, arch.memory, tuple(table[a].pj for a in (f"{off}.read_byte", f"{off}.write_byte")
                                                   if a in table))
        self.hash = hash(self.key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ArchKey) and self.key == other.key


def dataflows(arch: ArchConfig) -> tuple[str, ...]:
    """Dataflows the search may choose: the arch's own first, then any others in `array.dataflows`."""
    return tuple(dict.fromkeys((arch.array.dataflow, *tuple(arch.array.dataflows))))


@lru_cache(maxsize=4096)
def _search_cached(work: Contraction, key: _ArchKey, timing: str, objective: str,
                   context: KernelContext = PLAIN) -> Choice:
    arch = key.arch
    nocap = _nocap(key)
    pool = []       # per (dataflow, order): (objective, dram, tiles, cycles, pJ, Mapping) of its best candidates
    candidates = 0
    for dataflow in dataflows(arch):
        r, ordered = _ranked(work, nocap, timing, dataflow, objective, context)
        candidates += int(r.tm.size) * ROWS
        # per row, the SHORTLIST best fitting candidates by (objective, dram, tiles) and, within TIE_BAND of the
        # best objective, by (dram, tiles, objective): from the kept rankings where it is ranked (a sweep's next
        # buffer sizes), else picked from the scores directly (the same candidates)
        picked = _ranked_picks(r, arch) if ordered else _direct_picks(r, arch)
        if picked is None:                               # no candidate fits
            continue
        o, i, s = picked
        values = zip(s.obj.tolist(), s.dram.tolist(), r.n_tiles[i].tolist(), s.cycles.tolist(), s.pj.tolist(),
                     r.tm[i].tolist(), r.tn[i].tolist(), r.tk[i].tolist(), (o % len(ORDERS)).tolist(),
                     (o >= len(ORDERS)).tolist(), strict=False)
        # candidates as MappingKeys (a held row picks only candidates whose hold matters, its `eligible`, so the
        # row's hold is the mapping's: _mapping): Mappings are made only for the few chosen
        pool += [(obj, dram, tiles, cycles, pj, (dataflow, tm, tn, tk, order, hold))
                 for obj, dram, tiles, cycles, pj, tm, tn, tk, order, hold in values]
    if not pool:
        raise _NoFit()
    pool = list({p[-1]: p for p in pool}.values())                   # one entry per mapping (an order's two
    #                                                                   rankings may pick the same candidate)
    tie = min(p[0] for p in pool) * (1 + TIE_BAND)
    # within TIE_BAND of the best objective, prefer less DRAM traffic, then fewer tiles; then the rest by objective
    ranked = sorted(pool, key=lambda p: (p[0] > tie, (p[1], p[2], p[0]) if p[0] <= tie else (p[0], p[1], p[2]),
                                         p[-1]))
    pure = min(pool, key=lambda p: (p[0], p[1], p[2], p[-1]))
    keys = [p[-1] for p in ranked]
    # the shortlist holds distinct tile visits: orders that differ only where loops of one trip sit visit the same
    # tiles in the same sequence, so they simulate alike (the first of each stands for them)
    # (in ranked order, as far as the first SHORTLIST of them and the pure best's)
    visit_rep: dict[tuple[object, ...], MappingKey] = {}
    for mk in keys:
        visit_rep.setdefault(_key_visits(work, mk), mk)
        if len(visit_rep) >= SHORTLIST:
            break
    pure_visit = _key_visits(work, pure[-1])
    if pure_visit not in visit_rep:     # the first key visiting as the pure best does (its sizes are the same)
        visit_rep[pure_visit] = next(k for k in keys if k[:4] == pure_visit[:4] and _key_visits(work, k) == pure_visit)
    distinct = list(visit_rep.values())
    shortlist = tuple(_key_mapping(k) for k in dict.fromkeys([*distinct[:SHORTLIST - 1], visit_rep[pure_visit],
                                                              *distinct[SHORTLIST - 1:SHORTLIST]]))
    shortlist = shortlist[:SHORTLIST]
    naive = _naive(work, arch, nocap)
    if naive not in shortlist:
        shortlist += (naive,)
    # the runner-up differs in dataflow or tile sizes (orders that only permute loops of one trip cost the same)
    runner = next((i for i, k in enumerate(keys) if k[:4] != keys[0][:4]),
                  1 if len(keys) > 1 else None)                    # else the next mapping (all are distinct)
    return Choice(mapping=_key_mapping(keys[0]), cycles=ranked[0][3], dram_bytes=ranked[0][1],
                  energy_pj=ranked[0][4], runner_up=_key_mapping(keys[runner]) if runner is not None else None,
                  runner_up_cycles=ranked[runner][3] if runner is not None else 0.0,
                  runner_up_dram_bytes=ranked[runner][1] if runner is not None else 0,
                  candidates=candidates, shortlist=shortlist)


def _by_obj(c: Array, obj: Array, dram: Array, tiles: Array) -> Array:
    """The permutation ranking candidates `c` (with their objective, DRAM bytes and tiles) by (objective, DRAM
    bytes, tiles, index): a row's first ranking."""
    return lexsort((c, tiles, dram, obj))


def _by_dram(c: Array, obj: Array, dram: Array, tiles: Array) -> Array:
    """... by (DRAM bytes, tiles, objective, index): a row's tie-band ranking."""
    return lexsort((c, obj, tiles, dram))


def _ranking_fits(r: _Ranking, arch: ArchConfig) -> Array:
    """(ROWS, N): which candidates fit the arch's on-chip levels (the only part of a search that depends on
    capacities); a held row's held operand needs its own bytes in its home level."""
    level_fits = {lv.name: np.broadcast_to(r.need[lv.name] <= lv.capacity_bytes, r.tm.shape) for lv in arch.onchip}
    fits = np.empty((ROWS, r.tm.size), dtype=bool)
    fits[:len(ORDERS)] = np.logical_and.reduce(list(level_fits.values()))
    for h, (home, held_need) in enumerate(r.held):
        cap = next(lv.capacity_bytes for lv in arch.onchip if lv.name == home)
        fits[len(ORDERS) + h] = np.logical_and.reduce(
            [f for name, f in level_fits.items() if name != home] + [held_need <= cap])
    return fits


def _direct_picks(r: _Ranking, arch: ArchConfig) -> tuple[Array, Array, _Scores] | None:
    """(rows, candidates, their scores) a search takes, from the scores of the candidates that fit (worked out
    for them alone) without the kept rankings: per row, the first SHORTLIST fitting candidates by (objective, DRAM
    bytes, tiles, index) and, of those within TIE_BAND of the row's best, the first SHORTLIST by (DRAM bytes,
    tiles, objective, index): what _ranked_picks takes from the rankings (tests/test_mapper.py). None where no
    candidate fits the first row (the plain rows share its fits; held rows alone are not searched, as in
    _ranked_picks)."""
    fits = _ranking_fits(r, arch) & r.eligible
    if not fits[0].any():
        return None
    cols = np.flatnonzero(fits.any(axis=0))             # every score is the candidate's own: a subset's are equal
    return _picks_of(r, fits, *_pickable_scores(r, cols, fits[:, cols]))


def _picks_of(r: _Ranking, fits: Array, cols: Array, s: _Scores) -> tuple[Array, Array, _Scores]:
    """_direct_picks from the scores `s` of candidates `cols` (`fits`: where every candidate fits, per row)."""
    fits, n_tiles = fits[:, cols], r.n_tiles[cols]
    rows, picks = [], []
    for o in range(ROWS):
        f = np.flatnonzero(fits[o])
        if not f.size:
            continue
        vals = s.obj[o, f]
        top = f[vals <= np.partition(vals, SHORTLIST - 1)[SHORTLIST - 1]] if f.size > SHORTLIST else f
        band = f[vals <= vals.min() * (1 + TIE_BAND)]
        for chosen in (top[_by_obj(cols[top], s.obj[o, top], s.dram[o, top], n_tiles[top])[:SHORTLIST]],
                       band[_by_dram(cols[band], s.obj[o, band], s.dram[o, band], n_tiles[band])[:SHORTLIST]]):
            rows.append(np.full(chosen.size, o))
            picks.append(chosen)
    o_, c_ = np.concatenate(rows), np.concatenate(picks)
    return o_, cols[c_], s.at(o_, c_)


def _pickable_scores(r: _Ranking, cols: Array, fits: Array) -> tuple[Array, _Scores]:
    """Of the candidates `cols` (`fits`: where each fits, per row), those a first search could pick and their
    scores. A candidate whose objective's floor (_cycles_floor: its DMA alone) exceeds, in every row where it
    fits, both the SHORTLIST-th least objective and the least times 1 + TIE_BAND of candidates scored there is
    neither among that row's first SHORTLIST nor in its tie band. So the SHORTLIST x 2 of least floor in each row
    are scored first; then those whose floor is within what their scores set (the bounds only fall as more are
    scored, so one more pass completes it). Where the floors cannot tell (compute-bound candidates: their floors
    lie below a guess of each row's best, its least max(compute, floor), for most of them), all are scored at
    once."""
    base = _base(r.work, r.arch, r.timing, r.dataflow, r.tm[cols], r.tn[cols], r.tk[cols], r.context)
    traffic = _order_traffic(r.work, base, (False, True))
    read, write = traffic[2], traffic[3]
    pj = _dram_pj(r.arch, read, write)
    dma_floor = _cycles_floor(r.arch, base, read, write)
    floor = _objective(r.objective, dma_floor, read + write, pj)
    guess = np.where(fits, _objective(r.objective, np.maximum(base.compute, dma_floor), read + write, pj), np.inf)
    if (fits & (floor <= guess.min(axis=1, keepdims=True) * (1 + TIE_BAND))).any(axis=0).mean() > 0.5:
        return cols, _scores(r, cols, base, traffic)

    def part(idx: Array) -> _Scores:
        return _scores(r, cols[idx], _subset(base, idx), tuple(t[:, idx] for t in traffic))
    bounded = np.where(fits, floor, np.inf)
    first = np.argpartition(bounded, 2 * SHORTLIST, axis=1)[:, :2 * SHORTLIST] if cols.size > 2 * SHORTLIST else \
        np.tile(np.arange(cols.size), (ROWS, 1))
    scored = np.unique(first[np.take_along_axis(fits, first, axis=1)])
    scores = part(scored)
    limit = np.full(ROWS, np.inf)
    for o in range(ROWS):
        vals = scores.obj[o, fits[o, scored]]
        if vals.size >= SHORTLIST:
            limit[o] = max(np.partition(vals, SHORTLIST - 1)[SHORTLIST - 1], vals.min() * (1 + TIE_BAND))
    more = np.setdiff1d(np.flatnonzero((fits & (floor <= limit[:, None])).any(axis=0)), scored)
    if more.size:
        extra = part(more)
        order = np.argsort(np.concatenate((scored, more)), kind="stable")
        scored = np.concatenate((scored, more))[order]
        scores = _Scores(*(np.concatenate((getattr(scores, k), getattr(extra, k)), axis=1)[:, order]
                           for k in ("cycles", "dram", "pj", "obj")))
    return cols[scored], scores


def _subset(base: _Base, idx: Array) -> _Base:
    """The _Base of candidates `idx` of `base` (every per-candidate array taken at them)."""
    def take(v: Any) -> Any:
        return v[idx] if isinstance(v, np.ndarray) and v.ndim else v
    fields: dict[str, Any] = {k: {d: take(x) for d, x in v.items()} if isinstance(v, dict) else take(v)
                              for k, v in vars(base).items()}
    return _Base(**fields)


def _ranked_picks(r: _Ranking, arch: ArchConfig) -> tuple[Array, Array, _Scores] | None:
    """_direct_picks from the kept rankings (r.orders): only which ranked candidates fit is worked out."""
    q = r.orders
    fit_obj: Array
    fit_need: Array
    if q.need_by_obj is not None and q.need_by_dram is not None and r.level is not None:
        # one level holds every operand (the others must not be negative)
        if any(lv.capacity_bytes < 0 for lv in arch.onchip if lv.name != r.level):
            return None
        cap = next(lv.capacity_bytes for lv in arch.onchip if lv.name == r.level)
        first_fitting = _KERNELS["picks"]
        if first_fitting is not None:         # the same rows and candidates, each row's pass stopping at its last
            o, i = first_fitting(q.by_obj, q.by_dram, q.need_by_obj, q.need_by_dram, q.obj_by_obj, q.obj_by_dram,
                                 cap, SHORTLIST, 1 + TIE_BAND)
            return (o, i, r.scores.at(o, i)) if o.size else None
        fit_obj, fit_need = q.need_by_obj <= cap, q.need_by_dram <= cap
    else:
        fits = np.pad(_ranking_fits(r, arch), ((0, 0), (0, 1)))          # the last column: the rankings' padding
        fit_obj, fit_need = np.take_along_axis(fits, q.by_obj, 1), np.take_along_axis(fits, q.by_dram, 1)
    first = fit_obj.argmax(axis=1)
    if not fit_obj[0, first[0]]:                      # every order ranks the same candidates
        return None
    best = q.obj_by_obj[np.arange(ROWS), first]
    fit_band = fit_need & (q.obj_by_dram <= (best * (1 + TIE_BAND))[:, None])
    o1, c1 = np.nonzero(fit_obj & (np.cumsum(fit_obj, axis=1) <= SHORTLIST))
    o2, c2 = np.nonzero(fit_band & (np.cumsum(fit_band, axis=1) <= SHORTLIST))
    o, i = np.concatenate((o1, o2)), np.concatenate((q.by_obj[o1, c1], q.by_dram[o2, c2]))
    return o, i, r.scores.at(o, i)


@lru_cache(maxsize=1024)
def _nocap(key: _ArchKey) -> _ArchKey:
    """The key of the arch without its on-chip capacities (what rankings and footprints are shared by)."""
    return _ArchKey(without_capacities(key.arch))


def naive(work: Contraction, arch: ArchConfig, name: str = "") -> Mapping:
    """compiler.tiling.naive_mapping on the arch's dataflow (the same mapping, the same error naming op `name`),
    with the footprints of the tilings it tries remembered (_naive): a sweep's points that differ only in buffer
    sizes, and a run's repeated layers and fusion policies, work each out once."""
    return _naive(work, arch, _nocap(_ArchKey(arch)), name)


def _naive(work: Contraction, arch: ArchConfig, nocap: _ArchKey, name: str = "") -> Mapping:
    """compiler.tiling.naive_mapping, step for step, with the footprints of the tilings it tries remembered per
    (loop nest, arch without capacities): footprints do not depend on capacities, so a sweep over buffer sizes
    computes each once; and the mapping itself per capacities (repeated layers, the fusion guard's policies).
    tests/test_mapper.py checks that both give the same mapping."""
    dataflow = arch.array.dataflow
    caps = {lv.name: lv.capacity_bytes for lv in arch.onchip}
    picked = _naive_picks(work, nocap, dataflow)
    at = tuple(caps.values())
    if at not in picked:
        picked[at] = _naive_walk(work, arch, nocap, caps, name)
    return picked[at]


def _naive_walk(work: Contraction, arch: ArchConfig, nocap: _ArchKey, caps: dict[str, int], name: str) -> Mapping:
    """_naive's halving walk for the on-chip capacities `caps`."""
    dataflow = arch.array.dataflow
    footprints = _footprints(work, nocap, dataflow)
    unit = alignment(work, arch, dataflow)

    def need(tiles: tuple[int, ...]) -> dict[str, int]:
        if tiles not in footprints:
            mapping = Mapping(dataflow, tiles[0], tiles[1], tiles[2], "mnk")
            footprints[tiles] = footprint(work, mapping, nocap.arch)
        return footprints[tiles]

    tiles: tuple[int, ...] = (work.m, work.n, work.k)
    while True:
        if max(v / caps[n] for n, v in need(tiles).items()) <= 1:
            return Mapping(dataflow, tiles[0], tiles[1], tiles[2], "mnk")
        best = None
        for d in ("k", "n", "m"):           # as naive_mapping: the fixed order breaks ties
            i = LOOPS.index(d)
            if tiles[i] == 1:
                continue
            trial = (*tiles[:i], halve(tiles[i], unit[d]), *tiles[i + 1:])
            score = max(v / caps[n] for n, v in need(trial).items())
            if best is None or score < best[0]:
                best = (score, trial)
        if best is None:
            return naive_mapping(work, arch, name=name)     # raises the InputError naming the level
        tiles = best[1]


@lru_cache(maxsize=256)
def _footprints(work: Contraction, key: _ArchKey, dataflow: str) -> dict[tuple[int, ...], dict[str, int]]:
    """Per (loop nest, arch without capacities, dataflow): footprints by (tile_m, tile_n, tile_k), filled by _naive."""
    return {}


@lru_cache(maxsize=256)
def _naive_picks(work: Contraction, key: _ArchKey, dataflow: str) -> dict[tuple[int, ...], Mapping]:
    """Per (loop nest, arch without capacities, dataflow): _naive's mapping by the on-chip levels' capacities."""
    return {}


def without_capacities(arch: ArchConfig) -> ArchConfig:
    """The arch with every on-chip capacity set to 0: what candidate scores depend on (only fits needs capacity)."""
    return replace(arch, memory=tuple(replace(lv, capacity_bytes=0, resident_fraction=0.0) if lv.kind == "sram"
                                      else lv for lv in arch.memory))


@dataclass(frozen=True)
class _Ranking:
    """The capacity-independent part of the search for one loop nest, arch without capacities, timing, dataflow
    and objective: the candidate tiles and what each needs in every on-chip level; their scores per row (each loop
    order, then each with its middle loop's operand held) and the rows ranked by them are worked out when a search
    asks for them again (a sweep's next buffer sizes): a first search scores only the candidates that fit."""
    work: Contraction
    arch: ArchConfig            # without capacities
    timing: str
    dataflow: str
    objective: str
    context: KernelContext
    tm: np.ndarray
    tn: np.ndarray
    tk: np.ndarray
    need: dict[str, Array | int]  # level name -> bytes per candidate unheld (0 for a level that holds no operand)
    held: tuple[tuple[str, Array], ...]   # per order, held: the held operand's level and its bytes per candidate
    n_tiles: np.ndarray
    eligible: np.ndarray        # (rows, candidates): legal (MAX_TILES), and in a held row, the hold matters
    level: str | None           # the one level that holds every operand, if one does

    @cached_property
    def scores(self) -> _Scores:
        """Every candidate's scores (worked out at its second search: _ranked)."""
        return _scores(self, None)

    @cached_property
    def orders(self) -> _Orders:
        """The rankings of the candidates each row can pick (built at its second search: _ranked)."""
        return _orders(self)

    @cached_property
    def walk(self) -> Array | None:
        """Per row, the candidates by increasing need of the one on-chip level holding every operand (ties by
        index), the held rows by their held need; None where no one level holds every operand."""
        if self.level is None:
            return None
        walks = np.argsort(np.stack([self.need[self.level]] + [h[1] for h in self.held]), axis=1, kind="stable")
        return np.concatenate((np.broadcast_to(walks[0], (len(ORDERS), self.tm.size)), walks[1:]))

    @cached_property
    def tiles_nbytes(self) -> int:
        """Bytes of its candidates' arrays (worked out once)."""
        arrays = [v for v in vars(self).values() if isinstance(v, np.ndarray)]
        arrays += [v for v in self.need.values() if isinstance(v, np.ndarray)] + [h[1] for h in self.held]
        return sum(a.nbytes for a in arrays)

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays, the scores' and rankings' once built (what _RANKINGS counts)."""
        built: list[_Scores | _Orders] = [vars(self)[k] for k in ("scores", "orders") if k in vars(self)]
        return self.tiles_nbytes + sum(b.nbytes for b in built)


@dataclass(frozen=True)
class _Scores:
    """Estimated cycles, DRAM bytes, DRAM pJ and the objective of candidates per row: (rows, candidates), or of
    picked (row, candidate) pairs (at)."""
    cycles: np.ndarray
    dram: np.ndarray
    pj: np.ndarray
    obj: np.ndarray

    def at(self, rows: Array, cols: Array) -> _Scores:
        """The scores of (row, candidate) pairs, as flat arrays."""
        return _Scores(self.cycles[rows, cols], self.dram[rows, cols], self.pj[rows, cols], self.obj[rows, cols])

    @cached_property
    def nbytes(self) -> int:
        """Bytes of its arrays (worked out once)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


@dataclass(frozen=True)
class _Orders:
    """Per row, two rankings of the candidates a search can pick, padded with the index N (one past the last
    candidate), which a search treats as never fitting."""
    by_obj: np.ndarray          # (rows, ...): by objective, DRAM bytes, tiles, candidate index
    by_dram: np.ndarray         # by DRAM bytes, tiles, objective, candidate index
    obj_by_obj: np.ndarray      # obj in by_obj's order (inf for padding)
    obj_by_dram: np.ndarray     # obj in by_dram's order
    need_by_obj: np.ndarray | None  # where one level holds every operand: its need in by_obj's order (int64 max
    need_by_dram: np.ndarray | None  # for padding) and in by_dram's order

    @cached_property
    def nbytes(self) -> int:
        """Bytes of its arrays (worked out once)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


RANKINGS_BYTES = 32 << 20   # rankings kept for searches to come (a few MB each, ~180 MB for all of llama3-8b's):
#                             a single run never asks for one twice; sweeps keep more (keep_rankings)
SWEEP_RANKINGS_BYTES = 256 << 20   # a sweep's archs that differ only in buffer sizes share them (ResNet-50 on
#                                    edge-npu: ~110 MB an arch; 64 MB made a 40-point sweep 2.3x slower)
_RANKINGS: SizedMemo[tuple[object, ...], _Ranking] = SizedMemo(lambda r: r.nbytes)   # least recently used first
_KEEP = [RANKINGS_BYTES]
_RANKINGS_LOCK = threading.Lock()
# a ranking per (loop nest, arch without capacities, dataflow), while any holds it: those of other timings,
# objectives and kernel contexts share its candidate arrays (_rank)
_SIBLINGS: weakref.WeakValueDictionary[tuple[object, ...], _Ranking] = weakref.WeakValueDictionary()


def keep_rankings(max_bytes: int) -> None:
    """Keep up to `max_bytes` of rankings for later searches (a sweep: SWEEP_RANKINGS_BYTES)."""
    with _RANKINGS_LOCK:
        _KEEP[0] = max_bytes
        _RANKINGS.trim(max_bytes)


def _ranked(work: Contraction, key: _ArchKey, timing: str, dataflow: str, objective: str,
            context: KernelContext = PLAIN) -> tuple[_Ranking, bool]:
    """(_rank, whether it is ranked: its orders built), remembered while the rankings kept take at most
    keep_rankings' bytes (least recently used dropped first). It is ranked when asked again, or at once in a sweep
    (keep_rankings above RANKINGS_BYTES), for the searches to come; a single run asks once."""
    k = (work, key, timing, dataflow, objective, context)
    with _RANKINGS_LOCK:                          # a Dask worker may run points in threads
        r = _RANKINGS.get(k)
    if r is not None:
        if "orders" not in vars(r):               # its second search: rank it (outside the lock), for those to come
            _ = r.orders
            with _RANKINGS_LOCK:
                _RANKINGS.put(k, r)               # its size grew
                _RANKINGS.trim(_KEEP[0])
        return r, True
    r = _rank(work, key, timing, dataflow, objective, context)
    if _KEEP[0] > RANKINGS_BYTES:                 # a sweep: its next points will ask again
        _ = r.orders
    with _RANKINGS_LOCK:
        _RANKINGS.put(k, r)
        _RANKINGS.trim(_KEEP[0])
    return r, "orders" in vars(r)


def _rank(work: Contraction, key: _ArchKey, timing: str, dataflow: str, objective: str,
          context: KernelContext = PLAIN) -> _Ranking:
    """Candidate tiles of one dataflow and what they need on chip: shared by archs that differ only in buffer
    sizes (sweeps), and taken from a ranking of the same loop nest, arch and dataflow that is still kept (another
    timing, objective or kernel context: _SIBLINGS), with its need order once worked out."""
    with _RANKINGS_LOCK:
        sibling = _SIBLINGS.get((work, key, dataflow))
    if sibling is not None:
        r = replace(sibling, timing=timing, objective=objective, context=context)
        if "walk" in vars(sibling):
            vars(r)["walk"] = sibling.walk
        return r
    arch = key.arch
    unit = alignment(work, arch, dataflow)
    sizes = [tile_sizes(getattr(work, d), unit[d]) for d in LOOPS]
    tm, tn, tk = (g.ravel() for g in np.meshgrid(*sizes, indexing="ij"))   # independent of capacities
    trips = _trips(work, tm, tn, tk)
    n_tiles = work.g * trips["m"] * trips["n"] * trips["k"]
    need = level_footprint(tile_bytes(work, tm, tn, tk, arch.array.acc_dtype), arch)
    held = tuple(_held_need(work, arch, tm, tn, tk, order) for order in ORDERS)
    eligible = np.zeros((ROWS, tm.size), dtype=bool)
    eligible[:len(ORDERS)] = n_tiles <= MAX_TILES
    # a hold that changes nothing (compiler.cost.hold_matters) duplicates the row without it with no less room
    for o, order in enumerate(ORDERS):
        eligible[len(ORDERS) + o] = eligible[0] & (trips[order[1]] > 1) & (trips[order[2]] > 1)
    holding = [name for name, v in need.items() if isinstance(v, np.ndarray)]
    r = _Ranking(work, arch, timing, dataflow, objective, context, tm, tn, tk, need, held, n_tiles, eligible,
                 holding[0] if len(holding) == 1 else None)
    with _RANKINGS_LOCK:
        _SIBLINGS[work, key, dataflow] = r
    return r


def _scores(r: _Ranking, cols: Array | None, base: _Base | None = None,
            traffic: tuple[Array, ...] | None = None) -> _Scores:
    """The scores of a ranking's candidates `cols` (None: all; `base` and `traffic`: their _Base and
    _order_traffic, when the caller has them) for every row: the six orders, then the six with their middle loop's
    operand held (Mapping.hold). Every operation is per candidate, so a candidate's scores do not depend on which
    others are scored with it."""
    if base is None:
        tm, tn, tk = (r.tm, r.tn, r.tk) if cols is None else (r.tm[cols], r.tn[cols], r.tk[cols])
        base = _base(r.work, r.arch, r.timing, r.dataflow, tm, tn, tk, r.context)
    estimate = _KERNELS["estimate"]
    if estimate is not None:
        cycles, dram, pj = estimate(*estimate_inputs(r.work, r.arch, base, r if cols is None else None))
    else:
        cycles, dram, pj = _score_rows(r.work, r.arch, base, (False, True), traffic)
    return _Scores(cycles, dram, pj, _objective(r.objective, cycles, dram, pj))


# Compiled forms of _score_orders for all ROWS at once (sim/core/kernels/estimate.py estimate_rows, bit for bit the
# same) and of _ranked_lists (sim/core/kernels/rankings.py rank_rows, the same permutations), registered by a
# process that simulates much (sim/core/simulate.py use_compiled_kernels); None: numpy's
_KERNELS: dict[str, Callable[..., Any] | None] = {"estimate": None, "rank": None, "picks": None}
_ORDER_LOOPS = np.array([[LOOPS.index(d) for d in order] for order in ORDERS], dtype=np.int64)
_INDEXED = sum(1 << (LOOPS.index(d) + 3 * i) for i, o in enumerate(("input", "weight", "output"))
               for d in OPERAND_DIMS[o])      # estimate_rows' bit loop + 3 x operand: the operand indexed by the loop


def search_with(estimate: Callable[..., Any] | None, rank: Callable[..., Any] | None,
                picks: Callable[..., Any] | None = None) -> None:
    """Score candidates with `estimate`, called with estimate_inputs (a compiled estimate_rows), rank them with
    `rank` (a compiled rank_rows) and take a search's picks from the rankings with `picks` (a compiled
    first_fitting); numpy's where None."""
    _KERNELS["estimate"], _KERNELS["rank"], _KERNELS["picks"] = estimate, rank, picks


def estimate_inputs(work: Contraction, arch: ArchConfig, base: _Base, ranking: _Ranking | None = None
                    ) -> tuple[object, ...]:
    """The arguments of estimate_rows for candidates of `base`: its arrays as the types numpy's estimate gives them
    (compute as float64: every use of it is a float operation), each order's loops, the loops each operand
    indexes, and the arch's scalars; with the `ranking` of all of base's candidates, its walk (where one level
    holds every operand), so that the cycles of candidates no search can pick are left infinite (their objective
    then too, or one past what _pickable keeps: the rankings and picks are those of every candidate scored;
    tests/test_mapper.py)."""
    n = base.n_tiles.shape[0]
    walk = ranking.walk if ranking is not None else None
    pruning = (np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0), dtype=bool), 0) if walk is None or \
        ranking is None else (walk, ranking.eligible, OBJECTIVES.index(ranking.objective))

    def per(v: Any, dtype: type) -> Array:
        """Per candidate, as a writable copy (one signature for the compiled kernel)."""
        return np.array(np.broadcast_to(v, (n,)), dtype=dtype)

    off = arch.offchip
    table = arch.energy.actions
    read, write = f"{off.name}.read_byte", f"{off.name}.write_byte"
    priced = read in table and write in table
    return (np.stack([base.trips[d] for d in LOOPS]).astype(np.int64), per(base.n_tiles, np.int64),
            per(base.a_sweep, np.float64), per(base.b_sweep, np.float64), per(base.c_fin, np.float64),
            per(base.c_acc, np.int64), per(base.compute, np.float64), per(base.first, np.float64),
            per(base.last, np.float64), per(base.drain_extra, np.float64), per(base.drain_share, np.float64),
            np.stack([per(base.last_ratio[d], np.float64) for d in LOOPS]), _ORDER_LOOPS, _INDEXED,
            int(work.g), off.latency_cycles, float(off.bandwidth_bytes_per_cycle), float(base.level_feed),
            float(base.level_bw), arch.double_buffered,
            float(table[read].pj) if priced else 1.0, float(table[write].pj) if priced else 1.0, priced, *pruning,
            SHORTLIST, 1 + TIE_BAND)


def _orders(r: _Ranking) -> _Orders:
    """Per row, the candidates a search can pick ranked by (objective, DRAM bytes, tiles, index) and by (DRAM
    bytes, tiles, objective, index).

    When one on-chip level holds every operand, a candidate whose tiles need no less room than SHORTLIST others
    that rank before it (and, for the band ranking, have no worse objective) can never be picked: whenever it
    fits, they fit too. Such candidates are left out of the rankings (_pickable), so sorting and each search
    look at a few hundred candidates, not thousands; the picks are the same. The rankings are made by the
    compiled rank_rows where one is registered (search_with), else by _ranked_lists: the same permutations."""
    obj, dram, n_tiles, level = r.scores.obj, r.scores.dram, r.n_tiles, r.level
    n = r.tm.size
    walk = r.walk
    rank = _KERNELS["rank"]
    if rank is not None:
        every = np.tile(np.arange(n, dtype=np.int64), (ROWS, 1)) if walk is None else walk
        obj_order, dram_order = rank(r.eligible, every, obj, dram, n_tiles, walk is not None, SHORTLIST,
                                     1 + TIE_BAND)
    else:
        obj_order, dram_order = _ranked_lists(r, walk)
    padded = np.pad(obj, ((0, 0), (0, 1)), constant_values=np.inf)
    objs = (np.take_along_axis(padded, obj_order, axis=1), np.take_along_axis(padded, dram_order, axis=1))
    if level is None:
        return _Orders(obj_order, dram_order, *objs, None, None)
    need = np.full((ROWS, n + 1), np.iinfo(np.int64).max, dtype=np.int64)   # the padding's need: it never fits
    need[:len(ORDERS), :n] = r.need[level]
    for o, (_, held_need) in enumerate(r.held):
        need[len(ORDERS) + o, :n] = held_need
    return _Orders(obj_order, dram_order, *objs, np.take_along_axis(need, obj_order, axis=1),
                   np.take_along_axis(need, dram_order, axis=1))


def _ranked_lists(r: _Ranking, walk: Array | None) -> tuple[Array, Array]:
    """_orders' two rankings per row, padded with the candidate count (one past the last candidate): of the
    candidates _pickable keeps (`walk`: per row the candidates by increasing need of the one level holding every
    operand), or of each row's eligible candidates (None)."""
    obj, dram, n_tiles = r.scores.obj, r.scores.dram, r.n_tiles
    if walk is not None:
        rows = _pickable(r.eligible, walk, obj)
    else:
        legal = np.flatnonzero(r.eligible[0])
        rows = [(legal, legal)] * len(ORDERS) + [(m, m) for m in (np.flatnonzero(r.eligible[len(ORDERS) + o])
                                                                  for o in range(len(ORDERS)))]
    by_obj, by_dram = [], []
    for o, (first, band) in enumerate(rows):
        ranks = _by_obj(first, obj[o, first], dram[o, first], n_tiles[first])
        by_obj.append(first[ranks])
        if band is first:       # by (dram, tiles) from the objective's ranking: (dram, tiles, objective, index)
            by_dram.append(first[then_by(then_by(ranks, n_tiles[first]), dram[o, first])])
        else:
            by_dram.append(band[_by_dram(band, obj[o, band], dram[o, band], n_tiles[band])])

    def pad(lists: list[Array]) -> Array:
        out = np.full((ROWS, max(map(len, lists))), r.tm.size, dtype=np.int64)
        for i, x in enumerate(lists):
            out[i, :len(x)] = x
        return out
    return pad(by_obj), pad(by_dram)


def _held_need(work: Contraction, arch: ArchConfig, tm: Array, tn: Array, tk: Array,
               order: str) -> tuple[str, np.ndarray]:
    """(level, bytes per candidate) of `order` with its middle loop's operand held: the held operand's home level
    needs what level_footprint gives with its held tile; the other levels need what they do unheld."""
    home = arch.home(held_operand(order)).name
    return home, np.asarray(level_footprint(_held_tiles(work, arch, tm, tn, tk, order), arch)[home], dtype=np.int64)


def _pickable(eligible: np.ndarray, walk: np.ndarray, obj: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of `obj` (rows, candidates), a superset of its `eligible` candidates that a search can pick when one
    level holds every operand (`walk`: per row, the candidates by increasing need of that level, ties by index):
    (for the objective ranking, for the band ranking), each in walk order.

    Objective ranking: walk the candidates by increasing need. One whose objective is strictly worse than an
    earlier (no larger) candidate's is dominated by it: it fits only if that one fits, and ranks after it. Peeling
    the undominated ones (objective <= every earlier remaining one) SHORTLIST times keeps every candidate with
    fewer than SHORTLIST dominators: one in layer L has a dominator in each earlier layer.
    Band ranking: a candidate that fits when the capacity is at least its need has, as the best fitting
    objective, at most the least objective of the candidates needing no more; it is in a band only if its own
    objective is within TIE_BAND of that (the running minimum over the walk, which can only be larger, is used).
    A candidate not eligible in a row walks there as an infinite objective: it dominates none and is dropped."""
    ok = np.take_along_axis(eligible, walk, 1)
    vals = np.where(ok, np.take_along_axis(obj, walk, 1), np.inf)
    alive = np.ones(vals.shape, dtype=bool)
    keep = np.zeros(vals.shape, dtype=bool)
    for _ in range(SHORTLIST):
        least = np.minimum.accumulate(np.where(alive, vals, np.inf), axis=1)
        before = np.concatenate((np.full((vals.shape[0], 1), np.inf), least[:, :-1]), axis=1)
        layer = alive & (vals <= before)
        keep |= layer
        alive &= ~layer
    band = vals <= np.minimum.accumulate(vals, axis=1) * (1 + TIE_BAND)
    return [(walk[o][keep[o] & ok[o]], walk[o][band[o] & ok[o]]) for o in range(vals.shape[0])]


# A candidate's mapping as a tuple, in the order that breaks ties among equal candidates (deterministic): dataflow
# as listed, then sizes, then the loop order's index in ORDERS, then the hold
MappingKey = tuple[str, int, int, int, int, bool]


def _mapping(work: Contraction, dataflow: str, tm: int, tn: int, tk: int, row: int) -> Mapping:
    """The mapping of a ranking row's candidate; a hold that changes nothing (compiler.cost.hold_matters) is
    dropped, so it is the same mapping as the row without it. (The search keys its candidates by row without
    checking: a held row picks only candidates whose hold matters. tests/test_mapper.py's direct search makes the
    mappings with this.)"""
    order = ORDERS[row % len(ORDERS)]
    return Mapping(dataflow, tm, tn, tk, order, row >= len(ORDERS) and hold_matters(order, _trips(work, tm, tn, tk)))


def _key_mapping(key: MappingKey) -> Mapping:
    """The Mapping a MappingKey stands for."""
    dataflow, tm, tn, tk, o, hold = key
    return Mapping(dataflow, tm, tn, tk, ORDERS[o], hold)


def _key_visits(work: Contraction, key: MappingKey) -> tuple[object, ...]:
    """What decides the tiles a key's mapping visits and their sequence: dataflow, tile sizes, the loop order
    without the loops of one trip, and the operand held on chip."""
    dataflow, tm, tn, tk, o, hold = key
    order = ORDERS[o]
    trips = _trips(work, tm, tn, tk)
    return (dataflow, tm, tn, tk, "".join(d for d in order if trips[d] > 1), held_operand(order) if hold else None)


__all__ = ["OBJECTIVES", "Choice", "dataflows", "estimate_inputs", "naive", "score", "search", "search_with",
           "tile_sizes"]
