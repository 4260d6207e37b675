"""Schedule -> flat per-tile command arrays (DMA bytes in and out, compute cycles, engine, slots, dependency)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.compiler.attention import (
    AttentionWork,
    attention_compute_marks,
    attention_tile_compute_fill,
    attention_traffic,
)
from tilesim.compiler.cost import (
    LOOPS,
    Traffic,
    a_runs,
    a_tile_bytes,
    b_runs,
    burst_bytes,
    c_runs,
    compute_cycles,
    extents,
    extents_at,
    nbytes,
    spatial_tiles,
    trip_counts,
)
from tilesim.compiler.lowering import Contraction, VectorWork
from tilesim.compiler.memo import drop_oldest
from tilesim.compiler.residency import cache_traffic, remember_cache_traffic
from tilesim.compiler.schedule import Kernel, Schedule, core_blocks
from tilesim.compiler.sparsity import b_tile_bytes
from tilesim.compiler.tiling import vector_read_bytes
from tilesim.core.kernels.jit import is_compiled
from tilesim.core.kernels.pipeline import run_program
from tilesim.core.kernels.tiles import (
    A_MK,
    ACC_MN,
    B_KN,
    B_RAW_KN,
    BURST,
    C_ELEMS_MN,
    C_RUNS_MN,
    COMPUTE_TOTAL,
    DIMS,
    DRAINED_TOTAL,
    EPILOGUE,
    EXTRA_TOTAL,
    FLASH,
    FLASH_ALL,
    FLASH_BURST,
    HELD_INPUT,
    HELD_NONE,
    HELD_OUTPUT,
    HELD_WEIGHT,
    HOLD,
    SCALARS,
    STORE_MN,
    TABLES,
    TRIPS,
    TRIPS_K,
    contraction_tile_runs,
)

ARRAY, VECTOR = 0, 1


@dataclass(frozen=True)
class TileCommands:
    """Per-tile arrays of one kernel, in execution order; with `count`, entry i stands for count[i] consecutive
    identical tiles (runs: the pipeline simulates a run's steady state in one step)."""
    input_bytes: np.ndarray     # int64: A (or vector inputs) read from off-chip before the tile computes
    weight_bytes: np.ndarray    # int64: B read from off-chip
    psum_bytes: np.ndarray      # int64: partial sums reloaded from off-chip
    store_bytes: np.ndarray     # int64: bytes written to off-chip after the tile computes
    compute: np.ndarray         # int64 cycles on its engine
    engine: int
    slots: int
    flash_bytes: np.ndarray     # int64: weight bytes first read from flash into DRAM (part of weight_bytes)
    count: np.ndarray | None = None     # int64: tiles each entry stands for (None: one each)
    sums: dict[str, int] = dataclasses.field(init=False, default_factory=dict, compare=False, repr=False)  # total

    @property
    def load_bytes(self) -> np.ndarray:
        """All bytes a tile reads from off-chip."""
        return self.input_bytes + self.weight_bytes + self.psum_bytes

    @property
    def tiles(self) -> int:
        """Number of tiles."""
        return int(self.compute.shape[0] if self.count is None else self.count.sum())

    def offchip_bytes(self) -> int:
        """Bytes all its tiles move off chip: DRAM loads and stores, and weight bytes staged from flash."""
        return self.total("load_bytes") + self.total("store_bytes") + self.total("flash_bytes")

    def total(self, field: str) -> int:
        """Sum of a per-tile field over all tiles (e.g. "input_bytes", "load_bytes", "compute"), remembered (the
        arrays are never written after the commands are made; replace() makes new commands)."""
        if field not in self.sums:
            values = getattr(self, field)
            self.sums[field] = int(values.sum() if self.count is None else (values * self.count).sum())
        return self.sums[field]

    def expanded(self) -> TileCommands:
        """The same tiles, one entry each."""
        if self.count is None:
            return self
        return replace(self, count=None, **{f: np.repeat(getattr(self, f), self.count) for f in _PER_TILE})


_PER_TILE = ("input_bytes", "weight_bytes", "psum_bytes", "store_bytes", "compute", "flash_bytes")


def as_runs(cmds: TileCommands) -> TileCommands:
    """Commands as runs: consecutive identical tiles merged into one entry, the first tile alone (it alone pays a
    kernel's start costs)."""
    if cmds.count is None:
        count = np.ones(cmds.compute.shape[0], dtype=np.int64)
    else:
        count = cmds.count
    fields = [getattr(cmds, f) for f in _PER_TILE]
    n = count.shape[0]
    start = np.zeros(n, dtype=bool)
    start[:2] = True                                  # the first tile stays a run of its own
    for a in fields:
        start[1:] |= a[1:] != a[:-1]
    if cmds.count is not None and count.dtype == np.int64 and start.all() and (not n or count[0] <= 1):
        return cmds                                   # runs already (the compiled builder's commands)
    heads = np.flatnonzero(start)
    merged = np.add.reduceat(count, heads) if n else count
    out = replace(cmds, count=merged.astype(np.int64), **{f: a[heads] for f, a in zip(_PER_TILE, fields, strict=True)})
    if n and count[0] > 1:                            # split a leading run: its first tile alone
        out = replace(out, count=np.concatenate(([1, count[0] - 1], out.count[1:])).astype(np.int64),
                      **{f: np.concatenate((getattr(out, f)[:1], getattr(out, f))) for f in _PER_TILE})
    return out


def split_runs(total: int, weights: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers proportional to per-tile `weights` (runs of count[i] tiles of weights[i]) that add up to exactly
    `total`: each tile floor(total x w / W) (W: all tiles' weights), and one more for each of the first (total -
    their sum) tiles of positive weight, so identical tiles stay identical but for one cut. Returns (parts, counts,
    runs): the run that holds the cut, if any, is split in two, and `runs` maps the new runs to the old ones."""
    w = np.asarray(weights, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    order = np.arange(w.shape[0])
    whole = int(np.dot(w, count))                   # all tiles' weights (< 2**63: MACs or bytes of one kernel)
    if whole == 0:
        return np.zeros(w.shape[0], dtype=np.int64), count, order
    if total * int(w.max()) < 2**63:                # floor(total x w / W), exact in int64 ...
        base = total * w // whole
    else:                                           # ... or in Python integers
        base = np.array([total * int(x) // whole for x in w.tolist()], dtype=np.int64)
    rem = total - int(np.dot(base, count))
    if rem == 0:
        return base, count, order
    positive = np.where(w > 0, count, 0)
    cum = np.cumsum(positive)
    j = int(np.searchsorted(cum, rem, side="left"))         # the run holding the last tile that gets one more
    inside = rem - (int(cum[j - 1]) if j else 0)            # its tiles that do
    parts = base + ((order < j) & (w > 0))
    if inside == count[j]:
        parts[j] += 1
        return parts, count, order
    order = np.insert(order, j, j)
    parts = np.insert(parts, j, parts[j] + 1)
    count = np.insert(count, j, inside)
    count[j + 1] -= inside
    return parts, count, order


def split_total(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to `weights` that add up to exactly `total` (cumulative floor)."""
    cum = np.cumsum(weights, dtype=np.float64)
    last = np.zeros(cum.shape[0], dtype=bool)
    last[-1] = True
    marks = floor_marks(total, cum, cum[-1], last)
    marks[1:] -= marks[:-1].copy()          # parts = differences of consecutive marks
    return marks


def floor_marks(total: int, cum: np.ndarray, whole: float, last: np.ndarray) -> np.ndarray:
    """split_total's cumulative marks at some tiles (cum: their cumulative weights, exact floats; whole: all
    tiles' weights; last: True at the last tile): floor(total x cum / whole + 1e-9), at most total, total at the
    last tile. Tiles worked out a chunk at a time give the marks of the whole."""
    marks = np.floor(total * cum / whole + 1e-9).astype(np.int64)
    # above 2**53 the float marks round; one may land past `total`, which would make the last part negative
    np.minimum(marks, total, out=marks)
    marks[last] = total
    return marks


def _changed(*keys: np.ndarray) -> np.ndarray:
    """True where the tuple of keys differs from the previous tile's (and at the first tile)."""
    flag = np.zeros(keys[0].shape[0], dtype=bool)
    flag[0] = True
    for key in keys:
        flag[1:] |= key[1:] != key[:-1]
    return flag


def loop_positions(trip: int) -> tuple[np.ndarray, np.ndarray]:
    """Iterations of a loop that stand for all of them, and how many each stands for: the first, the middle ones
    (alike: the same tile sizes and the same loops changing before them) and the last."""
    if trip <= 2:
        return np.arange(trip), np.ones(trip, dtype=np.int64)
    return np.array([0, 1, trip - 1]), np.array([1, trip - 2, 1], dtype=np.int64)


def nest_runs(counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A loop nest of loop_positions (outermost first) as runs in execution order: (position in the nest of
    positions, C order; tiles in the run). A position standing for c iterations of an outer loop repeats its inner
    sequence c times (one run c times longer when that sequence is one run)."""
    return _nest_runs(tuple(tuple(int(x) for x in c) for c in counts))


@lru_cache(maxsize=1024)
def _nest_runs(counts: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """nest_runs, remembered per nest (the arrays are read only)."""
    shape = tuple(len(c) for c in counts)

    def seq(level: int, base: int) -> tuple[np.ndarray, np.ndarray]:
        c = np.array(counts[level], dtype=np.int64)
        if level == len(counts) - 1:
            return base + np.arange(shape[level]), c
        stride = int(np.prod(shape[level + 1:]))
        ids, ns = [], []
        for p in range(shape[level]):
            i, n = seq(level + 1, base + p * stride)
            if i.shape[0] == 1:
                ids.append(i)
                ns.append(n * c[p])
            else:
                ids.append(np.tile(i, int(c[p])))
                ns.append(np.tile(n, int(c[p])))
        return np.concatenate(ids), np.concatenate(ns)
    ids, ns = seq(0, 0)
    ids.flags.writeable = ns.flags.writeable = False
    return ids, ns


def nest_run_count(counts: list[np.ndarray]) -> int:
    """Length of nest_runs(counts), without building it."""
    inner = len(counts[-1])
    for c in reversed(counts[:-1]):
        inner = sum(1 if inner == 1 else int(k) * inner for k in c)
    return inner


def contraction_run_count(work: Contraction, kernel: Kernel) -> int:
    """nest_run_count of a contraction's loop positions (contraction_positions): the runs of its loop nest."""
    trips = trip_counts(work, kernel.mapping)
    return _loops_run_count((work.g, *tuple(trips[d] for d in kernel.mapping.order)))


@lru_cache(maxsize=4096)
def _loops_run_count(trips: tuple[int, ...]) -> int:
    """nest_run_count of the loop_positions of loops of these trips (outermost first), remembered."""
    return nest_run_count([loop_positions(t)[1] for t in trips])


def contraction_positions(work: Contraction, kernel: Kernel) -> list[tuple[np.ndarray, np.ndarray]]:
    """loop_positions of a contraction's loops: g, then its mapping's loop order."""
    trips = trip_counts(work, kernel.mapping)
    return [loop_positions(t) for t in (work.g, *tuple(trips[d] for d in kernel.mapping.order))]


def contraction_commands(work: Contraction, kernel: Kernel, arch: ArchConfig, timing: str,
                         flash_share: float = 0.0) -> TileCommands:
    """contraction_runs, one entry per tile."""
    return contraction_runs(work, kernel, arch, timing, flash_share).expanded()


def contraction_runs(work: Contraction, kernel: Kernel, arch: ArchConfig, timing: str,
                     flash_share: float = 0.0) -> TileCommands:
    """contraction_runs_reference's commands: made by the compiled kernel (sim/core/kernels/tiles.py) once the
    pipeline's kernels are compiled in this process (a sweep, a large run: numba is loaded), from the tables of
    bytes per pair of loop positions; else, where a weight tile is partly read from flash, or where the kernel's
    totals could pass 2**63 in its integers, by the reference."""
    if not is_compiled(run_program):
        return contraction_runs_reference(work, kernel, arch, timing, flash_share)
    return contraction_runs_compiled(work, kernel, arch, timing, flash_share)


def contraction_runs_compiled(work: Contraction, kernel: Kernel, arch: ArchConfig, timing: str,
                              flash_share: float = 0.0) -> TileCommands:
    """contraction_runs by the compiled kernel (the reference where it must: see contraction_runs)."""
    if 0 < flash_share < 1:
        return contraction_runs_reference(work, kernel, arch, timing, flash_share)
    mapping = kernel.mapping
    trips = trip_counts(work, mapping)
    order = mapping.order
    loops = (work.g, *(trips[d] for d in order))
    where = contraction_positions(work, kernel)
    dims = np.zeros((2, 3, 3), dtype=np.int64)            # per loop m, n, k: each position's iteration, extent
    ext = {}
    for i, d in enumerate(LOOPS):
        its = where[1 + order.index(d)][0]
        ext[d] = extents_at(getattr(work, d), mapping.tile(d), its)
        dims[0, i, :len(its)], dims[1, i, :len(its)] = its, ext[d]
    m, n, k = ext["m"][:, None], ext["n"][None, :], ext["k"]
    res = kernel.residency
    burst = arch.offchip.burst_bytes
    c_elems = m * n
    c_run = c_runs(work, m, n)
    tables = np.zeros((TABLES, 3, 3), dtype=np.int64)     # per pair of positions (loop_positions: at most 3 a loop)
    pm, pn, pk = len(ext["m"]), len(ext["n"]), len(ext["k"])
    if not res.a:
        tables[A_MK, :pm, :pk] = burst_bytes(a_tile_bytes(work, m, k[None, :]), a_runs(work, m, k[None, :]), burst)
    if not res.b:
        tables[B_RAW_KN, :pk, :pn] = b_raw = b_tile_bytes(work, k[:, None], n)
        tables[B_KN, :pk, :pn] = burst_bytes(b_raw, b_runs(work, k[:, None], n), burst)
    tables[ACC_MN, :pm, :pn] = burst_bytes(nbytes(c_elems, arch.array.acc_dtype), c_run, burst)
    if not res.out:
        tables[STORE_MN, :pm, :pn] = burst_bytes(nbytes(c_elems, work.c_dtype), c_run, burst)
    tables[C_ELEMS_MN, :pm, :pn] = c_elems
    tables[C_RUNS_MN, :pm, :pn] = c_run
    drained_total, extra_total = epilogue_totals(work, kernel, arch)
    compute = compute_cycles(work, arch, mapping.dataflow, timing, mapping.t_tile, spatial_tiles(work, mapping))
    scalars = np.zeros(SCALARS, dtype=np.int64)
    scalars[TRIPS:TRIPS + 4], scalars[DIMS:DIMS + 3] = loops, [LOOPS.index(d) for d in order]
    scalars[[TRIPS_K, HOLD, FLASH_ALL, FLASH_BURST, COMPUTE_TOTAL, EPILOGUE, DRAINED_TOTAL, EXTRA_TOTAL, BURST]] = (
        trips["k"], HELD[mapping.held], flash_share >= 1, arch.flash.burst_bytes if arch.flash else 1, compute,
        kernel.epilogue is not None, drained_total, extra_total, burst)
    table, count, ok = contraction_tile_runs(scalars, dims, tables)
    if not ok:
        return contraction_runs_reference(work, kernel, arch, timing, flash_share)
    return TileCommands(*table[:FLASH], ARRAY, operand_slots(arch), table[FLASH], count)


HELD = {None: HELD_NONE, "input": HELD_INPUT, "weight": HELD_WEIGHT, "output": HELD_OUTPUT}   # Mapping.held


def operand_slots(arch: ArchConfig) -> int:
    """Buffer slots of a kernel whose operands and output live in their home levels: 2 when every one of those is
    double buffered, else 1."""
    return 2 if arch.double_buffered else 1


def epilogue_totals(work: Contraction, kernel: Kernel, arch: ArchConfig) -> tuple[int, int]:
    """A fused epilogue's vector cycles and the bytes of its other inputs (bias, residual: read once, less what an
    on-chip copy serves) on this core's part of the kernel's outputs (`work`); (0, 0) without one."""
    epi = kernel.epilogue
    if epi is None:
        return 0, 0
    whole = kernel.work
    share = (work.g * work.m * work.n) / (whole.g * whole.m * whole.n)        # this core's part of the outputs
    return epi.vector_cycles(share, arch.vector), round(max(epi.read_bytes - kernel.residency.extra_bytes, 0) * share)


def contraction_runs_reference(work: Contraction, kernel: Kernel, arch: ArchConfig, timing: str,
                               flash_share: float = 0.0) -> TileCommands:
    """Tiles of a contraction in loop order, as runs; operands reload only when their tile index changes; every
    transfer rounded up to whole DRAM bursts, and `flash_share` of each weight tile read from flash first (whole
    flash bursts, one run: weights are laid out by tile). Tiles are worked out once per loop_positions tuple (the
    first, a middle and the last iteration of each loop): consecutive tiles differ in a loop's position exactly
    where they differ in its iteration, so reload flags, extents and bytes are those of the real tiles."""
    mapping = kernel.mapping
    trips = trip_counts(work, mapping)
    order = mapping.order
    where = contraction_positions(work, kernel)
    grid = np.indices(tuple(len(w[0]) for w in where)).reshape(4, -1)
    g = grid[0]
    pos = {d: grid[1 + order.index(d)] for d in LOOPS}
    idx = {d: where[1 + order.index(d)][0][pos[d]] for d in LOOPS}
    ext = {d: extents_at(getattr(work, d), mapping.tile(d), idx[d]) for d in LOOPS}
    acc = arch.array.acc_dtype

    a_new = _changed(g, pos["m"], pos["k"])
    b_new = _changed(g, pos["k"], pos["n"])
    c_visit = _changed(g, pos["m"], pos["n"])                 # first tile of a visit to an output tile
    c_last = np.append(c_visit[1:], True)                     # last tile of a visit
    reload = c_visit & (idx["k"] > 0)                         # visit resumes a partial sum
    final = c_last & (idx["k"] == trips["k"] - 1)
    held = mapping.held                 # kept on chip across the middle loop: loaded in its first iteration only
    first_pass = idx[order[1]] == 0
    a_new = a_new & first_pass if held == "input" else a_new
    b_new = b_new & first_pass if held == "weight" else b_new
    if held == "output":                                      # partial sums accumulate on chip
        reload, c_last = np.zeros_like(reload), final
    c_elems = ext["m"] * ext["n"]

    res = kernel.residency                  # operands and output an on-chip copy serves (--fusion full)
    burst = arch.offchip.burst_bytes
    runs = {"a": a_runs(work, ext["m"], ext["k"]), "b": b_runs(work, ext["k"], ext["n"]),
            "c": c_runs(work, ext["m"], ext["n"])}
    psum = np.where(reload, nbytes(c_elems, acc), 0)        # partial-sum spills go off chip (held: none)
    a_bytes = np.where(a_new & (not res.a), a_tile_bytes(work, ext["m"], ext["k"]), 0)
    b_raw = np.where(b_new & (not res.b), b_tile_bytes(work, ext["k"], ext["n"]), 0)
    final_store = 0 if res.out else nbytes(c_elems, work.c_dtype)
    store = np.where(final, final_store, np.where(c_last, nbytes(c_elems, acc), 0))
    psum, store = burst_bytes(psum, runs["c"], burst), burst_bytes(store, runs["c"], burst)
    a_bytes, b_bytes = burst_bytes(a_bytes, runs["a"], burst), burst_bytes(b_raw, runs["b"], burst)
    # the tiles in execution order, as runs of positions
    ids, count = nest_runs([w[1] for w in where])
    f = {"a": a_bytes, "b": b_bytes, "b_raw": b_raw, "psum": psum, "store": store,
         "macs": ext["m"] * ext["n"] * ext["k"], "drained": np.where(final, c_elems, 0),
         "c_runs": np.broadcast_to(runs["c"], c_elems.shape)}
    f = {k: np.asarray(v)[ids] for k, v in f.items()}

    def split(total: int, weights: np.ndarray) -> np.ndarray:
        nonlocal count, f
        runs = count.shape[0]
        parts, count, moved = split_runs(total, weights, count)
        if count.shape[0] != runs:                  # a run was cut in two
            f = {k: v[moved] for k, v in f.items()}
        return parts
    b_total = int((f["b_raw"] * count).sum())
    if flash_share >= 1:
        f["flash"] = f["b_raw"]
    elif flash_share and b_total:
        f["flash"] = split(round(flash_share * b_total), f["b_raw"])
    else:
        f["flash"] = np.zeros_like(f["b_raw"])
    f["flash"] = burst_bytes(f["flash"], 1, arch.flash.burst_bytes if arch.flash else 1)
    f["compute"] = split(compute_cycles(work, arch, mapping.dataflow, timing, mapping.t_tile,
                                        spatial_tiles(work, mapping)), f["macs"])
    if kernel.epilogue is not None:  # fused elementwise ops: applied as each output tile drains, overlapping the array
        epilogue_cycles, other_bytes = epilogue_totals(work, kernel, arch)
        drained = split(epilogue_cycles, f["drained"])
        f["compute"] = np.maximum(f["compute"], drained)
        extra = split(other_bytes, f["drained"])
        f["a"] = f["a"] + burst_bytes(extra, f["c_runs"], burst)
    # consecutive positions often give identical tiles (a loop's middle iterations repeated by the loops outside
    # it): merged, so a core block's commands are a few hundred runs, not one per position visited
    return as_runs(TileCommands(f["a"].astype(np.int64), f["b"].astype(np.int64), f["psum"].astype(np.int64),
                                f["store"].astype(np.int64), f["compute"].astype(np.int64), ARRAY,
                                operand_slots(arch), f["flash"].astype(np.int64), count))


ATTENTION_CHUNK_TILES = 1 << 18     # tiles worked out at once (bounded memory: ~100 bytes each)


_ATTENTION_MEMO: dict = {}          # attention_commands by everything they read
ATTENTION_MEMO_ENTRIES = 2_000_000  # entries it keeps at most (~110 MB)


def attention_commands(work: AttentionWork, kernel: Kernel, arch: ArchConfig, timing: str) -> TileCommands:
    """attention_tiles, remembered by the arch fields they read: the same commands at every clock a power cap
    tries (sim/core/power.py changes only off-chip bandwidth and latency, energies and the clock)."""
    key = (work, kernel.mapping, kernel.residency, timing, arch.cores, arch.array, arch.vector, arch.onchip,
           arch.offchip.burst_bytes, arch.cache)
    if key in _ATTENTION_MEMO:
        return _ATTENTION_MEMO[key]
    cmds = attention_tiles(work, kernel, arch, timing)
    size = cmds.compute.shape[0]
    if size + sum(c.compute.shape[0] for c in _ATTENTION_MEMO.values()) > ATTENTION_MEMO_ENTRIES:
        _ATTENTION_MEMO.clear()
    if size <= ATTENTION_MEMO_ENTRIES:
        _ATTENTION_MEMO[key] = cmds
    return cmds


def attention_tiles(work: AttentionWork, kernel: Kernel, arch: ArchConfig, timing: str) -> TileCommands:
    """Flash attention tiles (head, q block, kv block), kv innermost, as runs of steps of p cores in lockstep
    (lockstep): the Q block loads with its first kv block, K and V blocks stream every tile, the O block stores
    after its last; totals equal attention_traffic, split over the tiles in proportion to their blocks' rows
    (split_total), each tile's transfer rounded up to whole bursts. Tiles are worked out ATTENTION_CHUNK_TILES at a
    time from their place in the nest (one head's prefix sums), so memory does not grow with the tile count."""
    m = kernel.mapping
    eq, ek = extents(work.sq, m.block_q), extents(work.skv, m.block_kv)
    q_read, kv_read, o_write = attention_traffic(work, m.block_q)
    res = kernel.residency
    q_read = (0 if res.a else q_read - work.extra_read_bytes) + max(work.extra_read_bytes - res.extra_bytes, 0)
    kv_read, o_write = (0 if res.b else kv_read), (0 if res.out else o_write)
    cache = arch.cache
    if cache is not None and kv_read:
        # behind a cache, the other q blocks of a head re-read its K and V as hits when they fit beside each other
        once = attention_traffic(work, work.sq)[1]
        if 2 * once // max(work.g, 1) <= cache.capacity_bytes:
            kv_read = min(kv_read, once)
    slots = operand_slots(arch)
    burst = arch.offchip.burst_bytes          # runs: a Q block, a K and a V block, an O block, each contiguous
    # one head's tiles: the weights split_total gives each transfer (Q on a row's first kv block, O on its last)
    qi, ki = np.repeat(np.arange(eq.size), ek.size), np.tile(np.arange(ek.size), eq.size)
    per_head = qi.shape[0]
    n = work.g * per_head
    fields = ((q_read, np.cumsum(np.where(ki == 0, eq[qi], 0)), 1), (kv_read, np.cumsum(ek[ki]), 2),
              (o_write, np.cumsum(np.where(ki == ek.size - 1, eq[qi], 0)), 1))

    def marks(total: int, cum_head: np.ndarray, t: np.ndarray) -> np.ndarray:
        """split_total's cumulative floors at tiles t (floor_marks)."""
        head, at = np.divmod(t, per_head)
        cum = (head * int(cum_head[-1]) + cum_head[at]).astype(np.float64)     # exact: integers below 2**53
        return floor_marks(total, cum, float(work.g * int(cum_head[-1])), t == n - 1)
    p = min(arch.cores, n)
    chunk = max(ATTENTION_CHUNK_TILES // p, 1) * p          # whole steps per chunk
    fill = int(attention_tile_compute_fill(work, m, arch, timing))
    parts = []
    for t0 in range(0, n, chunk):
        t = chunk_marks_at(t0, min(t0 + chunk, n), p, burst)
        xfer = [burst_bytes(_from_marks(marks(total, cum, t), t0 > 0), runs, burst) for total, cum, runs in fields]
        compute = _from_marks(attention_compute_marks(work, m, arch, timing, t), t0 > 0)
        if not t0:
            compute[0] += fill
        zeros = np.zeros(compute.shape[0], dtype=np.int64)
        cmds = TileCommands(xfer[0], xfer[1], zeros, xfer[2], compute, ARRAY, slots, zeros)
        parts.append(as_runs(lockstep(cmds, p) if p > 1 and burst > 1 else cmds))
    return concat_runs(parts)


def chunk_marks_at(t0: int, stop: int, p: int, burst: int) -> np.ndarray:
    """Tiles at which a chunk (tiles t0 .. stop - 1, t0 a multiple of p) needs split_total's cumulative marks,
    after the tile before it (t0 - 1) when there is one: every tile when each tile's bytes are rounded up to
    bursts; else only the last tile of each lockstep step of p tiles, as a step's parts add up to the difference of
    the marks at its ends (the marks give the steps' sums directly, exactly)."""
    if burst > 1:
        return np.arange(max(t0 - 1, 0), stop, dtype=np.int64)
    ends = np.minimum(np.arange(t0 + p, stop + p, p, dtype=np.int64), stop) - 1
    return np.concatenate(([t0 - 1], ends)).astype(np.int64) if t0 else ends


def _from_marks(marks: np.ndarray, lead: bool) -> np.ndarray:
    """Per-tile parts from cumulative marks (with `lead`, marks[0] is the tile before's, else 0 came before)."""
    return np.diff(marks) if lead else np.diff(marks, prepend=0)


def concat_runs(parts: list[TileCommands]) -> TileCommands:
    """Commands one after the other as runs (consecutive identical entries merged: as_runs)."""
    first = parts[0]
    count = np.concatenate([c.count if c.count is not None else np.ones(c.compute.shape[0], dtype=np.int64)
                            for c in parts])
    return as_runs(replace(first, count=count, **{f: np.concatenate([getattr(c, f) for c in parts])
                                                  for f in _PER_TILE}))


def lockstep(cmds: TileCommands, p: int) -> TileCommands:
    """Tiles that p cores run side by side as one step each: bytes and compute shares of p consecutive tiles added
    (attention_tile_compute gives each tile its 1/p share of a step), so a step's transfers pay latency once."""
    n = cmds.compute.shape[0]
    steps = -(-n // p)
    starts = np.arange(0, n, p)

    def fold(a):                            # sums of p consecutive tiles (the last step may have fewer)
        a = np.asarray(a)
        return (np.add.reduceat(a, starts) if steps * p != n else a.reshape(steps, p).sum(axis=1)).astype(a.dtype)
    return replace(cmds, input_bytes=fold(cmds.input_bytes), weight_bytes=fold(cmds.weight_bytes),
                   psum_bytes=fold(cmds.psum_bytes), store_bytes=fold(cmds.store_bytes), compute=fold(cmds.compute),
                   flash_bytes=fold(cmds.flash_bytes))


def vector_commands(work: VectorWork, kernel: Kernel, arch: ArchConfig) -> TileCommands:
    """Tiles of vector work: equal element slices (the last may be shorter), each loading its inputs and storing its
    outputs; bytes and cycles split over the tiles in proportion to their elements (split_total), p cores' slices
    one lockstep step; as runs, worked out ATTENTION_CHUNK_TILES tiles at a time (bounded memory)."""
    per_tile = kernel.mapping.tile_elements
    elements = max(work.elements, 1)
    n = -(-elements // per_tile)
    v = arch.vector
    total_cycles = -(-work.ops // (v.lanes * v.ops_per_lane_cycle * arch.cores))     # every core's lanes
    level = arch.home("input")
    res = kernel.residency
    read = vector_read_bytes(work, arch, max(work.read_bytes - res.extra_bytes, 0))
    write = 0 if res.out else work.write_bytes
    burst = arch.offchip.burst_bytes          # a tile's slice of the tensors: taken as one contiguous run each way
    p = min(arch.cores, n)                  # every core takes a slice per step (total_cycles counts all lanes)
    chunk = max(ATTENTION_CHUNK_TILES // p, 1) * p          # whole steps per chunk
    parts = []
    for t0 in range(0, n, chunk):
        t = chunk_marks_at(t0, min(t0 + chunk, n), p, burst)
        cum = np.minimum((t + 1) * per_tile, elements).astype(np.float64)       # elements up to each tile's end
        last, lead = t == n - 1, t0 > 0
        read_b, write_b, cycles = (_from_marks(floor_marks(total, cum, float(elements), last), lead)
                                   for total in (read, write, total_cycles))
        zeros = np.zeros(cycles.shape[0], dtype=np.int64)
        cmds = TileCommands(burst_bytes(read_b, 1, burst), zeros, zeros, burst_bytes(write_b, 1, burst), cycles,
                            VECTOR, 2 if level.double_buffered else 1, zeros)
        parts.append(as_runs(lockstep(cmds, p) if p > 1 and burst > 1 else cmds))
    return concat_runs(parts)


def kernel_commands(kernel: Kernel, arch: ArchConfig, timing: str, flash_share: float = 0.0) -> TileCommands:
    """kernel_runs, one entry per tile."""
    return kernel_runs(kernel, arch, timing, flash_share).expanded()


def kernel_runs(kernel: Kernel, arch: ArchConfig, timing: str, flash_share: float = 0.0) -> TileCommands:
    """Tile commands of one kernel as runs (cores in lockstep when it is split among them), with the on-chip access
    latency added to its compute (pipelined timing)."""
    match kernel.work:
        case AttentionWork() as work:
            cmds = attention_commands(work, kernel, arch, timing)
        case VectorWork() as work:
            cmds = vector_commands(work, kernel, arch)
        case Contraction() as work if not kernel.split:
            cmds = contraction_runs(work, kernel, arch, timing, flash_share)      # runs already (either builder)
        case Contraction() as work:
            core = arch.per_core()
            blocks = [(contraction_runs(block, kernel, core, timing, flash_share), block, cm, cn)
                      for block, cm, cn in core_blocks(work, kernel.split, arch.cores)]
            # cores in one row of blocks (same m piece) need the same A tiles, in one column the same B tiles: a
            # shared level or a cache loads those once
            once = tuple(o for o in ("input", "weight") if arch.loads_once(o))
            cmds = combine_cores(blocks, once)
            epi = kernel.epilogue
            if "input" in once and epi is not None and epi.read_bytes > kernel.residency.extra_bytes:
                # an epilogue's other inputs (bias, residual) are read per core for its own outputs: never shared
                # (command sets that may split their runs differently are cut at common boundaries first)
                plain = replace(kernel, epilogue=replace(epi, read_bytes=kernel.residency.extra_bytes))
                bare = [(contraction_runs(block, plain, core, timing, flash_share), block, cm, cn)
                        for block, cm, cn in core_blocks(work, kernel.split, arch.cores)]
                own = []
                for (c, block, cm, cn), (p, _, _, _) in zip(blocks, bare, strict=True):
                    c, p = align_runs([c, p])
                    own.append((replace(c, input_bytes=c.input_bytes - p.input_bytes), block, cm, cn))
                whole, shared, private = align_runs([cmds, combine_cores(bare, once), combine_cores(own)])
                cmds = replace(whole, input_bytes=shared.input_bytes + private.input_bytes)
    if arch.cache is not None and isinstance(kernel.work, Contraction):
        cmds = through_cache(cmds, kernel, arch, timing)
    if arch.cache is not None or not isinstance(kernel.work, Contraction) or kernel.split:
        cmds = as_runs(cmds)
    return cmds if timing == "scalesim" else with_access_latency(cmds, kernel, arch)


def through_cache(cmds: TileCommands, kernel: Kernel, arch: ArchConfig, timing: str) -> TileCommands:
    """A contraction behind a hardware cache reads from DRAM only what a tiling for the cache's capacity reads
    (compiler.residency.cache_traffic; operands that hit from earlier kernels excluded) and writes what it writes;
    the rest of the cores' loads and partial-sum stores are cache hits. Each tile keeps its share of the bytes
    (split_runs over the runs of tiles)."""
    t = cache_traffic(kernel.work, arch, timing)
    res = kernel.residency
    reads = (0 if res.a else t.input_read) + (0 if res.b else t.weight_read) + t.psum_read
    fields = ("input_bytes", "weight_bytes", "psum_bytes")
    loads = sum(cmds.total(f) for f in fields)
    stores = cmds.total("store_bytes")
    count = cmds.count if cmds.count is not None else np.ones(cmds.compute.shape[0], dtype=np.int64)
    shares = []                                     # (field, total) to split in proportion to the field
    if loads > reads:
        ratio = reads / loads
        shares += [(f, round(cmds.total(f) * ratio)) for f in (*fields, "flash_bytes")]
    if stores > t.output_write > 0:
        shares.append(("store_bytes", t.output_write))
    if not shares:
        return cmds
    values = {f: getattr(cmds, f) for f in _PER_TILE}
    for field, total in shares:
        if not values[field].any():
            continue
        parts, count, moved = split_runs(total, values[field], count)
        values = {f: v[moved] for f, v in values.items()}
        values[field] = parts
    if loads > reads:                                # weights from flash stay a part of the weight loads
        values["flash_bytes"] = np.minimum(values["flash_bytes"], values["weight_bytes"])
    return replace(cmds, count=count, **values)


def access_latency(kernel: Kernel, arch: ArchConfig) -> int:
    """Cycles from a tile's first read of its on-chip levels to the data reaching its engine: the largest
    latency_cycles of the levels holding its operands (array: input, weight, output; vector: input)."""
    operands = ("input", "weight", "output") if kernel.on_array else ("input",)
    return max(arch.home(o).latency_cycles for o in operands)


def with_access_latency(cmds: TileCommands, kernel: Kernel, arch: ArchConfig) -> TileCommands:
    """On-chip access latency in the pipelined timing: paid once per tile fetch, before the tile computes. With
    double buffering the next tile's first reads are issued while this tile computes, so only the kernel's first
    tile pays it; single-buffered, every tile does: compute_i += L (first tile only when slots = 2; as_runs keeps
    that tile a run of its own)."""
    lat = access_latency(kernel, arch)
    if not lat:
        return cmds
    compute = cmds.compute.copy()
    if cmds.slots == 2:
        compute[0] += lat
    else:
        compute += lat
    return replace(cmds, compute=compute)


def weights_in_flash(name: str, rule: str) -> bool:
    """Whether kernel `name` reads its weights from flash under a flash level's `weights` rule (all, none, mlp =
    '*.mlp.*', or a glob on kernel names; overflow places a share of every weight instead)."""
    if rule in ("all", "none", "overflow"):
        return rule == "all"
    return fnmatchcase(name, "*.mlp.*" if rule == "mlp" else rule)


def flash_share(kernel: Kernel, arch: ArchConfig, overflow_share: float) -> float:
    """Share of a kernel's weight bytes read from flash: weights are the B operands that are parameters."""
    flash = arch.flash
    if flash is None or not isinstance(kernel.work, Contraction) or not kernel.work.b_is_param:
        return 0.0
    if flash.weights == "overflow":
        return overflow_share
    return 1.0 if weights_in_flash(kernel.name, flash.weights) else 0.0


def overflow_share(schedule: Schedule, arch: ArchConfig) -> float:
    """`weights: overflow` for a workload whose sizes the caller does not give: the share of the schedule's
    weights (each contraction's B parameters) beyond what the DRAM holds besides the flash staging buffer."""
    stored = sum(k.work.g * int(b_tile_bytes(k.work, k.work.k, k.work.n)) for k in schedule.kernels
                 if isinstance(k.work, Contraction) and k.work.b_is_param)
    room = arch.offchip.capacity_bytes - ((arch.flash.staging_bytes or 0) if arch.flash else 0)
    return max(stored - room, 0) / stored if stored else 0.0


def common_runs(runs: list[TileCommands]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run boundaries shared by several tile sequences side by side (the longest sets the length): (tiles per
    common run, per sequence the index of its entry in each common run, -1 past its end)."""
    ends = [np.cumsum(c.count if c.count is not None else np.ones(c.compute.shape[0], dtype=np.int64)) for c in runs]
    if all(np.array_equal(e, ends[0]) for e in ends[1:]):
        cuts = ends[0]                                  # the same boundaries (most blocks)
    else:                                               # sorted, duplicates dropped (np.unique's hash is slower)
        cuts = np.sort(np.concatenate(ends))
        cuts = cuts[np.concatenate(([True], cuts[1:] != cuts[:-1]))]
    count = np.diff(cuts, prepend=0)
    where = [np.where(cuts <= e[-1], np.searchsorted(e, cuts - 1, side="right"), -1) for e in ends]
    return count.astype(np.int64), where


def align_runs(runs: list[TileCommands]) -> list[TileCommands]:
    """Commands of the same tiles, as runs cut at the same boundaries (common_runs): entry i of each stands for the
    same tiles."""
    count, where = common_runs(runs)
    return [replace(c, count=count, **{f: getattr(c, f)[at] for f in _PER_TILE}) for c, at in zip(runs, where,
                                                                                                  strict=True)]


def combine_cores(blocks: list[tuple[TileCommands, Contraction, int, int]],
                  loaded_once: tuple[str, ...] = ()) -> TileCommands:
    """Cores running their blocks in lockstep (per block size: its commands, the block, its pieces along m and
    along n): step i moves every core's tile-i bytes over the shared channel and lasts as long as the slowest
    core's compute. An operand in `loaded_once` crosses once per distinct tile: the cores of one m piece share A
    tiles, of one n piece B tiles (the largest of a group's tiles counts). Works on runs: the blocks' run
    boundaries merged (common_runs)."""
    count, where = common_runs([c for c, _, _, _ in blocks])

    def pad(c: TileCommands, field: str, i: int) -> np.ndarray:       # a block's values per common run, 0 past its end
        at = where[i]
        return np.where(at >= 0, getattr(c, field)[np.maximum(at, 0)], 0)

    def total(field, operand=None):
        if operand in loaded_once:
            groups: dict[int, tuple[int, list]] = {}       # piece size -> (pieces of that size, padded arrays)
            for i, (c, block, cm, cn) in enumerate(blocks):
                size, pieces = (block.m, cm) if operand == "input" else (block.n, cn)
                groups.setdefault(size, (pieces, []))[1].append(pad(c, field, i))
            return sum(pieces * np.max(arrays, axis=0) for pieces, arrays in groups.values())
        return sum(cm * cn * pad(c, field, i) for i, (c, _, cm, cn) in enumerate(blocks))
    first = blocks[0][0]
    return TileCommands(total("input_bytes", "input"), total("weight_bytes", "weight"), total("psum_bytes"),
                        total("store_bytes"), np.max([pad(c, "compute", i) for i, (c, _, _, _) in enumerate(blocks)],
                                                     axis=0),
                        first.engine, first.slots, total("flash_bytes", "weight"), count)


@dataclass(frozen=True)
class Program:
    """All tiles of a schedule as runs (entry: count identical tiles), stored per block: kernels with the same tile
    commands (repeated layers) share one block of entries, so memory grows with distinct kernels, not with layers.
    Kernel j's entries are block_run[block[j]] .. block_run[block[j] + 1] - 1 of the per-entry arrays; in the whole
    program they stand at first_run[j] .. first_run[j + 1] - 1 (its tiles at first_tile[j] ..)."""
    per_kernel: tuple[TileCommands, ...]
    first_tile: np.ndarray      # int64, len kernels + 1
    first_run: np.ndarray       # int64, len kernels + 1: each kernel's first entry in the whole program
    block: np.ndarray           # int64 per kernel: the block holding its entries
    block_run: np.ndarray       # int64, len blocks + 1: each block's first entry in the per-entry arrays
    count: np.ndarray           # int64 per entry: tiles it stands for
    load_xfer: np.ndarray       # float64 per entry: DMA cycles
    store_xfer: np.ndarray
    compute: np.ndarray         # float64 per entry: cycles
    engine: np.ndarray          # int64 per kernel
    slots: np.ndarray           # int64 per kernel
    dep: np.ndarray             # int64 per kernel: kernel whose last tile's store must end before its loads (-1: none)
    flash_xfer: np.ndarray      # float64 per entry: flash-channel cycles
    flash_gate: np.ndarray      # int64 per entry: tile whose DRAM load must arrive before this tile's flash read (-1:
    #                             none; a program with flash reads has one entry per tile and a block per kernel)

    def entries(self, j: int) -> slice:
        """Kernel j's entries in the per-entry arrays."""
        b = int(self.block[j])
        return slice(int(self.block_run[b]), int(self.block_run[b + 1]))

    def kernel_totals(self, values: np.ndarray) -> np.ndarray:
        """Per kernel, the sum over its tiles of a per-entry array."""
        weighted = np.asarray(values * self.count, dtype=np.float64)
        per_block = np.array([weighted[a:b].sum() for a, b in zip(self.block_run[:-1].tolist(),
                                                                  self.block_run[1:].tolist(), strict=True)])
        return per_block[self.block] if per_block.shape[0] else np.zeros(self.block.shape[0])

    def total(self, values: np.ndarray) -> float:
        """Sum over all tiles of a per-entry array."""
        return float(self.kernel_totals(values).sum())

    def flat_index(self) -> np.ndarray:
        """The per-entry arrays' index of every entry of the whole program, in program order."""
        lo = self.block_run[self.block]
        n = np.diff(self.first_run)
        return np.repeat(lo - self.first_run[:-1], n) + np.arange(int(self.first_run[-1]), dtype=np.int64)

    def tiles(self) -> TileProgram:
        """The same program one entry per tile (dep as each kernel's last tile, for run_tiles)."""
        at = self.flat_index()
        count = self.count[at]
        kernel = np.repeat(np.repeat(np.arange(self.block.shape[0], dtype=np.int64), np.diff(self.first_run)), count)
        rep = lambda a: np.repeat(a[at], count)      # noqa: E731
        dep = np.where(self.dep >= 0, self.first_tile[self.dep + 1] - 1, -1)
        return TileProgram(self.first_tile, kernel, rep(self.load_xfer), rep(self.store_xfer), rep(self.compute),
                           self.engine[kernel], self.slots[kernel], dep[kernel], rep(self.flash_xfer),
                           rep(self.flash_gate))


@dataclass(frozen=True)
class TileProgram:
    """A program one entry per tile (for run_tiles and the timeline)."""
    first_tile: np.ndarray      # int64, len kernels + 1
    kernel: np.ndarray          # int64 per tile
    load_xfer: np.ndarray       # float64 per tile
    store_xfer: np.ndarray
    compute: np.ndarray
    engine: np.ndarray          # int64 per tile
    slots: np.ndarray
    dep: np.ndarray             # int64 per tile: the tile whose store must end before its load (-1: none)
    flash_xfer: np.ndarray
    flash_gate: np.ndarray


class CommandKey(NamedTuple):
    """build_program's memo key of a kernel's tile commands: what kernel_runs reads of the kernel, the DRAM traffic
    behind the arch's cache (through_cache reads the arch beyond the memo's promise only through it) and the
    kernel's flash share."""
    work: object
    mapping: object
    split: object
    epilogue: object
    residency: object
    traffic: Traffic | None
    flash_share: float


def command_key(k: Kernel, arch: ArchConfig, timing: str, share: float) -> CommandKey:
    """A kernel's CommandKey on `arch` (`share`: the flash share of every weight)."""
    traffic = cache_traffic(k.work, arch, timing) if arch.cache and isinstance(k.work, Contraction) else None
    return CommandKey(k.work, k.mapping, k.split, k.epilogue, k.residency, traffic, flash_share(k, arch, share))


def kept_commands(schedule: Schedule, arch: ArchConfig, overflow: float | None = None, memo: dict | None = None,
                  max_entries: int = 500_000) -> dict:
    """Each distinct kernel's tile commands on `arch` by command_key (made into `memo` where missing, as
    build_program makes them; the program itself is not assembled), for another process to simulate the schedule
    without making them again (a stored schedule's, sim/studies/schedule_store.py: remember_commands); empty when
    they hold more than max_entries entries (~30 MB)."""
    made: dict = {} if memo is None else memo
    share = overflow_share(schedule, arch) if overflow is None else overflow
    kept: dict[CommandKey, TileCommands] = {}
    for k in schedule.kernels:
        key = command_key(k, arch, schedule.timing, share)
        if key not in kept:
            kept[key] = memo_commands(k, key, arch, schedule.timing, made, bounded=memo is not None)
    return kept if sum(_entries(c) for c in kept.values()) <= max_entries else {}


def memo_commands(k: Kernel, key: CommandKey, arch: ArchConfig, timing: str, made: dict, bounded: bool
                  ) -> TileCommands:
    """The kernel's tile commands from `made` (build_program's memo) by its `key`, made and put there when
    missing; a `bounded` memo (one kept across calls) stays within MEMO_ENTRIES, the oldest going first."""
    if key in made:
        return made[key]
    made[key] = cmds = kernel_runs(k, arch, timing, key.flash_share)
    # summing the memo at every insertion took 18% of a sweep, so it is checked at each large entry and every 64th:
    # it never holds twice MEMO_ENTRIES
    if bounded and (_entries(cmds) * MEMO_CHECK >= MEMO_ENTRIES or len(made) % MEMO_CHECK == 0):
        drop_oldest(made, _entries, MEMO_ENTRIES)
    return cmds


def remember_commands(kept: dict, arch: ArchConfig, timing: str, memo: dict) -> None:
    """Put kept_commands' commands into `memo` (build_program's, for `arch` and `timing`) and the cache traffic
    their keys hold into cache_traffic's memory, so that building the program looks neither up again."""
    for key, cmds in kept.items():
        memo.setdefault(key, cmds)
        if key.traffic is not None and isinstance(key.work, Contraction):
            remember_cache_traffic(key.work, arch, timing, key.traffic)


def build_program(schedule: Schedule, arch: ArchConfig, overflow: float | None = None,
                  memo: dict | None = None) -> Program:
    """Every kernel's tile runs, one block per distinct commands; DMA cycles = bytes / off-chip bandwidth, flash
    cycles = bytes / flash bandwidth. Weights read from flash are staged in DRAM: the staging write's DRAM time is
    charged to the tile's DRAM load (load cycles = (DRAM reads + flash bytes) / bandwidth), and a flash read may run
    ahead of the loads that consume it by at most `staging_bytes` (flash_gate; a program with flash reads has one
    entry per tile and a block per kernel: the gate counts bytes across kernels). `overflow`: the share of every
    weight in flash under `weights: overflow` (None: from the schedule's weights and the DRAM capacity). `memo`:
    tile commands kept across calls; the caller shares it only among archs that differ in nothing but on-chip
    capacities (which commands do not depend on: sim/sweep.py keys it by the arch without them) and one timing."""
    share = overflow_share(schedule, arch) if overflow is None else overflow
    # repeated layers (same loop nest, mapping, fusion, residency, flash share) share commands
    made: dict = {} if memo is None else memo

    per_kernel = tuple(memo_commands(k, command_key(k, arch, schedule.timing, share), arch, schedule.timing, made,
                                     bounded=memo is not None) for k in schedule.kernels)
    flash = any(c.flash_bytes.any() for c in per_kernel)
    blocks: list[TileCommands] = []
    seen: dict[int, int] = {}                       # id of the commands -> block
    block = np.zeros(len(per_kernel), dtype=np.int64)
    for j, c in enumerate(per_kernel):
        if flash or id(c) not in seen:
            seen[id(c)] = len(blocks)
            blocks.append(c.expanded() if flash else c)
        block[j] = seen[id(c)]
    ones = lambda c: np.ones(c.compute.shape[0], dtype=np.int64)      # noqa: E731
    count = np.concatenate([c.count if c.count is not None else ones(c) for c in blocks])
    sizes = np.array([c.compute.shape[0] for c in blocks], dtype=np.int64)
    block_run = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    first_run = np.concatenate(([0], np.cumsum(sizes[block]))).astype(np.int64)
    first = np.concatenate(([0], np.cumsum([c.tiles for c in per_kernel]))).astype(np.int64)
    bw = arch.offchip.bandwidth_bytes_per_cycle
    dep = np.array([max(k.deps, default=-1) for k in schedule.kernels], dtype=np.int64)
    flash_bytes = np.concatenate([c.flash_bytes for c in blocks])
    fbw = arch.flash.bandwidth_bytes_per_cycle if arch.flash else 1.0
    load_xfer = (np.concatenate([c.load_bytes for c in blocks]) + flash_bytes) / bw
    # a kernel's fixed start cost (launch, ramp): its first load cannot begin before it, so it holds the channel
    load_xfer[block_run[:-1][sizes > 0]] += arch.kernel_overhead_cycles
    return Program(
        per_kernel=per_kernel, first_tile=first, first_run=first_run, block=block, block_run=block_run, count=count,
        load_xfer=load_xfer, store_xfer=np.concatenate([c.store_bytes for c in blocks]) / bw,
        compute=np.concatenate([c.compute for c in blocks]).astype(np.float64),
        engine=np.array([c.engine for c in per_kernel], dtype=np.int64),
        slots=np.array([c.slots for c in per_kernel], dtype=np.int64),
        dep=dep, flash_xfer=flash_bytes / fbw,
        flash_gate=staging_gate(flash_bytes, arch.flash.staging_bytes if arch.flash else None))


MEMO_ENTRIES = 2_000_000       # tile command entries a shared memo keeps (~110 MB; a program's own are kept apart)
MEMO_CHECK = 64                # ... checked at every MEMO_CHECK-th insertion and at each of MEMO_ENTRIES / it or more


def _entries(cmds: TileCommands) -> int:
    return int(cmds.compute.shape[0])


MAX_LAYER_KERNELS = 512         # kernels per repeated layer looked for (kernel_groups)
GRID_STEPS = 1024               # steps a cycle of the pipeline's time grid (simulate.TIME_GRID = 1 / GRID_STEPS)
MIN_LAYER_TILES = 16            # tiles a repeated layer needs (the pipeline's state window is 6 tiles wide)


def kernel_groups(prog: Program) -> np.ndarray:
    """Repeated layers of a program (pipeline.run_program's hint): int64 rows, in order and apart (first kernel,
    kernels per layer, layers, runs per layer, tiles per layer, the first kernel's first tile) where kernel j + p is
    kernel j again: the same block of entries, engine and slots, and a dependency as far back (at most one layer) or
    none. The longest such stretch of at least 3 layers of MIN_LAYER_TILES tiles or more (the shortest layer among
    equals), then the same in what is left on either side of it (a model's dense layers, then its MoE ones). None
    when a compute time is off the pipeline's time grid (simulate's programs never are: on_grid, level_bound): only
    on the grid is every sum of times exact, so that a layer jumped ends where the layer simulated would, to the bit
    (off it, two layer ends can agree while the absolute times have rounded apart by an ulp)."""
    if prog.block.shape[0] < 3 or not np.array_equal(prog.compute * GRID_STEPS, np.floor(prog.compute * GRID_STEPS)):
        return np.zeros((0, 6), dtype=np.int64)       # (fewer than 3 kernels: no 3 layers; a shortlist's one kernel)
    j = np.arange(prog.block.shape[0], dtype=np.int64)
    back = np.where(prog.dep >= 0, j - prog.dep, -1)
    sig = np.stack([prog.block, prog.engine, prog.slots, back], axis=1)
    rows: list[tuple[int, ...]] = []

    def find(lo: int, hi: int) -> None:
        best = (0, 0, 0, 0)                             # (kernels covered, first kernel, kernels per layer, layers)
        for p in range(1, min(MAX_LAYER_KERNELS, (hi - lo) // 3) + 1):
            part = sig[lo:hi]
            same = np.concatenate(([False], (part[:-p] == part[p:]).all(axis=1) & (back[lo:hi - p] <= p), [False]))
            edges = np.flatnonzero(np.diff(same.astype(np.int8)))
            if edges.shape[0] == 0:
                continue
            lengths = edges[1::2] - edges[0::2]
            at = int(np.argmax(lengths))
            layers = (int(lengths[at]) + p) // p
            if layers >= 3 and layers * p > best[0]:
                best = (layers * p, lo + int(edges[0::2][at]), p, layers)
        _, first, p, layers = best
        if not layers:
            return
        tiles = int(prog.first_tile[first + p] - prog.first_tile[first])
        find(lo, first)
        if tiles >= MIN_LAYER_TILES:
            rows.append((first, p, layers, int(prog.first_run[first + p] - prog.first_run[first]), tiles,
                         int(prog.first_tile[first])))
        find(first + p * layers, hi)
    find(0, int(prog.block.shape[0]))
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


MAX_REPEAT_ENTRIES = 4096      # entries per repeat looked for (repeat_groups)
MIN_GROUP_ENTRIES = 64          # kernels (and parts) of fewer entries are left as they are


def repeat_groups(prog: Program) -> np.ndarray:
    """Repeat groups of a program (pipeline.run_program's hint): int64 rows (first entry in the whole program,
    entries per repeat, repeats), in order and apart, each inside one kernel, where entry i + period equals entry i
    (tiles, transfers, compute) throughout; found once per block (block_groups) and placed at each kernel using
    it."""
    found = block_groups(prog)
    rows = [(int(prog.first_run[j]) + a - int(prog.block_run[b]), p, r)
            for j, b in enumerate(prog.block.tolist()) for a, p, r in found.get(b, ())]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def block_groups(prog: Program) -> dict[int, list[tuple[int, int, int]]]:
    """Repeat groups of each block, as (first entry in the per-entry arrays, period, repeats) rows: looked for from
    the middle of the block's entries (the smallest period, up to MAX_REPEAT_ENTRIES, whose span around it repeats
    at least 3 times), then in what is left on either side (or in either half, when none repeats around the
    middle)."""
    sizes = np.diff(prog.block_run)
    if sizes.shape[0] == 0 or int(sizes.max()) < MIN_GROUP_ENTRIES:
        return {}
    bits = lambda a: np.ascontiguousarray(a).view(np.int64)     # noqa: E731  (exact: equal floats, equal bits)
    cols = (prog.count, bits(prog.load_xfer), bits(prog.store_xfer), bits(prog.compute))
    key = cols[0] * 0x9E3779B1 ^ cols[1] * 0x85EBCA77 ^ cols[2] * 0xC2B2AE3D ^ cols[3] * 0x27D4EB2F
    found: list[tuple[int, int, int]] = []

    def search(lo: int, hi: int) -> None:
        if hi - lo < MIN_GROUP_ENTRIES:
            return
        mid = (lo + hi) // 2
        ahead = np.flatnonzero(key[mid + 1:min(hi, mid + 1 + MAX_REPEAT_ENTRIES)] == key[mid]) + 1
        for period in ahead[:8].tolist():
            same = np.ones(hi - lo - period, dtype=bool)
            for c in cols:
                same &= c[lo:hi - period] == c[lo + period:hi]
            at = mid - lo
            if at >= same.shape[0] or not same[at]:
                continue
            breaks = np.flatnonzero(~same)
            a = lo + int(breaks[breaks < at][-1]) + 1 if (breaks < at).any() else lo
            b = lo + int(breaks[breaks > at][0]) if (breaks > at).any() else hi - period
            reps = (b - a + period) // period           # entries a .. b + period - 1 repeat
            if reps >= 3:
                found.append((a, period, reps))
                search(lo, a)
                search(a + reps * period, hi)
                return
        search(lo, mid)                                 # none around the middle (say a run cut in two there)
        search(mid + 1, hi)
    # only blocks whose times are all binary fractions of at most 10 bits (jumps are exact only where sums are:
    # transfers are on the grid, compute is whole cycles unless an on-chip level's bandwidth stretched it)
    scaled = np.concatenate((prog.load_xfer, prog.store_xfer, prog.compute)).reshape(3, -1) * 1024
    exact = (scaled == np.round(scaled)).all(axis=0)
    out: dict[int, list[tuple[int, int, int]]] = {}
    for b in np.flatnonzero(sizes >= MIN_GROUP_ENTRIES).tolist():
        lo, hi = int(prog.block_run[b]), int(prog.block_run[b + 1])
        if exact[lo:hi].all():
            found = []
            search(lo, hi)
            out[b] = sorted(found)
    return out


def staging_gate(flash: np.ndarray, staging_bytes: int | None) -> np.ndarray:
    """For each tile with flash bytes, the tile whose DRAM load must have arrived before its flash read starts, so
    that the weights staged in DRAM (read from flash, not yet loaded on chip) never exceed `staging_bytes`: the
    smallest g with flash[g+1..i] <= staging_bytes, at most i - 1 (a tile larger than the buffer streams through
    it alone); -1 when nothing need drain first, or without a limit."""
    n = flash.shape[0]
    gate = np.full(n, -1, dtype=np.int64)
    if staging_bytes is None or n == 0:
        return gate
    cum = np.cumsum(flash)
    need = cum - staging_bytes                        # bytes that must have left the buffer: cum[g] >= need
    g = np.searchsorted(cum, need, side="left")
    g = np.minimum(g, np.arange(n) - 1)
    return np.where((flash > 0) & (need > 0), g, -1).astype(np.int64)
