"""The mapping search's closed-form estimate of candidate tilings (compiler/mapper.py _score_orders and _estimate),
compiled: every candidate's (cycles, DRAM bytes, DRAM pJ) for the six loop orders, then the six with their middle
loop's operand held, row by row in one pass over the candidates (a row's loop order and hold are the same for
every candidate, so its branches mostly go one way: ~15% faster than every row of one candidate in turn) instead
of ~150 numpy passes over (6, candidates) arrays. The numpy form states the same rules and stays the reference:
each operation here is the one numpy does, on the same types in the same order (IEEE doubles, no fused
multiply-add), so the two agree bit for bit (tests/test_mapper.py).
Loops are 0 m, 1 n, 2 k; operands 0 input, 1 weight, 2 output; `indexed` has bit loop + 3 x operand set where the
operand is indexed by the loop. The helpers take scalars and are compiled into the kernel (inlined_njit)."""
from __future__ import annotations

import numpy as np

from tilesim.core.kernels.jit import cached_njit, inlined_njit

INPUT, WEIGHT, OUTPUT = 0, 1, 2


@inlined_njit
def _indexes(indexed, op, loop):
    """Whether operand `op` is indexed by `loop`."""
    return (indexed >> (loop + 3 * op)) & 1 == 1


@inlined_njit
def _reuse(pos, indexed, op):
    """A row's constants of operand `op`'s reloads (positions `pos` of loops m n k): the loop x it does not index, and
    the bits of the loops it indexes that sit inside x."""
    x = 0 if not _indexes(indexed, op, 0) else 1 if not _indexes(indexed, op, 1) else 2
    inside = 0
    for d in range(3):
        if _indexes(indexed, op, d) and pos[d] > pos[x]:
            inside |= 1 << d
    return x, inside


@inlined_njit
def _reps(t, stepping, x, inside, middle, held):
    """How often an operand (_reuse's x and inside) is loaded, trips `t` of loops m n k and `stepping` the bits of
    the loops of more than one trip: the trips of x when a loop it indexes with more than one trip sits inside x,
    unless a held row holds it there (x is the middle loop), else once."""
    return t[x] if inside & stepping and not (held and middle == x) else 1


@inlined_njit
def _dma_floor(tiles, dma, lat):
    """mapper._dma_floor of one candidate and row: max((tiles x latency + DMA) / 2, DMA + latency)."""
    return max((tiles * lat + dma) / 2, dma + lat)


@inlined_njit
def _level_time(level_feed, read, write, level_bw):
    """mapper._level_time of one candidate and row."""
    return (level_feed + read + write) / level_bw


@inlined_njit
def _paced(compute, moved, transfer, lat):
    """mapper._paced of one transition."""
    if moved > 0:
        return max(transfer, (transfer + lat + compute) / 2)
    return 0.0


@inlined_njit
def _transition(compute, paced, moved, transfer, lat):
    """mapper._transition of one transition."""
    if compute < 1:
        return compute * max(1.0, _paced(1.0, moved, transfer, lat)) + (1 - compute) * _paced(0.0, moved, transfer,
                                                                                                 lat)
    return max(compute, paced)


@inlined_njit
def _changed_at(loop, n_p, p, middle, t_middle, held, indexed, steps):
    """What changes when the loop at position p (1..3: `loop`, of `n_p` trips) steps, as mapper._score_orders'
    positions: per operand its share of those steps on which it is loaded, and `steps` (bit per operand: a loop
    inside steps and indexes it) with this loop added."""
    c_in = 1.0 if _indexes(indexed, INPUT, loop) or (steps >> INPUT) & 1 else 0.0
    c_w = 1.0 if _indexes(indexed, WEIGHT, loop) or (steps >> WEIGHT) & 1 else 0.0
    c_out = 1.0 if _indexes(indexed, OUTPUT, loop) or (steps >> OUTPUT) & 1 else 0.0
    if n_p > 1:
        for op in range(3):
            if _indexes(indexed, op, loop):
                steps |= 1 << op
    if held and p >= 2:         # a held A or B loads in the middle loop's first pass only
        if not _indexes(indexed, INPUT, middle):
            c_in = c_in / t_middle if p == 3 else c_in * 0.0
        if not _indexes(indexed, WEIGHT, middle):
            c_w = c_w / t_middle if p == 3 else c_w * 0.0
    return c_in, c_w, c_out, steps


@inlined_njit
def _double_buffered(t0, t1, t2, l0, l1, l2, tiles, held, indexed, g, lat, bw, per_tile, read, write, spills,
                     visit_spills, a_sweep, b_sweep, c_acc, first, last, extra, drain, ratio):
    """mapper._estimate's double-buffered cycles of one candidate (trips t0 t1 t2 of m n k) and row (loops l0 l1
    l2, outermost first; `ratio`: the innermost loop's last tile's extent / its tile)."""
    trips = (t0, t1, t2)
    visits = g * t0 * t1 * (visit_spills + 1)
    avg_in = a_sweep / (t0 * t2)
    avg_w = b_sweep / (t2 * t1)
    c_moved = (g * spills * c_acc + write) / visits
    drains = g * t0 * t1
    plain = per_tile - extra * drains / tiles
    final = 1 / (visit_spills + 1)
    n_in = trips[l2]
    c_in, c_w, c_out, _ = _changed_at(l2, n_in, 3, l1, trips[l1], held, indexed, 0)
    short = n_in > 1 and ratio < 1
    scale = n_in / (n_in - 1 + ratio if short else float(n_in))
    whole = plain * scale
    window = lat + (c_in * avg_in + c_w * avg_w + c_out * c_moved) * scale / bw
    bound = short and whole >= window
    rem = whole * ratio
    if bound:
        plain = whole
        extra = max(drain - whole, 0.0)
    slowest = max(max(rem, drain), window)
    short_cost = final * slowest + (1 - final) * max(rem, window)
    short_cost = short_cost - (plain + final * extra)
    last_wait = slowest - max(rem, drain)
    steady = plain + extra
    hidden = 0.0
    found = False
    stored = write / visits / bw
    inner = 1.0
    steps = 0
    loops = (l0, l1, l2)
    for p in range(3, -1, -1):
        if p:
            n_p = trips[loops[p - 1]]
            c_in, c_w, c_out, steps = _changed_at(loops[p - 1], n_p, p, l1, trips[l1], held, indexed, steps)
            transitions = tiles / inner * (1 - 1 / n_p)
        else:
            n_p = g
            c_in, c_w, c_out = 1.0, 1.0, 1.0
            transitions = (g - 1) * tiles / (inner * g)
        moved = c_in * avg_in + c_w * avg_w + c_out * c_moved
        transfer = moved / bw
        paced_now = _paced(plain, moved, transfer, lat)
        f = c_out * final
        cost = _transition(plain, paced_now, moved, transfer, lat)
        if extra > 0:
            drained = plain + extra
            cost = (1 - f) * cost + f * _transition(drained, _paced(drained, moved, transfer, lat), moved, transfer,
                                                    lat)
        steady = steady + transitions * cost
        if not found and n_p > 1:
            hidden = min(min(plain, c_out * stored), max(paced_now - plain, 0.0))
            found = True
        inner = inner * n_p
    steady = steady - hidden + (tiles / n_in * short_cost - last_wait if bound else 0.0)
    dma = (read + write) / bw
    return max(steady + first + last + 2 * lat, _dma_floor(tiles, dma, lat))


@cached_njit
def estimate_rows(trips, n_tiles, a_sweep, b_sweep, c_fin, c_acc, compute, first, last, drain_extra, drain_share,
                  last_ratio, orders, indexed, g, lat, bw, level_feed, level_bw, double, pj_read, pj_write, priced,
                  walk, eligible, objective, shortlist, band):
    """(cycles, DRAM bytes, DRAM pJ), each (rows, candidates), of candidates given their _Base arrays (trips and
    last_ratio as (3, candidates); compute as float64; drain_extra and drain_share per candidate), `orders` (6, 3):
    each order's loops outermost first, `indexed` (see above), the arch's off-chip latency (int) and bandwidth, the
    one on-chip level's feed bytes and bandwidth (0: none), whether every operand is double buffered, and the DRAM
    pJ per byte read and written (`priced`; else 1 pJ a byte).

    With a `walk` (rows, candidates: each row's candidates by increasing need of the one level holding every
    operand, mapper._Ranking.walk; empty: none), a double-buffered row's cycles are worked out only for candidates
    a search could pick, the others left infinite: walking the row, a candidate `eligible` there whose objective
    (`objective` 0 latency, 1 energy, 2 EDP) is bound to exceed both the `shortlist`-th least objective and the
    least objective times `band` (1 + TIE_BAND) of the candidates before it (which fit wherever it fits) is never
    picked (mapper._pickable). The bound is the DMA floor of the cycles (_dma_floor) and the level's time
    (_level_time), the helpers the cycles end with, so the cycles are never below it."""
    n = n_tiles.shape[0]
    n_orders = orders.shape[0]
    rows = 2 * n_orders                                # each order, then each with its middle loop's operand held
    cycles_out = np.empty((rows, n), dtype=np.float64)
    dram_out = np.empty((rows, n), dtype=np.int64)
    pj_out = np.empty((rows, n), dtype=np.float64)
    pruned = walk.shape[0] > 0 and double
    least = np.empty(shortlist, dtype=np.float64)     # the least objectives worked out so far in the row, ascending
    for row in range(rows):
        o, held = row % n_orders, row >= n_orders
        l0, l1, l2 = orders[o, 0], orders[o, 1], orders[o, 2]
        pos = (0 if l0 == 0 else 1 if l1 == 0 else 2, 0 if l0 == 1 else 1 if l1 == 1 else 2,
               0 if l0 == 2 else 1 if l1 == 2 else 2)
        x_in, in_in = _reuse(pos, indexed, INPUT)
        x_w, in_w = _reuse(pos, indexed, WEIGHT)
        x_out, in_out = _reuse(pos, indexed, OUTPUT)
        least[:] = np.inf
        for j in range(n):
            i = walk[row, j] if pruned else j
            t = (trips[0, i], trips[1, i], trips[2, i])
            stepping = (1 if t[0] > 1 else 0) | (2 if t[1] > 1 else 0) | (4 if t[2] > 1 else 0)
            visit_spills = _reps(t, stepping, x_out, in_out, l1, False) - 1
            spills = _reps(t, stepping, x_out, in_out, l1, held) - 1
            reps_in = _reps(t, stepping, x_in, in_in, l1, held)
            reps_w = _reps(t, stepping, x_w, in_w, l1, held)
            read = g * (reps_in * a_sweep[i] + reps_w * b_sweep[i] + spills * c_acc[i])
            write = g * (c_fin[i] + spills * c_acc[i])
            dram_out[row, i] = np.int64(read + write)
            pj = read * pj_read + write * pj_write if priced else (read + write) * 1.0
            pj_out[row, i] = pj
            if pruned:
                if not eligible[row, i]:
                    cycles_out[row, i] = np.inf
                    continue
                dma = (read + write) / bw
                floor = _dma_floor(n_tiles[i], dma, lat)
                if level_bw:
                    floor = max(floor, _level_time(level_feed, read, write, level_bw))
                bound = floor if objective == 0 else pj if objective == 1 else floor * pj
                if bound > least[shortlist - 1] and bound > least[0] * band:
                    cycles_out[row, i] = np.inf
                    continue
            comp = compute[i]
            if level_bw:
                need = np.ceil(_level_time(level_feed, read, write, level_bw))
                target = need - first[i] - last[i]
                if need > (read + write) / bw and target > comp:
                    comp = target
            if double:
                cycles = _double_buffered(t[0], t[1], t[2], l0, l1, l2, n_tiles[i], held, indexed, g, lat, bw,
                                          comp / n_tiles[i], read, write, spills, visit_spills, a_sweep[i],
                                          b_sweep[i], c_acc[i], first[i], last[i], drain_extra[i], drain_share[i],
                                          last_ratio[l2, i])
            else:
                cycles = comp + (read + write) / bw + n_tiles[i] * lat
            if level_bw:
                cycles = max(cycles, _level_time(level_feed, read, write, level_bw))
            cycles_out[row, i] = cycles
            if pruned:                                 # keep the least objectives (insertion into a short list)
                value = cycles if objective == 0 else pj if objective == 1 else cycles * pj
                k = shortlist - 1
                if value < least[k]:
                    while k > 0 and least[k - 1] > value:
                        least[k] = least[k - 1]
                        k -= 1
                    least[k] = value
    return cycles_out, dram_out, pj_out
