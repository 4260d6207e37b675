"""The mapping search's rankings of candidate tilings (compiler/mapper.py _orders and _pickable), compiled: per
ranking row, the candidates a search can pick, ranked by (objective, DRAM bytes, tiles, index) and by (DRAM bytes,
tiles, objective, index); and a search's picks from those rankings at one capacity (first_fitting, numpy's
_ranked_picks). The numpy forms state the same rules and stay the references; the rankings are permutations fully
decided by their keys (the index breaks every tie), so the two agree exactly (tests/test_mapper.py)."""
from __future__ import annotations

import numpy as np

from tilesim.core.kernels.jit import cached_njit, inlined_njit


@inlined_njit
def _before(a, b, first, second, third):
    """Whether candidate a ranks before b by (first, second, third, index)."""
    if first[a] != first[b]:
        return first[a] < first[b]
    if second[a] != second[b]:
        return second[a] < second[b]
    if third[a] != third[b]:
        return third[a] < third[b]
    return a < b


@cached_njit
def _ranked(picks, first, second, third):
    """`picks` (candidate indices c) sorted by (first[c], second[c], third[c], c): a bottom-up merge sort (the index
    breaks every tie, so any correct sort gives this order)."""
    n = picks.shape[0]
    out, spare = picks.copy(), np.empty_like(picks)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                if i < mid and (j >= hi or _before(out[i], out[j], first, second, third)):
                    spare[k] = out[i]
                    i += 1
                else:
                    spare[k] = out[j]
                    j += 1
        out, spare = spare, out
        width *= 2
    return out


@inlined_njit
def _pickable_row(ok, vals, shortlist, band_factor, keep, band):
    """mapper._pickable of one row walked by increasing need (`ok`: eligible; `vals`: objectives, infinite where
    not eligible): `keep` the candidates in its first `shortlist` layers, `band` those within the band of the least
    objective needing no more. In one pass: a candidate's layer is one more than the deepest layer holding an
    earlier candidate of a strictly smaller objective, and the least objective of each layer so far grows with the
    layer (a layer's every candidate has a smaller one in the layer before), so it is one more than the number of
    layers whose least is below its objective."""
    least = np.full(shortlist, np.inf)
    overall = np.inf
    for j in range(vals.shape[0]):
        v = vals[j]
        layer = 0
        while layer < shortlist and least[layer] < v:
            layer += 1
        if layer < shortlist:
            least[layer] = min(least[layer], v)
        keep[j] = layer < shortlist and ok[j]
        overall = min(overall, v)
        band[j] = v <= overall * band_factor and ok[j]


@cached_njit
def rank_rows(eligible, walk, obj, dram, n_tiles, prune, shortlist, band_factor):
    """(by objective, by DRAM bytes): per row of `obj` and `dram` (rows, candidates), the candidates a search can
    pick ranked, padded with the candidate count. With `prune` (one level holds every operand; `walk`: per row the
    candidates by increasing need of it), those mapper._pickable keeps (for each ranking its own); else each row's
    eligible candidates, both rankings over them."""
    rows, n = obj.shape
    by_obj = np.full((rows, n), n, dtype=np.int64)
    by_dram = np.full((rows, n), n, dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    vals = np.empty(n, dtype=np.float64)
    keep = np.empty(n, dtype=np.bool_)
    band = np.empty(n, dtype=np.bool_)
    long_obj = long_dram = 0
    for r in range(rows):
        for j in range(n):
            c = walk[r, j]
            ok[j] = eligible[r, c]
            vals[j] = obj[r, c] if ok[j] else np.inf
        if prune:
            _pickable_row(ok, vals, shortlist, band_factor, keep, band)
        else:
            keep[:] = ok
            band[:] = ok
        first, banded = walk[r][keep], walk[r][band]
        row_obj, row_dram = obj[r], dram[r]
        a = _ranked(first, row_obj, row_dram, n_tiles)
        b = _ranked(banded, row_dram, n_tiles, row_obj)
        by_obj[r, :a.shape[0]] = a
        by_dram[r, :b.shape[0]] = b
        long_obj, long_dram = max(long_obj, a.shape[0]), max(long_dram, b.shape[0])
    return by_obj[:, :long_obj].copy(), by_dram[:, :long_dram].copy()


@cached_njit
def first_fitting(by_obj, by_dram, need_by_obj, need_by_dram, obj_by_obj, obj_by_dram, cap, shortlist, band_factor):
    """What compiler/mapper.py _ranked_picks takes from the rankings of one level holding every operand, at that
    level's capacity `cap`: (rows, candidates) of each row's first `shortlist` candidates that fit in its objective
    ranking, then of each row's first `shortlist` that fit and come within `band_factor` of the row's best in its
    DRAM ranking (the row's best: its first fitting candidate's objective, or its first ranked one's where none
    fits, as numpy's argmax gives); each row's pass stops at its `shortlist`-th find. Empty where none fits row 0."""
    rows = by_obj.shape[0]
    out_rows = np.empty(2 * rows * shortlist, dtype=np.int64)
    out_picks = np.empty(2 * rows * shortlist, dtype=np.int64)
    best = np.empty(rows, dtype=np.float64)
    n = 0
    for o in range(rows):
        found = 0
        best[o] = obj_by_obj[o, 0]
        for c in range(by_obj.shape[1]):
            if need_by_obj[o, c] <= cap:
                if found == 0:
                    best[o] = obj_by_obj[o, c]
                out_rows[n], out_picks[n] = o, by_obj[o, c]
                n += 1
                found += 1
                if found == shortlist:
                    break
        if o == 0 and found == 0:
            return out_rows[:0], out_picks[:0]
    for o in range(rows):
        found = 0
        limit = best[o] * band_factor
        for c in range(by_dram.shape[1]):
            if need_by_dram[o, c] <= cap and obj_by_dram[o, c] <= limit:
                out_rows[n], out_picks[n] = o, by_dram[o, c]
                n += 1
                found += 1
                if found == shortlist:
                    break
    return out_rows[:n], out_picks[:n]
