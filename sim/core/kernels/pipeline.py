"""Tile pipeline: a DMA channel to off-chip memory, a flash channel, compute engines (array, vector), buffer slots,
dependencies.

Each tile i loads `load_xfer[i]` cycles of data, computes `compute[i]` cycles on engine `engine[i]`, and stores
`store_xfer[i]` cycles of data; weights that live in flash first stream `flash_xfer[i]` cycles over the flash channel
into a staging buffer in DRAM. Rules (the reference below states them one by one):
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
     ending; its cause is the constraint that set the start: its load (DRAM; DEPENDENCY when that load waited
     for a producer's store; FLASH when it waited for its flash read), the in-order issue (ORDER) or its output slot
     (SLOT).
  7. The flash channel moves tile i's flash read (a transfer as in rule 1, with `flash_latency`) in tile order, once
     its staging space is free: the DRAM load of tile flash_gate[i] has arrived (-1: at once). Tile i's DRAM load
     may not start before its flash data has arrived. A zero-byte flash read arrives at time 0.
Times are float64 cycles; callers round the end time up.
"""
from __future__ import annotations

import numpy as np

from tilesim.core.kernels.jit import cached_njit

NONE, DRAM, SLOT, DEPENDENCY, ORDER, FLASH = 0, 1, 2, 3, 4, 5
CAUSES = ("none", "dram", "slot", "dependency", "order", "flash")


@cached_njit
def _transfer(ready, xfer, dma_free, latency):
    """Rule 1: (arrival time, channel free time) of a transfer ready at `ready` taking `xfer` channel cycles."""
    if xfer == 0.0:
        return ready, dma_free
    start = ready if ready > dma_free else dma_free
    return start + xfer + latency, start + xfer


@cached_njit
def run_tiles(load_xfer, store_xfer, compute, engine, slots, dep, latency, flash_xfer, flash_gate, flash_latency):
    """Simulate the tile pipeline; returns (load_end, compute_start, compute_end, store_end, stall, cause, flash_end)
    arrays."""
    n = load_xfer.shape[0]
    load_end = np.zeros(n)
    comp_start = np.zeros(n)
    comp_end = np.zeros(n)
    store_end = np.zeros(n)
    flash_end = np.zeros(n)
    stall = np.zeros(n)
    cause = np.zeros(n, dtype=np.int64)
    load_why = np.full(n, DRAM, dtype=np.int64)
    engine_free = np.zeros(8)
    dma_free = 0.0
    flash_free = 0.0
    nl = 0
    nc = 0
    ns = 0
    nf = 0
    while ns < n:
        # Rule 3: issue every compute whose load has arrived and whose output slot is free.
        while nc < n and nc < nl and nc - slots[nc] < ns:
            e = engine[nc]
            t = engine_free[e]
            why = NONE
            if load_end[nc] > t:
                t = load_end[nc]
                why = load_why[nc]
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
        # Rule 7: flash reads whose staging space is known to be free, in tile order.
        while nf < n and flash_gate[nf] < nl:
            if flash_xfer[nf] > 0.0:
                g = flash_gate[nf]
                flash_end[nf], flash_free = _transfer(load_end[g] if g >= 0 else 0.0, flash_xfer[nf], flash_free,
                                                      flash_latency)
            nf += 1
        # Rule 2: is the next load's readiness known, and when is it ready?
        load_ok = False
        ready_l = 0.0
        if nl < n:
            j = nl - slots[nl]
            d = dep[nl]
            if (j < 0 or j < nc) and (d < 0 or d < ns) and nl < nf:
                load_ok = True
                if j >= 0:
                    ready_l = comp_end[j]
                if d >= 0 and store_end[d] > ready_l:
                    ready_l = store_end[d]
                    load_why[nl] = DEPENDENCY
                if flash_end[nl] > ready_l:
                    ready_l = flash_end[nl]
                    load_why[nl] = FLASH
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
    return load_end, comp_start, comp_end, store_end, stall, cause, flash_end


def run_tiles_py(load_xfer, store_xfer, compute, engine, slots, dep, latency, flash_xfer, flash_gate, flash_latency):
    """Slow reference of run_tiles: an explicit event loop over named queues, one rule at a time."""
    n = len(load_xfer)
    loads, computes, stores, flashes = {}, {}, {}, {}   # tile -> end time (computes: (start, end))
    load_cause, stalls = {}, {}                     # what held each load back last; tile -> (stall, cause)
    engine_free = {}
    channel_free = {"dma": 0.0, "flash": 0.0}

    def transfer(ready, xfer, channel="dma", lat=latency):
        if xfer == 0.0:
            return ready                              # rule 1: nothing to move
        start = max(ready, channel_free[channel])
        channel_free[channel] = start + xfer
        return channel_free[channel] + lat

    def issue_flash_reads():
        # rule 7: in tile order, each once the DRAM load of its gate tile has arrived (its staging space is free)
        while len(flashes) < n and (flash_gate[len(flashes)] < 0 or flash_gate[len(flashes)] in loads):
            i = len(flashes)
            gate = flash_gate[i]
            flashes[i] = transfer(loads[gate] if gate >= 0 else 0.0, flash_xfer[i], "flash", flash_latency) \
                if flash_xfer[i] > 0.0 else 0.0

    def compute_ready(i):
        slot_tile = i - slots[i]
        return i in loads and (slot_tile < 0 or slot_tile in stores)

    def load_ready(i):
        slot_tile, producer = i - slots[i], dep[i]
        known = (slot_tile < 0 or slot_tile in computes) and (producer < 0 or producer in stores) and i in flashes
        if not known:
            return None
        # the constraints in rule 6's order; the last one strictly above the rest names the cause
        held = [(computes[slot_tile][1] if slot_tile >= 0 else 0.0, DRAM)]
        if producer >= 0:
            held.append((stores[producer], DEPENDENCY))
        held.append((flashes[i], FLASH))
        ready, load_cause[i] = held[0]
        for t, c in held[1:]:
            if t > ready:
                ready, load_cause[i] = t, c
        return ready

    while len(stores) < n:
        while len(computes) < n and compute_ready(len(computes)):
            i = len(computes)
            free = engine_free.get(engine[i], 0.0)
            # constraints in the order rule 6 ranks them; the last one strictly above the rest sets the start
            held = [(loads[i], load_cause[i])]
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
        issue_flash_reads()
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
            np.array([stalls[i][0] for i in order]), np.array([stalls[i][1] for i in order], dtype=np.int64),
            np.array([flashes[i] for i in order], dtype=np.float64))
