"""A contraction's tile commands as runs, from its loop nest's positions (sim/core/commands.py contraction_runs):
the compiled form of contraction_runs_reference, which states the same rules with numpy and which the tests
compare with it exactly. It takes what depends on the tile sizes alone (each operand's burst-rounded bytes per
pair of loop positions) and does the rest: which operands reload between consecutive positions, the positions in
execution order as runs, the kernel's compute cycles (and a fused epilogue's cycles and bytes) split over the
tiles in proportion to their MACs (outputs drained), and identical consecutive runs merged."""
from __future__ import annotations

import numpy as np

from tilesim.core.kernels.jit import cached_njit

HELD_NONE, HELD_INPUT, HELD_WEIGHT, HELD_OUTPUT = 0, 1, 2, 3   # Mapping.held
# rows of the per-run field table, in the order TileCommands takes them, then the weights and the output runs
A, B, PSUM, STORE, COMPUTE, FLASH, B_RAW, MACS, DRAINED, C_RUNS = range(10)
FIELDS = 10
# tables per pair of loop positions that contraction_tile_runs takes (3 x 3 each, the unused part zero)
A_MK, B_KN, B_RAW_KN, ACC_MN, STORE_MN, C_ELEMS_MN, C_RUNS_MN = range(7)
TABLES = 7
# the scalars contraction_tile_runs takes: each loop's trips (4: g, then the mapping's order) and those loops' dims
# (3: 0 m, 1 n, 2 k) from TRIPS and DIMS on, then one each
TRIPS, DIMS, TRIPS_K, HOLD, FLASH_ALL, FLASH_BURST, COMPUTE_TOTAL, EPILOGUE, DRAINED_TOTAL, EXTRA_TOTAL, BURST = (
    0, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15)
SCALARS = 16
INT64_MAX = np.iinfo(np.int64).max


@cached_njit
def _burst(size, runs, burst):
    """compiler.cost.burst_bytes of one transfer: `size` bytes in `runs` equal contiguous runs of `burst` bytes."""
    if burst <= 1 or size <= 0:
        return size
    r = max(runs, 1)
    return r * (-(-size // (r * burst))) * burst


@cached_njit
def split_table(table, count, total, weight_row, out_row):
    """sim/core/commands.py split_runs on the field table: row `out_row` gets integers proportional to row
    `weight_row` (per tile; count[i] tiles a run) adding up to `total`; the run holding the cut, if any, is split
    in two. Returns (table, count, ok); ok is False where total x weight could pass 2**63 (the caller then takes
    the reference, which works it out in Python integers)."""
    n = count.shape[0]
    whole = 0
    top = 0
    for i in range(n):
        w = table[weight_row, i]
        whole += w * count[i]
        top = max(top, w)
    if whole == 0:
        for i in range(n):
            table[out_row, i] = 0
        return table, count, True
    if top > 0 and total > INT64_MAX // top:
        return table, count, False
    given = 0
    for i in range(n):
        table[out_row, i] = total * table[weight_row, i] // whole
        given += table[out_row, i] * count[i]
    rem = total - given
    if rem == 0:
        return table, count, True
    cum = 0
    j = 0
    inside = 0
    for i in range(n):               # the run holding the last tile (of positive weight) that gets one more
        if table[weight_row, i] > 0:
            if cum + count[i] >= rem:
                j = i
                inside = rem - cum
                break
            cum += count[i]
    for i in range(j):
        if table[weight_row, i] > 0:
            table[out_row, i] += 1
    if inside == count[j]:
        table[out_row, j] += 1
        return table, count, True
    cut = np.empty((table.shape[0], n + 1), dtype=np.int64)
    cut[:, :j + 1] = table[:, :j + 1]
    cut[:, j + 1:] = table[:, j:]
    cut[out_row, j] += 1
    counts = np.empty(n + 1, dtype=np.int64)
    counts[:j] = count[:j]
    counts[j] = inside
    counts[j + 1] = count[j] - inside
    counts[j + 2:] = count[j + 1:]
    return cut, counts, True


@cached_njit
def position_runs(trips):
    """sim/core/commands.py nest_runs of loops with these trips (outermost first), each at its loop_positions
    (the first, a middle standing for trip - 2 and the last iteration; all of a loop of 1 or 2): (positions in C
    order over the loops' positions, tiles in each run), in execution order."""
    levels = trips.shape[0]
    shape = np.minimum(trips, 3)
    ids = np.arange(shape[levels - 1])
    count = np.ones(shape[levels - 1], dtype=np.int64)
    if trips[levels - 1] > 2:
        count[1] = trips[levels - 1] - 2
    stride = shape[levels - 1]
    for level in range(levels - 2, -1, -1):
        reps = np.ones(shape[level], dtype=np.int64)
        if trips[level] > 2:
            reps[1] = trips[level] - 2
        inner = ids.shape[0]
        size = shape[level] if inner == 1 else int(reps.sum()) * inner
        new_ids = np.empty(size, dtype=np.int64)
        new_count = np.empty(size, dtype=np.int64)
        j = 0
        for p in range(shape[level]):
            if inner == 1:             # one run: as many times longer
                new_ids[j] = p * stride + ids[0]
                new_count[j] = count[0] * reps[p]
                j += 1
                continue
            for _ in range(reps[p]):     # else the inner sequence again, reps[p] times
                for i in range(inner):
                    new_ids[j] = p * stride + ids[i]
                    new_count[j] = count[i]
                    j += 1
        ids, count, stride = new_ids, new_count, stride * shape[level]
    return ids, count


@cached_njit
def position_fields(scalars, dims, tables):
    """(FIELDS, positions): each loop nest position's fields before the splits (contraction_tile_runs' arguments):
    bytes each operand loads (when it changes from the position before), stores, MACs, outputs drained, runs."""
    shape, loop_dim = np.minimum(scalars[TRIPS:TRIPS + 4], 3), scalars[DIMS:DIMS + 3]
    trips_k, held = scalars[TRIPS_K], scalars[HOLD]
    idx_m, idx_n, idx_k, ext_m, ext_n, ext_k = dims[0, 0], dims[0, 1], dims[0, 2], dims[1, 0], dims[1, 1], dims[1, 2]
    a_mk, b_kn, b_raw_kn, acc_mn = tables[A_MK], tables[B_KN], tables[B_RAW_KN], tables[ACC_MN]
    store_mn, c_elems_mn, c_runs_mn = tables[STORE_MN], tables[C_ELEMS_MN], tables[C_RUNS_MN]
    n_pos = shape[0] * shape[1] * shape[2] * shape[3]
    pos = np.zeros((n_pos, 4), dtype=np.int64)         # per position (C order over shape): g, m, n and k positions
    for p in range(n_pos):
        rest = p
        for level in range(3, -1, -1):
            at = rest % shape[level]
            rest //= shape[level]
            pos[p, 0 if level == 0 else 1 + loop_dim[level - 1]] = at
    changed = np.ones((n_pos + 1, 3), dtype=np.bool_)   # per position: A, B, the output tile differ from the last
    for p in range(1, n_pos):
        g, m, n, k = pos[p, 0] != pos[p - 1, 0], pos[p, 1] != pos[p - 1, 1], pos[p, 2] != pos[p - 1, 2], \
            pos[p, 3] != pos[p - 1, 3]
        changed[p, 0], changed[p, 1], changed[p, 2] = g or m or k, g or k or n, g or m or n
    middle = loop_dim[1]
    per = np.zeros((FIELDS, n_pos), dtype=np.int64)
    for p in range(n_pos):
        m, n, k = pos[p, 1], pos[p, 2], pos[p, 3]
        a_new, b_new, c_visit, c_last = changed[p, 0], changed[p, 1], changed[p, 2], changed[p + 1, 2]
        reload = c_visit and idx_k[k] > 0                 # the visit resumes a partial sum
        final = c_last and idx_k[k] == trips_k - 1
        first_pass = (idx_m[m] if middle == 0 else idx_n[n] if middle == 1 else idx_k[k]) == 0
        if held == HELD_INPUT:
            a_new = a_new and first_pass
        elif held == HELD_WEIGHT:
            b_new = b_new and first_pass
        elif held == HELD_OUTPUT:                         # partial sums accumulate on chip
            reload = False
            c_last = final
        per[A, p] = a_mk[m, k] if a_new else 0
        per[B, p] = b_kn[k, n] if b_new else 0
        per[B_RAW, p] = b_raw_kn[k, n] if b_new else 0
        per[PSUM, p] = acc_mn[m, n] if reload else 0
        per[STORE, p] = store_mn[m, n] if final else (acc_mn[m, n] if c_last else 0)
        per[MACS, p] = ext_m[m] * ext_n[n] * ext_k[k]
        per[DRAINED, p] = c_elems_mn[m, n] if final else 0
        per[C_RUNS, p] = c_runs_mn[m, n]
    return per


@cached_njit
def contraction_tile_runs(scalars, dims, tables):
    """(table, count, ok): the runs' fields (rows A .. FLASH as TileCommands takes them), merged as as_runs
    merges them; ok False where the reference must be taken (see split_table).

    scalars (at TRIPS .. BURST): trips per loop (g first, then the mapping's order), those loops' dims, K's trips,
    HELD_* (at HOLD), whether every weight byte comes from flash first (else none) and the flash burst, the
    kernel's compute cycles, whether a fused epilogue's drained cycles and extra bytes (the next two) are split
    over the drained outputs, the off-chip burst; dims[0 | 1, d, p]: position p's iteration | tile extent along m, n, k;
    tables[A_MK .. C_RUNS_MN, p, q]: per pair of positions, burst-rounded bytes (zero where an on-chip copy serves
    the operand: A, B, the final store), the unrounded weight bytes, partial sums' bytes (a spill or its reload),
    output elements and runs."""
    per = position_fields(scalars, dims, tables)
    ids, counts = position_runs(scalars[TRIPS:TRIPS + 4])
    table = np.empty((FIELDS, ids.shape[0]), dtype=np.int64)
    for i in range(ids.shape[0]):
        table[:, i] = per[:, ids[i]]
        table[FLASH, i] = _burst(table[B_RAW, i], 1, scalars[FLASH_BURST]) if scalars[FLASH_ALL] != 0 else 0
    table, counts, ok = split_table(table, counts, scalars[COMPUTE_TOTAL], MACS, COMPUTE)
    if not ok:
        return table, counts, False
    if scalars[EPILOGUE] != 0:
        table, counts, ok = split_table(table, counts, scalars[DRAINED_TOTAL], DRAINED, B_RAW)   # B_RAW: unused now
        if not ok:
            return table, counts, False
        for i in range(table.shape[1]):
            table[COMPUTE, i] = max(table[COMPUTE, i], table[B_RAW, i])
        table, counts, ok = split_table(table, counts, scalars[EXTRA_TOTAL], DRAINED, B_RAW)
        if not ok:
            return table, counts, False
        for i in range(table.shape[1]):
            table[A, i] += _burst(table[B_RAW, i], table[C_RUNS, i], scalars[BURST])
    table, counts = as_runs(table, counts)
    return table, counts, True


@cached_njit
def as_runs(table, count):
    """sim/core/commands.py as_runs on the field table: (fields A .. FLASH, counts) with consecutive identical
    entries merged, the first two entries runs of their own and a leading run of several tiles split into its
    first tile and the rest."""
    n = count.shape[0]
    start = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        start[i] = i < 2
        for f in range(FLASH + 1):
            if not start[i] and table[f, i] != table[f, i - 1]:
                start[i] = True
    lead = 1 if n and count[0] > 1 else 0
    size = int(start.sum()) + lead
    out = np.empty((FLASH + 1, size), dtype=np.int64)
    counts = np.zeros(size, dtype=np.int64)
    j = lead - 1
    for i in range(n):
        if start[i]:
            j += 1
            out[:, j] = table[:FLASH + 1, i]
        counts[j] += count[i]
    if lead:
        out[:, 0] = out[:, 1]
        counts[0], counts[1] = 1, count[0] - 1
    return out, counts
