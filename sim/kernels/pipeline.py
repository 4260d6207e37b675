"""Tile pipeline: one DMA channel to off-chip memory, compute engines (array, vector), buffer slots, dependencies.

Each tile i loads `load_xfer[i]` cycles of data, computes `compute[i]` cycles on engine `engine[i]`, and stores
`store_xfer[i]` cycles of data. Rules (the reference below states them one by one):
  1. The DMA channel moves one transfer at a time; a transfer occupies it for its xfer cycles and its data is
     there `latency` cycles after it finishes streaming (latency overlaps later transfers). Zero-byte transfers
     take no time and do not use the channel.
  2. Tile i's load may start once its buffer slot is free: compute of tile i - slots[i] has ended, and once the
     store of tile dep[i] (its producer's last tile) has ended.
  3. Tile i's compute starts when its load has arrived, its engine is free, the compute of tile i - 1 has
     started (in-order issue) and the store of tile i - slots[i] has ended (its output slot is free).
  4. Tile i's store may start when its compute has ended. Stores leave in tile order, loads in tile order.
  5. When both a load and a store could go next, the one that became ready first goes; a tie goes to the load.
  6. A tile's stall is how long its start lies past the later of its engine freeing and the previous tile's compute
     ending; its cause is the constraint that set the start: its load (DRAM, or DEPENDENCY when that load waited
     for a producer's store), the in-order issue (ORDER) or its output slot (SLOT).
Times are float64 cycles; callers round the end time up.
"""
from __future__ import annotations

import numpy as np
from numba import njit

NONE, DRAM, SLOT, DEPENDENCY, ORDER = 0, 1, 2, 3, 4
CAUSES = ("none", "dram", "slot", "dependency", "order")


@njit(cache=True)
def _transfer(ready, xfer, dma_free, latency):
    """Rule 1: (arrival time, channel free time) of a transfer ready at `ready` taking `xfer` channel cycles."""
    if xfer == 0.0:
        return ready, dma_free
    start = ready if ready > dma_free else dma_free
    return start + xfer + latency, start + xfer


@njit(cache=True)
def run_tiles(load_xfer, store_xfer, compute, engine, slots, dep, latency):
    """Simulate the tile pipeline; returns (load_end, compute_start, compute_end, store_end, stall, cause) arrays."""
    n = load_xfer.shape[0]
    load_end = np.zeros(n)
    comp_start = np.zeros(n)
    comp_end = np.zeros(n)
    store_end = np.zeros(n)
    stall = np.zeros(n)
    cause = np.zeros(n, dtype=np.int64)
    load_dep = np.zeros(n, dtype=np.bool_)
    engine_free = np.zeros(8)
    dma_free = 0.0
    nl = 0
    nc = 0
    ns = 0
    while ns < n:
        # Rule 3: issue every compute whose load has arrived and whose output slot is free.
        while nc < n and nc < nl and nc - slots[nc] < ns:
            e = engine[nc]
            t = engine_free[e]
            why = NONE
            if load_end[nc] > t:
                t = load_end[nc]
                why = DEPENDENCY if load_dep[nc] else DRAM
            if nc > 0 and comp_start[nc - 1] > t:
                t = comp_start[nc - 1]
                why = ORDER
            j = nc - slots[nc]
            if j >= 0 and store_end[j] > t:
                t = store_end[j]
                why = SLOT
            base = engine_free[e]
            if nc > 0 and comp_end[nc - 1] > base:
                base = comp_end[nc - 1]
            if t > base:
                stall[nc] = t - base
                cause[nc] = why
            comp_start[nc] = t
            comp_end[nc] = t + compute[nc]
            engine_free[e] = comp_end[nc]
            nc += 1
        # Rule 2: is the next load's readiness known, and when is it ready?
        load_ok = False
        ready_l = 0.0
        if nl < n:
            j = nl - slots[nl]
            d = dep[nl]
            if (j < 0 or j < nc) and (d < 0 or d < ns):
                load_ok = True
                if j >= 0:
                    ready_l = comp_end[j]
                if d >= 0 and store_end[d] > ready_l:
                    ready_l = store_end[d]
                    load_dep[nl] = True
        store_ok = ns < nc
        ready_s = comp_end[ns] if store_ok else 0.0
        if not load_ok and not store_ok:
            raise RuntimeError("tile pipeline deadlock")
        # Rule 5: the earlier-ready transfer goes first; ties go to the load.
        if load_ok and (not store_ok or ready_l <= ready_s):
            load_end[nl], dma_free = _transfer(ready_l, load_xfer[nl], dma_free, latency)
            nl += 1
        else:
            store_end[ns], dma_free = _transfer(ready_s, store_xfer[ns], dma_free, latency)
            ns += 1
    return load_end, comp_start, comp_end, store_end, stall, cause


def run_tiles_py(load_xfer, store_xfer, compute, engine, slots, dep, latency):
    """Slow reference of run_tiles: an explicit event loop over named queues, one rule at a time."""
    n = len(load_xfer)
    loads, computes, stores = {}, {}, {}            # tile -> end time (computes: (start, end))
    waited_for_producer, stalls = set(), {}         # loads held back by a producer; tile -> (stall, cause)
    engine_free = {}
    channel_free = 0.0

    def transfer(ready, xfer):
        nonlocal channel_free
        if xfer == 0.0:
            return ready                              # rule 1: nothing to move
        start = max(ready, channel_free)
        channel_free = start + xfer
        return channel_free + latency

    def compute_ready(i):
        slot_tile = i - slots[i]
        return i in loads and (slot_tile < 0 or slot_tile in stores)

    def load_ready(i):
        slot_tile, producer = i - slots[i], dep[i]
        known = (slot_tile < 0 or slot_tile in computes) and (producer < 0 or producer in stores)
        if not known:
            return None
        slot_free = computes[slot_tile][1] if slot_tile >= 0 else 0.0
        if producer >= 0 and stores[producer] > slot_free:
            waited_for_producer.add(i)
            return stores[producer]
        return slot_free

    while len(stores) < n:
        while len(computes) < n and compute_ready(len(computes)):
            i = len(computes)
            free = engine_free.get(engine[i], 0.0)
            # constraints in the order rule 6 ranks them; the last one strictly above the rest sets the start
            held = [(loads[i], DEPENDENCY if i in waited_for_producer else DRAM)]
            if i > 0:
                held.append((computes[i - 1][0], ORDER))
            if i - slots[i] >= 0:
                held.append((stores[i - slots[i]], SLOT))
            start, why = free, NONE
            for t, c in held:
                if t > start:
                    start, why = t, c
            base = max(free, computes[i - 1][1] if i > 0 else 0.0)
            stalls[i] = (start - base, why) if start > base else (0.0, NONE)
            computes[i] = (start, start + compute[i])
            engine_free[engine[i]] = start + compute[i]
        next_load, next_store = len(loads), len(stores)
        ready_l = load_ready(next_load) if next_load < n else None
        ready_s = computes[next_store][1] if next_store in computes else None
        if ready_l is None and ready_s is None:
            raise RuntimeError("tile pipeline deadlock")
        if ready_l is not None and (ready_s is None or ready_l <= ready_s):
            loads[next_load] = transfer(ready_l, load_xfer[next_load])
        else:
            stores[next_store] = transfer(ready_s, store_xfer[next_store])
    order = range(n)
    return (np.array([loads[i] for i in order]), np.array([computes[i][0] for i in order]),
            np.array([computes[i][1] for i in order]), np.array([stores[i] for i in order]),
            np.array([stalls[i][0] for i in order]), np.array([stalls[i][1] for i in order], dtype=np.int64))
