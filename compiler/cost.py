"""Closed-form cost model shared by the mapper and the simulator: array fold timing and per-operand DRAM traffic."""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

import numpy as np
import numpy.typing as npt

from tilesim.arch.config import ArchConfig, PEArray
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.dtypes import DTYPE_BYTES, tensor_bytes
from tilesim.arch.errors import InputError
from tilesim.compiler.lowering import MAX_COUNT, Contraction
from tilesim.compiler.sparsity import b_tile_bytes, weight_bytes_per_fed_value

IntArray = npt.NDArray[np.int64]
LOOPS = ("m", "n", "k")
MAX_TILES = 20_000_000      # per kernel: tilings with more tiles are left out of the mapping search (the simulator
#                             has no tile limit since issue 22: it keeps runs of identical tiles, core/simulate.py)
OPERAND_DIMS = {"input": ("m", "k"), "weight": ("k", "n"), "output": ("m", "n")}


@dataclass(frozen=True)
class Mapping:
    """How a contraction runs: dataflow on the array, DRAM->buffer tile sizes, tile-loop order (outer to inner)."""
    dataflow: str
    tile_m: int
    tile_n: int
    tile_k: int
    order: str = "mnk"
    hold: bool = False      # the operand the middle loop does not index stays on chip across its iterations

    def tile(self, dim: str) -> int:
        """Tile size along loop `dim` (m, n or k)."""
        return {"m": self.tile_m, "n": self.tile_n, "k": self.tile_k}[dim]

    @property
    def held(self) -> str | None:
        """The operand kept on chip across the middle loop's iterations (`hold`), or None. The middle loop does not
        index it, so without `hold` it is loaded again (or, the output, spilled and reloaded) at every middle
        iteration; held, it is loaded once per outer iteration and its tile spans its innermost loop's whole
        extent (e.g. order mnk: A's tile_m x K stays while B's K tiles stream: K tiled for B, not for A; order
        mkn: C's tile_m x N accumulates on chip across the K tiles)."""
        return held_operand(self.order) if self.hold else None

    def describe(self) -> str:
        """One line for reports, e.g. 'ws m=784 n=256 k=576 order=mnk' (and ' hold=input' when held)."""
        held = f" hold={self.held}" if self.held else ""
        return f"{self.dataflow} m={self.tile_m} n={self.tile_n} k={self.tile_k} order={self.order}{held}"

    def tile_count(self, work: Contraction) -> int:
        """Tiles of `work` under this mapping: g x the product of the trip counts."""
        return work.g * -(-work.m // self.tile_m) * -(-work.n // self.tile_n) * -(-work.k // self.tile_k)

    @property
    def t_tile(self) -> int:
        """Tile size along the loop that streams through the array (arch.dataflow.DATAFLOWS)."""
        return self.tile(DATAFLOWS[self.dataflow].streamed)


def held_operand(order: str) -> str:
    """The operand a loop order's middle loop does not index (the one `Mapping.hold` keeps on chip)."""
    return next(o for o, dims in OPERAND_DIMS.items() if order[1] not in dims)


def hold_matters(order: str, trips: dict[str, int]) -> bool:
    """Whether holding changes anything: the middle loop repeats, and the held operand's innermost loop too."""
    return trips[order[1]] > 1 and trips[order[2]] > 1


def held_tiles(mapping: Mapping, work_dims: dict[str, int]) -> dict[str, dict[str, int]]:
    """Each operand's tile extent per loop: the mapping's tiles, except that a held operand's tile spans the whole
    of its innermost loop (`work_dims`: the contraction's m, n and k)."""
    tiles = {d: mapping.tile(d) for d in LOOPS}
    out = {o: {d: tiles[d] for d in dims} for o, dims in OPERAND_DIMS.items()}
    if mapping.held:
        out[mapping.held][mapping.order[2]] = work_dims[mapping.order[2]]
    return out


# ---------------------------------------------------------------- array timing (docs/design.md section 4 and 8)

def spatial_dims(work: Contraction, dataflow: str) -> tuple[int, int, int]:
    """(Sr, Sc, T): rows-mapped, cols-mapped and streamed dims (arch.dataflow.DATAFLOWS); K as the array runs it
    (the kept weights when it skips zeros, compiler/sparsity.py)."""
    return DATAFLOWS[dataflow].spatial(work.m, work.n, work.k_compute)


def folds(sr: int, sc: int, rows: int, cols: int) -> int:
    """Spatial blocks: ceil(Sr/R) * ceil(Sc/C)."""
    return ceil(sr / rows) * ceil(sc / cols)


def tiled_folds(size: npt.ArrayLike, tile: npt.ArrayLike, units: int) -> IntArray:
    """Folds of a spatial loop of `size` cut into tiles of `tile`, on `units` array rows or columns: each tile
    folds on its own, ceil(extent / units), so a tile that leaves part of the array idle still takes a whole fold
    (ceil(size / units) when the tile is a multiple of `units`). Elementwise over arrays of tiles."""
    whole = np.asarray(size, dtype=np.int64)
    cut = np.minimum(np.asarray(tile, dtype=np.int64), whole)
    n = -(-whole // cut)
    rem = whole - (n - 1) * cut
    return np.asarray((n - 1) * -(-cut // units) + -(-rem // units))


def spatial_tiles(work: Contraction, mapping: Mapping) -> tuple[int, int]:
    """The mapping's tiles along the rows- and cols-mapped loops (spatial_dims' Sr, Sc); a K that skips zeros as
    one tile (its kept weights are packed per column, compiler/sparsity.py)."""
    dims = DATAFLOWS[mapping.dataflow]
    sr, sc, _ = spatial_dims(work, mapping.dataflow)
    return tuple(size if d == "k" and work.skip else min(mapping.tile(d), size)          # type: ignore[return-value]
                 for d, size in ((dims.rows, sr), (dims.cols, sc)))


def mapping_efficiency(sr: int, sc: int, rows: int, cols: int, s_tiles: tuple[int, int] | None = None) -> float:
    """Mean over folds of used PEs / (R*C) = Sr*Sc / (Fr*Fc*R*C) (the mean of r_i*c_j factorises); with the
    mapping's spatial tiles, over the folds of its tiles (tiled_folds)."""
    if s_tiles is None:
        return (sr * sc) / (folds(sr, sc, rows, cols) * rows * cols)
    return (sr * sc) / (int(tiled_folds(sr, s_tiles[0], rows)) * int(tiled_folds(sc, s_tiles[1], cols)) * rows * cols)


def fold_overhead(rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim per-fold cycles beyond T: R + C - 2 for OS, 2R + C - 2 for WS/IS (R of them preload)."""
    return rows + cols - 2 + (rows if DATAFLOWS[dataflow].preloads else 0)


def streamed_cycles(t: int, array: PEArray) -> int:
    """Cycles to stream `t` elements of the streamed dimension through PEs doing macs_per_pe_cycle MACs a cycle."""
    return -(-t // array.macs_per_pe_cycle)


def array_cycles(work: Contraction, array: PEArray, dataflow: str, mode: str, t_tile: int,
                 s_tiles: tuple[int, int] | None = None) -> int:
    """Compute cycles of a whole contraction on `array.count` arrays.

    scalesim:  F * (T + overhead) - 1, F = g*Fr*Fc folds run back to back (SCALE-Sim 3.0.0, exact).
    pipelined: the next fold's preload (WS/IS) or drain (OS), R cycles, overlaps the current stream, so each
               stationary block costs max(T_chunk, R) per streamed chunk; one fill + drain (R + C - 2) and, for
               WS/IS, one initial preload R are paid per kernel. Chunks are the tile's slices of T.
    With several arrays, folds are dealt out round-robin: each array runs ceil(F / count) of them. A PE that does
    `macs_per_pe_cycle` = p MACs a cycle consumes p elements of the streamed dimension a cycle: T and its chunks
    take ceil(T / p) cycles.
    In pipelined mode, `s_tiles` (spatial_tiles: the mapping's tiles of Sr and Sc) makes each tile fold on its
    own (tiled_folds): a tile of 5 rows on a 19-row array takes a whole fold, as a tile of 19 does (the folds of the
    whole loops counted it as 5/19 of one, so tilings that leave the array idle looked as fast as full ones).
    scalesim mode keeps SCALE-Sim's whole-layer folds.
    """
    r, c = array.rows, array.cols
    sr, sc, t = spatial_dims(work, dataflow)
    if work.skip and DATAFLOWS[dataflow].streamed == "k":     # a K tile streams only its kept weights
        t_tile = replace(work, k=t_tile).k_compute
    t, t_tile = streamed_cycles(t, array), streamed_cycles(t_tile, array)
    if mode == "scalesim":
        return ceil(work.g * folds(sr, sc, r, c) / array.count) * (t + fold_overhead(r, c, dataflow)) - 1
    spatial = folds(sr, sc, r, c) if s_tiles is None else \
        int(tiled_folds(sr, s_tiles[0], r)) * int(tiled_folds(sc, s_tiles[1], c))
    per_array = ceil(work.g * spatial / array.count)
    full, rem = divmod(t, t_tile)
    per_block = full * max(t_tile, r) + (max(rem, r) if rem else 0)
    preload = r if DATAFLOWS[dataflow].preloads else 0
    return preload + per_array * per_block + r + c - 2


def array_feed_elems(work: Contraction, dataflow: str, rows: int, cols: int) -> tuple[int, int, int, int]:
    """Elements moved between the buffers and the array (SCALE-Sim's SRAM access counts, docs/design.md section 10):
    (A reads, B reads, C writes, C reads), C at accumulator precision.
      OS: A M*K*Fc, B K*N*Fr, C written once M*N.
      WS: A M*K*Fc, B K*N, C written per row fold M*N*Fr and read back to accumulate M*N*(Fr-1).
      IS: A K*M, B K*N*Fc, C as WS.
    An array that skips zero weights is fed only the kept ones (K = work.k_compute for B) but still reads every
    activation of a group to pick among them (SCALE-Sim's sparse mode reads each ifmap block M/N times)."""
    sr, sc, _ = spatial_dims(work, dataflow)
    fr, fc = ceil(sr / rows), ceil(sc / cols)
    mk, kn, mn = work.m * work.k, work.k_compute * work.n, work.m * work.n
    feeds = {"os": (mk * fc, kn * fr, mn, 0), "ws": (mk * fc, kn, mn * fr, mn * (fr - 1)),
             "is": (mk, kn * fc, mn * fr, mn * (fr - 1))}[dataflow]
    a_r, b_r, c_w, c_r = (work.g * f for f in feeds)
    return a_r, b_r, c_w, c_r


def level_feed_bytes(work: Contraction, dataflow: str, arch: ArchConfig) -> dict[str, int]:
    """Bytes each on-chip level moves to and from the array while a contraction computes: the array feeds
    (array_feed_elems) charged to the level that holds each operand, partial sums at accumulator precision."""
    a_r, b_r, c_w, c_r = array_feed_elems(work, dataflow, arch.array.rows, arch.array.cols)
    acc = DTYPE_BYTES[arch.array.acc_dtype]
    moved = {lv.name: 0.0 for lv in arch.onchip}
    moved[arch.home("input").name] += a_r * DTYPE_BYTES[work.a_dtype]
    moved[arch.home("weight").name] += b_r * weight_bytes_per_fed_value(work)     # stored bytes when sparse
    moved[arch.home("output").name] += (c_w + c_r) * acc
    return {name: ceil(v) for name, v in moved.items()}


def feed_cycles(work: Contraction, dataflow: str, arch: ArchConfig) -> int:
    """Cycles the on-chip levels need to feed the array: max over levels of bytes moved / level bandwidth."""
    bws = {lv.name: lv.bandwidth_bytes_per_cycle for lv in arch.onchip}
    need = {name: b / bws[name] for name, b in level_feed_bytes(work, dataflow, arch).items()}
    for name, cycles in need.items():
        if not cycles < MAX_COUNT:          # a float: checked before ceil, which cannot take inf
            raise InputError(f"memory.{name}.bandwidth_bytes_per_cycle: {bws[name]:.3g} bytes/cycle would take "
                             f"{cycles:.3g} cycles to feed the array, more than tilesim's 64-bit counters hold "
                             "(< 2**62); raise it or use a smaller workload")
    return max(ceil(c) for c in need.values())


def compute_cycles(work: Contraction, arch: ArchConfig, dataflow: str, mode: str, t_tile: int,
                   s_tiles: tuple[int, int] | None = None) -> int:
    """A contraction's compute time: the array's fold timing (of its spatial tiles `s_tiles`, if given:
    array_cycles), stretched when an on-chip level cannot feed it that fast (pipelined mode). scalesim mode keeps
    SCALE-Sim's assumption that SRAMs always keep up."""
    cycles = array_cycles(work, arch.array, dataflow, mode, t_tile, s_tiles)
    return cycles if mode == "scalesim" else max(cycles, feed_cycles(work, dataflow, arch))


# ---------------------------------------------------------------- tiles and traffic

def extents(size: int, tile: int) -> IntArray:
    """Sizes of the tiles that cover `size` with tiles of `tile` (the last may be partial)."""
    n = -(-size // tile)
    e = np.full(n, tile, dtype=np.int64)
    e[-1] = size - tile * (n - 1)
    return e


def extents_at(size: int, tile: int, at: npt.ArrayLike) -> IntArray:
    """extents(size, tile)[at] without the whole loop: `tile` at every iteration but the last, which holds the
    rest."""
    n = -(-size // tile)
    return np.where(np.asarray(at) == n - 1, size - tile * (n - 1), tile).astype(np.int64)


def nbytes(elems: npt.ArrayLike, dtype: str) -> IntArray:
    """Bytes of `elems` elements of `dtype` elementwise, rounded up (arch.dtypes.tensor_bytes over arrays)."""
    return tensor_bytes(np.asarray(elems, dtype=np.int64), dtype)


def a_tile_bytes(work: Contraction, m_ext: npt.ArrayLike, k_ext: npt.ArrayLike) -> IntArray:
    """Bytes of the A tiles with the given extents (elementwise over arrays)."""
    m, k = np.asarray(m_ext), np.asarray(k_ext)
    if work.window is None:
        return nbytes(m * k, work.a_dtype)
    w = work.window
    out_rows = -(-m // w.out_w)
    in_rows = np.minimum((out_rows - 1) * w.stride_h + w.span_h, w.in_h)
    channels = -(-k // w.window)
    return nbytes(np.minimum(in_rows * w.in_w * channels, m * k), work.a_dtype)


# Bursts: an off-chip or flash level moves whole bursts of `burst_bytes`. A transfer of b bytes made of r equal
# contiguous runs moves r * ceil(b / (r * B)) * B bytes (every run starts on a burst boundary: rows padded to
# bursts). Runs per tile: activations are row-major, so an A tile (m x k of M x K), a B tile that is an activation
# (k x n of K x N) and a C or partial-sum tile (m x n of M x N) are one run per tile row, or one run when the tile
# spans whole rows; a conv input tile is one run per channel of its feature-map region (NCHW), or one when the
# region spans whole channels; a weight tile is one run (constants are laid out tile by tile offline). B = 1 moves
# exactly the tile's bytes (int4 packed across rows).

def burst_bytes(size: npt.ArrayLike, runs: npt.ArrayLike, burst: int) -> IntArray:
    """Bytes moved for transfers of `size` bytes in `runs` equal contiguous runs with bursts of `burst` bytes."""
    if burst <= 1:
        return np.asarray(size)
    b = np.asarray(size, dtype=np.int64)
    r = np.maximum(np.asarray(runs, dtype=np.int64), 1)
    return np.where(b > 0, r * (-(-b // (r * burst))) * burst, 0)


def a_runs(work: Contraction, m_ext: npt.ArrayLike, k_ext: npt.ArrayLike) -> IntArray:
    """Contiguous runs of A tiles with the given extents (see burst_bytes)."""
    if work.window is None:
        return np.where(np.asarray(k_ext) < work.k, m_ext, 1)
    w = work.window
    out_rows = -(-np.asarray(m_ext) // w.out_w)
    in_rows = np.minimum((out_rows - 1) * w.stride_h + w.span_h, w.in_h)
    return np.where(in_rows < w.in_h, -(-np.asarray(k_ext) // w.window), 1)


def b_runs(work: Contraction, k_ext: npt.ArrayLike, n_ext: npt.ArrayLike) -> IntArray:
    """Contiguous runs of B tiles: one for weights (laid out by tile), else one per row unless whole rows."""
    if work.b_is_param:
        return np.ones_like(np.asarray(k_ext))
    return np.where(np.asarray(n_ext) < work.n, k_ext, 1)


def c_runs(work: Contraction, m_ext: npt.ArrayLike, n_ext: npt.ArrayLike) -> IntArray:
    """Contiguous runs of output (and partial-sum) tiles: one per row unless the tile spans whole rows."""
    return np.where(np.asarray(n_ext) < work.n, m_ext, 1)


def trip_counts(work: Contraction, mapping: Mapping) -> dict[str, int]:
    """Tile-loop trip counts per loop."""
    return {d: -(-getattr(work, d) // mapping.tile(d)) for d in LOOPS}


def reuse_reps(order: str, trips: dict[str, int], dims: tuple[str, ...], held: bool = False) -> int:
    """How many times an operand indexed by `dims` is swept in full: a tile is reloaded whenever its index changes
    between consecutive iterations, so loops it does not depend on multiply its traffic only when they lie
    outside the innermost loop it does depend on (with more than one trip). A held operand (Mapping.hold) is
    swept once: the one loop it does not depend on is the middle one, across which it stays on chip."""
    if held:
        return 1
    relevant = [i for i, d in enumerate(order) if d in dims and trips[d] > 1]
    if not relevant:
        return 1
    return int(np.prod([trips[d] for d in order[: relevant[-1] + 1] if d not in dims], dtype=np.int64))


@dataclass(frozen=True)
class Traffic:
    """DRAM bytes of one contraction by operand: reads of A and B, partial-sum reloads, and writes of C."""
    input_read: int
    weight_read: int
    psum_read: int
    output_write: int

    @property
    def read(self) -> int:
        """All bytes read from DRAM."""
        return self.input_read + self.weight_read + self.psum_read

    @property
    def write(self) -> int:
        """All bytes written to DRAM (final outputs and spilled partial sums)."""
        return self.output_write


def dram_traffic(work: Contraction, mapping: Mapping, acc_dtype: str, burst: int = 1) -> Traffic:
    """Closed-form DRAM traffic of a tiled contraction; partial sums spill at `acc_dtype` when k is not innermost
    of the output's loops (unless the output is held on chip); every transfer rounded up to whole bursts
    (burst_bytes). The simulator's per-tile commands must add up to exactly this."""
    trips = trip_counts(work, mapping)
    em, en, ek = (extents(getattr(work, d), mapping.tile(d)) for d in LOOPS)
    m, n, k = em[:, None], en[None, :], ek[:, None]
    # one sweep = every tile once; bytes are rounded per tile, as a DMA moves them (int4 packs two per byte)
    a_sweep = int(burst_bytes(a_tile_bytes(work, m, ek[None, :]), a_runs(work, m, ek[None, :]), burst).sum())
    b_sweep = int(burst_bytes(b_tile_bytes(work, k, n), b_runs(work, k, n), burst).sum())
    c_final = int(burst_bytes(nbytes(m * n, work.c_dtype), c_runs(work, m, n), burst).sum())
    c_acc = int(burst_bytes(nbytes(m * n, acc_dtype), c_runs(work, m, n), burst).sum())
    order, held = mapping.order, mapping.held
    spills = reuse_reps(order, trips, OPERAND_DIMS["output"], held == "output") - 1
    g = work.g
    return Traffic(input_read=g * reuse_reps(order, trips, OPERAND_DIMS["input"], held == "input") * a_sweep,
                   weight_read=g * reuse_reps(order, trips, OPERAND_DIMS["weight"], held == "weight") * b_sweep,
                   psum_read=g * spills * c_acc,
                   output_write=g * (c_final + spills * c_acc))
