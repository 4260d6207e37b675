"""Tiling: tile sizes whose working set fits each on-chip level (halved when double buffered)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tilesim.arch.config import ArchConfig, MemLevel, row_passes_for
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.errors import InputError
from tilesim.compiler.cost import LOOPS, IntArray, Mapping, a_tile_bytes, held_tiles, nbytes
from tilesim.compiler.lowering import Contraction, VectorWork
from tilesim.compiler.sparsity import b_tile_bytes

Bytes = TypeVar("Bytes", int, npt.NDArray[np.int64])


@dataclass(frozen=True)
class VectorMapping:
    """How vector work is split: elements per tile (each tile loads, computes, stores)."""
    tile_elements: int

    def describe(self) -> str:
        """One line for reports, e.g. 'vector tile=4096 elems'."""
        return f"vector tile={self.tile_elements} elems"

    def tile_count(self, work: VectorWork) -> int:
        """Tiles of `work`: its elements in slices of tile_elements."""
        return -(-work.elements // self.tile_elements)


def level_footprint(tiles: dict[str, Bytes], arch: ArchConfig) -> dict[str, Bytes | int]:
    """Bytes needed in each on-chip level: each operand's tile (bytes, or an array of bytes per candidate) in its
    home level, twice when that level double-buffers; 0 for a level that holds none of them. The one footprint
    rule: contractions (footprint, the mapper's candidates) and fused attention blocks use it."""
    need: dict[str, Bytes | int] = {lv.name: 0 for lv in arch.onchip}
    for operand, size in tiles.items():
        home = arch.home(operand)
        need[home.name] = need[home.name] + size * (2 if home.double_buffered else 1)
    return need


def tile_bytes(work: Contraction, tm: npt.ArrayLike, tn: npt.ArrayLike, tk: npt.ArrayLike,
               acc_dtype: str) -> dict[str, IntArray]:
    """Bytes of one tile of each operand with tile sizes tm, tn, tk (scalars or arrays of candidates); the output
    at accumulator precision."""
    m, n, k = np.asarray(tm), np.asarray(tn), np.asarray(tk)
    return {"input": a_tile_bytes(work, m, k), "weight": b_tile_bytes(work, k, n),
            "output": nbytes(m * n, acc_dtype)}


def footprint(work: Contraction, mapping: Mapping, arch: ArchConfig) -> dict[str, int]:
    """Bytes needed in each on-chip level by a contraction's tiles (level_footprint); a held operand's tile spans
    its innermost loop (compiler.cost.held_tiles)."""
    tiles = tile_bytes(work, mapping.tile_m, mapping.tile_n, mapping.tile_k, arch.array.acc_dtype)
    if mapping.held:
        ext = held_tiles(mapping, {"m": work.m, "n": work.n, "k": work.k})[mapping.held]
        whole = tile_bytes(work, ext.get("m", mapping.tile_m), ext.get("n", mapping.tile_n),
                           ext.get("k", mapping.tile_k), arch.array.acc_dtype)
        tiles[mapping.held] = whole[mapping.held]
    return {name: int(v) for name, v in level_footprint(tiles, arch).items()}


def fits(work: Contraction, mapping: Mapping, arch: ArchConfig) -> bool:
    """Whether every level's working set fits its capacity."""
    need = footprint(work, mapping, arch)
    return all(need[lv.name] <= lv.capacity_bytes for lv in arch.onchip)


def alignment(work: Contraction, arch: ArchConfig, dataflow: str) -> dict[str, int]:
    """Preferred tile multiples: array rows/cols for the spatial dims, whole output rows for conv M."""
    dims = DATAFLOWS[dataflow]
    unit = dict.fromkeys(LOOPS, 1)
    unit[dims.rows] = arch.array.rows
    unit[dims.cols] = arch.array.cols
    if dims.streamed == "m" and work.window is not None:
        unit["m"] = work.window.out_w
    if work.window is not None and unit["k"] < work.window.window:
        unit["k"] = work.window.window      # whole channels: every window element of a channel together
    return unit


def halve(size: int, unit: int) -> int:
    """Roughly half of `size`, kept a multiple of `unit` while it is larger than `unit`."""
    half = ceil(size / 2)
    if half >= unit:
        return ceil(half / unit) * unit if ceil(half / unit) * unit < size else half
    return half if size <= unit else unit


def naive_mapping(work: Contraction, arch: ArchConfig, dataflow: str | None = None, name: str = "") -> Mapping:
    """The first tiling that fits: start from whole dims, halve the dim that best relieves the most overfull
    level until every level fits; loop order m, n, k (outputs stay in the buffer until fully reduced)."""
    dataflow = dataflow or arch.array.dataflow
    mapping = Mapping(dataflow, work.m, work.n, work.k, "mnk")
    unit = alignment(work, arch, dataflow)
    caps = {lv.name: lv.capacity_bytes for lv in arch.onchip}
    while True:
        need = footprint(work, mapping, arch)
        over = max(need[n] / caps[n] for n in caps)
        if over <= 1:
            return mapping
        best = None
        for d in ("k", "n", "m"):           # fixed order breaks ties deterministically
            size = mapping.tile(d)
            if size == 1:
                continue
            tiles = {"m": mapping.tile_m, "n": mapping.tile_n, "k": mapping.tile_k, d: halve(size, unit[d])}
            trial = Mapping(dataflow, tiles["m"], tiles["n"], tiles["k"], mapping.order)
            t_need = footprint(work, trial, arch)
            score = max(t_need[n] / caps[n] for n in caps)
            if best is None or score < best[0]:
                best = (score, trial)
        if best is None:
            worst = max(caps, key=lambda n: need[n] / caps[n])
            raise InputError(f"memory.{worst}.capacity_bytes: {caps[worst]} B is too small for any tile of op "
                             f"'{name}' (needs at least {need[worst]} B)")
        mapping = best[1]


VECTOR_MAX_TILES = 4096      # smallest tile a vector kernel is cut into: 1/4096 of its elements (bounds tile counts)


def vector_read_bytes(work: VectorWork, arch: ArchConfig, read_bytes: int | None = None) -> int:
    """Off-chip bytes vector work reads: `read_bytes` (default all it reads; less whatever stays on chip) plus the
    extra passes an implementation that does not keep rows on chip makes over a row reduction's input
    (arch.vector.row_passes)."""
    read = work.read_bytes if read_bytes is None else read_bytes
    if not work.row_bytes:
        return read
    return read + round(min(work.row_bytes, read) * (row_passes_for(arch.vector.row_passes, work.row_elems) - 1))


def vector_cycles(work: VectorWork, arch: ArchConfig, tile_elements: int) -> float:
    """Closed-form cycles of vector work in tiles of `tile_elements` (the pipeline of sim/core/kernels/pipeline.py
    without its tile-by-tile detail): the cores take a tile each per step; a step streams its reads and writes
    over the shared off-chip channel (rd + wr) while the lanes compute (c); each buffer slot cycles through load,
    compute and store with the off-chip latency L on both transfers, so a step also takes (rd + c + wr + 2L) /
    slots; the first load and the last store are not overlapped when double buffered:
        T = steps * max(rd + wr, c, (rd + c + wr + 2L) / slots) + (slots - 1) * (rd + wr + 2L),
    and at least the time the activation buffer needs for its bytes at the bandwidth of the copies in use."""
    n = max(work.elements, 1)
    tiles = -(-n // tile_elements)
    p = min(arch.cores, tiles)
    share = tile_elements * p / n                       # a step's share of the kernel
    off = arch.offchip
    reads = vector_read_bytes(work, arch)
    rd = reads * share / off.bandwidth_bytes_per_cycle
    wr = work.write_bytes * share / off.bandwidth_bytes_per_cycle
    c = work.ops * share / (arch.vector.lanes * arch.vector.ops_per_lane_cycle * arch.cores)
    home = arch.home("input")
    slots = 2 if home.double_buffered else 1
    lat = 2 * off.latency_cycles
    pipeline = -(-tiles // p) * max(rd + wr, c, (rd + c + wr + lat) / slots) + (slots - 1) * (rd + wr + lat)
    # the buffer's own bandwidth (sim/core/simulate.py level_bound): every byte written in and read out once
    # (core/energy.py action_counts), over the copies of a per-core level that the p cores in use hold
    copies = p if home.kind == "sram" and not home.shared else 1
    return max(pipeline, 2 * (reads + work.write_bytes) / (home.bandwidth_bytes_per_cycle * copies))


def vector_mapping(work: VectorWork, arch: ArchConfig, core: ArchConfig | None = None,
                   name: str = "") -> VectorMapping:
    """Elements per tile: of the sizes whose inputs and outputs fit one core's activation buffer (`core`, default
    `arch`; twice if double buffered) -- powers of two and the whole kernel, none under 1/VECTOR_MAX_TILES of it
    unless nothing larger fits -- the one with the fewest vector_cycles (ties: the larger). The candidates do not
    depend on the capacity beyond what fits, so a larger buffer never gives a worse estimate (issue 21).
    Remembered by what it reads of the archs (a lowering's fusion guard and a sweep's points ask again)."""
    level = (core or arch).home("input")
    try:
        return _vector_mapping(work, _VectorKey(arch, level))
    except _NoRoom as e:
        raise InputError(f"memory.{level.name}.capacity_bytes: {level.capacity_bytes} B is too small for one "
                         f"element of op '{name}' ({e.need_bytes:g} B)") from None


class _NoRoom(Exception):
    """Not one element fits the buffer (vector_mapping names the op)."""

    def __init__(self, need_bytes: float):
        super().__init__(need_bytes)
        self.need_bytes = need_bytes


class _VectorKey:
    """Hashable wrapper: what vector_mapping reads of an arch (cores, off-chip level, vector unit, activation buffer)
    and of the core whose buffer the tiles must fit."""

    def __init__(self, arch: ArchConfig, level: MemLevel):
        self.arch, self.level = arch, level
        self.key = (arch.cores, arch.offchip, arch.vector, arch.home("input"), level)
        self.hash = hash(self.key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VectorKey) and self.key == other.key


@lru_cache(maxsize=4096)
def _vector_mapping(work: VectorWork, key: _VectorKey) -> VectorMapping:
    """vector_mapping's answer for the arch and core level in `key` (_NoRoom: not one element fits)."""
    arch, level = key.arch, key.level
    n = max(work.elements, 1)
    per_elem = (work.read_bytes + work.write_bytes) / n
    slots = 2 if level.double_buffered else 1
    fit = int(level.capacity_bytes // (per_elem * slots)) if per_elem > 0 else n
    if fit < 1:
        raise _NoRoom(per_elem * slots)
    top = min(fit, n)
    sizes = [1 << j for j in range(top.bit_length()) if 1 << j <= top] + ([n] if n <= fit else [])
    floor = -(-n // VECTOR_MAX_TILES)
    sizes = [e for e in sizes if e >= floor] or [max(sizes)]
    return VectorMapping(min(sizes, key=lambda e: (vector_cycles(work, arch, e), -e)))


__all__ = ["VectorMapping", "fits", "footprint", "level_footprint", "naive_mapping", "tile_bytes", "vector_cycles",
           "vector_mapping", "vector_read_bytes"]
