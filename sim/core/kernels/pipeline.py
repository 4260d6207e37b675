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

from tilesim.core.kernels.jit import cached_njit, leaf_njit

NONE, DRAM, SLOT, DEPENDENCY, ORDER, FLASH = 0, 1, 2, 3, 4, 5
CAUSES = ("none", "dram", "slot", "dependency", "order", "flash")
N_CAUSES = 6
ENGINES = 8                         # engine ids 0 .. ENGINES - 1 (array, vector)


@leaf_njit
def _transfer(ready, xfer, dma_free, latency):
    """Rule 1: (arrival time, channel free time) of a transfer ready at `ready` taking `xfer` channel cycles."""
    if xfer == 0.0:
        return ready, dma_free
    start = ready if ready > dma_free else dma_free
    return start + xfer + latency, start + xfer


@leaf_njit
def _issue_computes(nc, nl, ns, compute, engine, slots, load_end, load_why, store_end, engine_free, comp_start,
                    comp_end, stall, cause):
    """Rule 3 (and 6): issue every compute whose load has arrived and whose output slot is free; returns the new nc."""
    n = compute.shape[0]
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
    return nc


@leaf_njit
def _issue_flash_reads(nf, nl, flash_xfer, flash_gate, flash_latency, load_end, flash_end, flash_free):
    """Rule 7: flash reads whose staging space is known to be free, in tile order; returns (nf, flash_free)."""
    n = flash_xfer.shape[0]
    while nf < n and flash_gate[nf] < nl:
        if flash_xfer[nf] > 0.0:
            g = flash_gate[nf]
            flash_end[nf], flash_free = _transfer(load_end[g] if g >= 0 else 0.0, flash_xfer[nf], flash_free,
                                                  flash_latency)
        nf += 1
    return nf, flash_free


@leaf_njit
def _next_load_ready(nl, nc, ns, nf, slots, dep, comp_end, store_end, flash_end, load_why):
    """Rule 2: (is the next load's readiness known, when is it ready); records what held it back in load_why."""
    n = slots.shape[0]
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
    return load_ok, ready_l


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
        nc = _issue_computes(nc, nl, ns, compute, engine, slots, load_end, load_why, store_end, engine_free,
                             comp_start, comp_end, stall, cause)
        nf, flash_free = _issue_flash_reads(nf, nl, flash_xfer, flash_gate, flash_latency, load_end, flash_end,
                                            flash_free)
        load_ok, ready_l = _next_load_ready(nl, nc, ns, nf, slots, dep, comp_end, store_end, flash_end, load_why)
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


class _ReferencePipeline:
    """State of run_tiles_py: named queues (tile -> end time) and channel/engine free times."""

    def __init__(self, load_xfer, store_xfer, compute, engine, slots, dep, latency, flash_xfer, flash_gate,
                 flash_latency):
        self.n = len(load_xfer)
        self.load_xfer, self.store_xfer, self.compute, self.engine = load_xfer, store_xfer, compute, engine
        self.slots, self.dep, self.latency = slots, dep, latency
        self.flash_xfer, self.flash_gate, self.flash_latency = flash_xfer, flash_gate, flash_latency
        self.loads, self.computes, self.stores, self.flashes = {}, {}, {}, {}  # tile -> end (computes: (start, end))
        self.load_cause, self.stalls = {}, {}       # what held each load back last; tile -> (stall, cause)
        self.engine_free = {}
        self.channel_free = {"dma": 0.0, "flash": 0.0}

    def transfer(self, ready, xfer, channel="dma", lat=None):
        """Rule 1: arrival time of a transfer ready at `ready` taking `xfer` cycles of `channel`."""
        if xfer == 0.0:
            return ready                              # rule 1: nothing to move
        start = max(ready, self.channel_free[channel])
        self.channel_free[channel] = start + xfer
        return self.channel_free[channel] + (self.latency if lat is None else lat)

    def issue_flash_reads(self):
        """Rule 7: in tile order, each once the DRAM load of its gate tile has arrived (its staging space is free)."""
        flashes, gates = self.flashes, self.flash_gate
        while len(flashes) < self.n and (gates[len(flashes)] < 0 or gates[len(flashes)] in self.loads):
            i = len(flashes)
            gate = gates[i]
            flashes[i] = self.transfer(self.loads[gate] if gate >= 0 else 0.0, self.flash_xfer[i], "flash",
                                       self.flash_latency) if self.flash_xfer[i] > 0.0 else 0.0

    def compute_ready(self, i):
        """Rule 3: tile i's load has arrived and its output slot is free."""
        slot_tile = i - self.slots[i]
        return i in self.loads and (slot_tile < 0 or slot_tile in self.stores)

    def load_ready(self, i):
        """Rule 2: when tile i's load is ready, or None while that is not yet known."""
        slot_tile, producer = i - self.slots[i], self.dep[i]
        known = ((slot_tile < 0 or slot_tile in self.computes) and (producer < 0 or producer in self.stores)
                 and i in self.flashes)
        if not known:
            return None
        # the constraints in rule 6's order; the last one strictly above the rest names the cause
        held = [(self.computes[slot_tile][1] if slot_tile >= 0 else 0.0, DRAM)]
        if producer >= 0:
            held.append((self.stores[producer], DEPENDENCY))
        held.append((self.flashes[i], FLASH))
        ready, self.load_cause[i] = held[0]
        for t, c in held[1:]:
            if t > ready:
                ready, self.load_cause[i] = t, c
        return ready

    def issue_compute(self, i):
        """Rules 3 and 6: start tile i's compute and record its stall."""
        computes = self.computes
        free = self.engine_free.get(self.engine[i], 0.0)
        # constraints in the order rule 6 ranks them; the last one strictly above the rest sets the start
        held = [(self.loads[i], self.load_cause[i])]
        if i > 0:
            held.append((computes[i - 1][0], ORDER))
        if i - self.slots[i] >= 0:
            held.append((self.stores[i - self.slots[i]], SLOT))
        start, why = free, NONE
        for t, c in held:
            if t > start:
                start, why = t, c
        base = max(free, computes[i - 1][1] if i > 0 else 0.0)
        self.stalls[i] = (start - base, why) if start > base else (0.0, NONE)
        computes[i] = (start, start + self.compute[i])
        self.engine_free[self.engine[i]] = start + self.compute[i]

    def step(self):
        """One round: issue ready computes and flash reads, then move the next load or store (rule 5)."""
        n = self.n
        while len(self.computes) < n and self.compute_ready(len(self.computes)):
            self.issue_compute(len(self.computes))
        self.issue_flash_reads()
        next_load, next_store = len(self.loads), len(self.stores)
        ready_l = self.load_ready(next_load) if next_load < n else None
        ready_s = self.computes[next_store][1] if next_store in self.computes else None
        if ready_l is None and ready_s is None:
            raise RuntimeError("tile pipeline deadlock")
        if ready_l is not None and (ready_s is None or ready_l <= ready_s):
            self.loads[next_load] = self.transfer(ready_l, self.load_xfer[next_load])
        else:
            self.stores[next_store] = self.transfer(ready_s, self.store_xfer[next_store])


def run_tiles_py(load_xfer, store_xfer, compute, engine, slots, dep, latency, flash_xfer, flash_gate, flash_latency):
    """Slow reference of run_tiles: an explicit event loop over named queues, one rule at a time."""
    p = _ReferencePipeline(load_xfer, store_xfer, compute, engine, slots, dep, latency, flash_xfer, flash_gate,
                           flash_latency)
    while len(p.stores) < p.n:
        p.step()
    order = range(p.n)
    loads, computes, stores, stalls, flashes = p.loads, p.computes, p.stores, p.stalls, p.flashes
    return (np.array([loads[i] for i in order]), np.array([computes[i][0] for i in order]),
            np.array([computes[i][1] for i in order]), np.array([stores[i] for i in order]),
            np.array([stalls[i][0] for i in order]), np.array([stalls[i][1] for i in order], dtype=np.int64),
            np.array([flashes[i] for i in order], dtype=np.float64))


# ---------------------------------------------------------------- tile classes: runs of identical tiles
#
# run_classes simulates the same rules as run_tiles on a program given as runs: run r is count[r] consecutive
# identical tiles (same transfers, compute, engine, slots, dependency; no flash reads). Inside a run the pipeline
# settles into a periodic state: after each store (an anchor) it compares the state (next load, compute and store
# indices, the DMA channel's and the engine's free times, the event times and load causes of the tiles around the
# store) with the state q = 1..MAX_PERIOD anchors earlier, every time taken relative to the DMA channel's free time.
# Equal states one period apart evolve identically while the tiles they read are the run's: the rules only add
# cycles to times and compare times, and a producer's store end (the one time that does not move) is at or before
# every time in the state, so it can no longer hold anything back. The pipeline then jumps k whole periods: every
# time in the state += k x (the period's cycles), every index += k x q, each stall cause's cycles += k x (the
# period's); the run's last tiles and the next runs are simulated event by event. With times that are whole numbers
# (or binary fractions) below 2**53 every addition is exact, so the jump gives the tile-by-tile times bit for bit.
RING = 16               # event times kept per tile index modulo RING (loads lead stores by at most 3 tiles)
WINDOW_LO, WINDOW_HI = 2, 3         # a state holds tiles store - 2 .. store + 3
MAX_PERIOD = 4          # periods (in tiles) looked for
_SNAP = 2 + 2 + (WINDOW_LO + WINDOW_HI + 1) * 5     # indices, channel + engine, per tile 4 times and a cause
_INVALID = 1e308        # a state entry that does not exist yet (a load not issued, a compute not started)


@leaf_njit
def _snapshot(s, nl, nc, dma_free, engine_free_e, load_end, comp_start, comp_end, store_end, load_why, out):
    """The state at the anchor after tile s's store, times relative to dma_free, into `out`; returns the least
    relative time in it (a constant time at or below it cannot hold anything back any more)."""
    m = RING - 1
    out[0] = nl - s
    out[1] = nc - s
    out[2] = 0.0
    out[3] = engine_free_e - dma_free
    least = out[3] if out[3] < 0.0 else 0.0
    p = 4
    for t in range(s - WINDOW_LO, s + WINDOW_HI + 1):
        i = t & m
        vals = (load_end[i] - dma_free if t < nl else _INVALID,
                comp_start[i] - dma_free if t < nc else _INVALID,
                comp_end[i] - dma_free if t < nc else _INVALID,
                store_end[i] - dma_free if t <= s else _INVALID)
        for v in vals:
            out[p] = v
            p += 1
            if v < least:
                least = v
        out[p] = float(load_why[i]) if nc <= t <= nl else -1.0
        p += 1
    return least


@leaf_njit
def _issue_class_computes(nc, nl, ns, rc, run_end, at, compute, engine, slots, kernel, load_end, load_why, comp_start,
                          comp_end, store_end, engine_free, waits):
    """_issue_computes over runs and ring buffers (run r's values at entry at[r], its kernel's engine and slots),
    stalls added to waits[kernel, cause]; returns (nc, its run)."""
    m = RING - 1
    n = run_end[-1]
    while nc < n and nc < nl:
        while run_end[rc] <= nc:
            rc += 1
        kr = kernel[rc]
        if nc - slots[kr] >= ns:
            break
        e = engine[kr]
        t = engine_free[e]
        why = NONE
        i = nc & m
        if load_end[i] > t:
            t = load_end[i]
            why = load_why[i]
        if nc > 0 and comp_start[(nc - 1) & m] > t:
            t = comp_start[(nc - 1) & m]
            why = ORDER
        j = nc - slots[kr]
        if j >= 0 and store_end[j & m] > t:
            t = store_end[j & m]
            why = SLOT
        base = engine_free[e]
        if nc > 0 and comp_end[(nc - 1) & m] > base:
            base = comp_end[(nc - 1) & m]
        if t > base:
            waits[kr, why] += t - base
        comp_start[i] = t
        comp_end[i] = t + compute[at[rc]]
        engine_free[e] = comp_end[i]
        nc += 1
    return nc, rc


@leaf_njit
def _class_load_ready(nl, nc, ns, rl, run_end, kernel, slots, dep, last_tile, comp_end, kernel_store, load_why):
    """_next_load_ready over runs (slots and dependency per kernel, no flash reads); returns (known, ready time, run
    of nl)."""
    m = RING - 1
    if nl >= run_end[-1]:
        return False, 0.0, rl
    while run_end[rl] <= nl:
        rl += 1
    j = nl - slots[kernel[rl]]
    d = dep[kernel[rl]]
    if not ((j < 0 or j < nc) and (d < 0 or last_tile[d] < ns)):
        return False, 0.0, rl
    ready_l = comp_end[j & m] if j >= 0 else 0.0
    if d >= 0 and kernel_store[d] > ready_l:
        ready_l = kernel_store[d]
        load_why[nl & m] = DEPENDENCY
    return True, ready_l, rl


@leaf_njit
def _shift_window(s, dt, shift, load_end, comp_start, comp_end, store_end, load_why, tmp):
    """Move the state window of anchor s to anchor s + dt, every time + shift (a jump of whole periods). `tmp`:
    scratch for the window's 5 values a tile (a state's snapshot array: _SNAP holds them and more)."""
    m = RING - 1
    width = WINDOW_LO + WINDOW_HI + 1
    for x in range(width):
        i = (s - WINDOW_LO + x) & m
        tmp[5 * x] = load_end[i] + shift
        tmp[5 * x + 1] = comp_start[i] + shift
        tmp[5 * x + 2] = comp_end[i] + shift
        tmp[5 * x + 3] = store_end[i] + shift
        tmp[5 * x + 4] = load_why[i]
    for x in range(width):
        i = (s - WINDOW_LO + x + dt) & m
        load_end[i] = tmp[5 * x]
        comp_start[i] = tmp[5 * x + 1]
        comp_end[i] = tmp[5 * x + 2]
        store_end[i] = tmp[5 * x + 3]
        load_why[i] = int(tmp[5 * x + 4])


@leaf_njit
def _period(s, snap, hist, hist_s):
    """The smallest q in 1..MAX_PERIOD whose anchor s - q had the same state as anchor s (0: none)."""
    for q in range(1, MAX_PERIOD + 1):
        g = (s - q) % (MAX_PERIOD + 1)
        if s - q < 0 or hist_s[g] != s - q:       # keys are >= 0: -1 marks an emptied slot, never a match
            continue
        same = True
        for x in range(snap.shape[0]):
            if hist[g, x] != snap[x]:
                same = False
                break
        if same:
            return q
    return 0


@leaf_njit
def _kernel_state(s, nl, nc, dma_free, engine_free, load_end, comp_start, comp_end, store_end, load_why, kb, p, dep,
                  last_tile, kernel_store, snap, out):
    """The state at the end of a repeated layer (the anchor after tile s's store; kernel kb starts the next one of
    p kernels), times relative to dma_free, into `out`: _snapshot's window, every engine's free time, and the store
    each of the next p kernels' loads waits for where it has happened (else _INVALID). A time at or below the
    window's least holds nothing back any more (as for _record's `blocked`): it is kept as that least, so an engine
    unused for long, or a store long past, does not tell two equal states apart."""
    least = _snapshot(s, nl, nc, dma_free, engine_free[0], load_end, comp_start, comp_end, store_end, load_why, snap)
    for x in range(_SNAP):
        out[x] = snap[x]
    for e in range(ENGINES):
        out[_SNAP + e] = max(engine_free[e] - dma_free, least)
    for i in range(p):
        d = dep[kb + i]
        out[_SNAP + ENGINES + i] = max(kernel_store[d] - dma_free, least) if 0 <= d < kb and last_tile[d] >= 0 \
            else _INVALID


@leaf_njit
def _jump_periods(kb, p, jump, shift1, last_tile, kernel_end, kernel_store, waits, partial, partial_before):
    """Fill in `jump` repeated layers from kernel kb on as the layer just ended (kb - p ..) repeated, each shift1
    later: its kernels' ends and stores, and their stalls: what the next layer had counted by now (`partial`) plus
    what the ended layer counted after its own start (its total less `partial_before`, counted by the end of the
    layer before it); the layer after the jumped ones starts from `partial`."""
    for i in range(p):
        a = kb - p + i
        for c in range(N_CAUSES):
            own = waits[a, c] - partial_before[i, c]
            for j in range(jump):
                waits[kb + j * p + i, c] = partial[i, c] + own
            waits[kb + jump * p + i, c] = partial[i, c]
        if last_tile[a] >= 0:
            for j in range(jump):
                kernel_end[kb + j * p + i] = kernel_end[a] + (j + 1) * shift1
                kernel_store[kb + j * p + i] = kernel_store[a] + (j + 1) * shift1


LAYER_AT, LAYER_REF, LAYER_STATE = 0, 1, 2          # _layer_state's fields: the layer end held, its dma_free, then
#                                                    the state now, the state held, the next layer's stalls now and
#                                                    held (max kernels per layer x N_CAUSES each)


@cached_njit
def _layer_state(k_groups):
    """The record _layer_end keeps between layer ends, sized for the largest layer of `k_groups` (none held)."""
    max_p = 1
    for x in range(k_groups.shape[0]):
        max_p = max(max_p, k_groups[x, 1])
    out = np.zeros(LAYER_STATE + 2 * (_SNAP + ENGINES + max_p) + 2 * max_p * N_CAUSES)
    out[LAYER_AT] = -1.0
    return out


@leaf_njit
def _layer_end(s, nl, nc, dma_free, k_groups, ki, engine_free, load_end, comp_start, comp_end, store_end, load_why,
               dep, last_tile, kernel_end, kernel_store, waits, snap, k_state):
    """At the anchor after tile s's store: when it ends a repeated layer of kernel group ki (commands.kernel_groups)
    whose state (_kernel_state) is the previous layer end's, every layer but the group's last is jumped
    (_jump_periods; the tile window and the engines moved); else this end's state is kept in k_state. Returns (the
    kernel group at or after tile s, tiles jumped (0: none), the time shift, runs jumped)."""
    while ki < k_groups.shape[0] and s + 1 > k_groups[ki, 5] + k_groups[ki, 2] * k_groups[ki, 4]:
        ki += 1
    if ki >= k_groups.shape[0]:
        return ki, 0, 0.0, 0
    f, p, reps, runs_p, tiles_p, t0 = k_groups[ki, 0], k_groups[ki, 1], k_groups[ki, 2], k_groups[ki, 3], \
        k_groups[ki, 4], k_groups[ki, 5]
    done = (s + 1 - t0) // tiles_p
    if not (s + 1 > t0 and (s + 1 - t0) % tiles_p == 0 and done < reps and tiles_p > WINDOW_LO + WINDOW_HI + 1):
        return ki, 0, 0.0, 0
    kb = f + done * p                                 # the next layer's first kernel
    width = _SNAP + ENGINES + p
    max_p = (k_state.shape[0] - LAYER_STATE - 2 * _SNAP - 2 * ENGINES) // (2 + 2 * N_CAUSES)
    now = k_state[LAYER_STATE:LAYER_STATE + width]
    held = k_state[LAYER_STATE + _SNAP + ENGINES + max_p:LAYER_STATE + _SNAP + ENGINES + max_p + width]
    stalls = LAYER_STATE + 2 * (_SNAP + ENGINES + max_p)
    partial = k_state[stalls:stalls + p * N_CAUSES].reshape((p, N_CAUSES))
    partial_before = k_state[stalls + max_p * N_CAUSES:stalls + max_p * N_CAUSES + p * N_CAUSES].reshape(
        (p, N_CAUSES))
    _kernel_state(s, nl, nc, dma_free, engine_free, load_end, comp_start, comp_end, store_end, load_why, kb, p, dep,
                  last_tile, kernel_store, snap, now)
    for i in range(p):                                # copies as loops: a leaf (leaf_njit) allocates nothing
        for c in range(N_CAUSES):
            partial[i, c] = waits[kb + i, c]
    same = k_state[LAYER_AT] == done - 1
    if same:
        for x in range(width):
            if now[x] != held[x]:
                same = False
                break
    jump = reps - 1 - done                            # all but the group's last layer
    if not same or jump < 1:
        for x in range(width):
            held[x] = now[x]
        for i in range(p):
            for c in range(N_CAUSES):
                partial_before[i, c] = partial[i, c]
        k_state[LAYER_AT] = done
        k_state[LAYER_REF] = dma_free
        return ki, 0, 0.0, 0
    shift1 = dma_free - k_state[LAYER_REF]
    _jump_periods(kb, p, jump, shift1, last_tile, kernel_end, kernel_store, waits, partial, partial_before)
    shift = jump * shift1
    _shift_window(s, jump * tiles_p, shift, load_end, comp_start, comp_end, store_end, load_why, snap)
    for e in range(ENGINES):
        engine_free[e] += shift
    k_state[LAYER_AT] = -1.0
    return ki, jump * tiles_p, shift, jump * runs_p


@cached_njit
def run_classes(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency):
    """Simulate a program of runs (count[r] identical tiles each; dep[r]: the kernel whose last store must end
    before the run's loads start, -1: none; kernel[r]: the run's kernel, non-decreasing); returns (each kernel's
    end = max(store end, compute end) of its last tile, stall cycles per kernel and cause, tiles simulated event by
    event)."""
    none = np.zeros(0, dtype=np.int64)
    return run_class_groups(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency,
                            none, none, none)


@leaf_njit
def _record(key, blocked, snap, hist, hist_key, hist_ref, hist_waits, dma_free, waits_row):
    """Keep the state at anchor `key` (unless a producer's store may still hold a load back); returns _period's q."""
    h = key % (MAX_PERIOD + 1)
    if blocked:
        hist_key[h] = -1
        return 0
    for x in range(snap.shape[0]):                    # copies as loops: a leaf allocates nothing
        hist[h, x] = snap[x]
    hist_key[h] = key
    hist_ref[h] = dma_free
    for c in range(waits_row.shape[0]):
        hist_waits[h, c] = waits_row[c]
    return _period(key, snap, hist, hist_key)


@cached_njit
def run_class_groups(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency,
                     g_first, g_period, g_reps):
    """run_classes with repeat groups: entries g_first[i] .. + g_period[i] x g_reps[i] - 1 are g_reps[i] repeats of
    the g_period[i] entries from g_first[i] (one kernel's; groups in order, apart). A hint only, the program is
    the same: at each repeat's end the state is compared with the ends of the q = 1..MAX_PERIOD repeats before; the
    same state jumps whole q-repeat periods at once (as for runs), so a repeated pattern of runs costs a few
    repeats, not all. engine, slots and dep are the same for every run of a kernel."""
    n_runs = count.shape[0]
    engine_k = np.zeros(n_kernels, dtype=np.int64)
    slots_k = np.ones(n_kernels, dtype=np.int64)
    dep_k = np.full(n_kernels, -1, dtype=np.int64)
    for r in range(n_runs):
        engine_k[kernel[r]] = engine[r]
        slots_k[kernel[r]] = slots[r]
        dep_k[kernel[r]] = dep[r]
    return _run_entries(np.arange(n_runs), kernel.astype(np.int64), count, load_xfer, store_xfer, compute, engine_k,
                        slots_k, dep_k, n_kernels, latency, g_first, g_period, g_reps, np.zeros((0, 6), dtype=np.int64))


@cached_njit
def run_program(count, load_xfer, store_xfer, compute, first_entry, entries, engine, slots, dep, latency,
                g_first, g_period, g_reps, k_groups):
    """run_class_groups of a program stored by blocks (commands.Program): kernel j's runs are the entries[j]
    entries from first_entry[j] of the per-entry arrays (kernels of repeated layers share them); engine, slots and
    dep per kernel; repeat groups as positions in the whole program; kernel groups (repeated layers: rows of first
    kernel, kernels per period, periods, runs per period, tiles per period, first tile; a hint, see _run_entries).
    Memory: three int64 per run of the program."""
    n_kernels = first_entry.shape[0]
    n_runs = 0
    for j in range(n_kernels):
        n_runs += entries[j]
    at = np.empty(n_runs, dtype=np.int64)
    kernel = np.empty(n_runs, dtype=np.int64)
    r = 0
    for j in range(n_kernels):
        for x in range(entries[j]):
            at[r] = first_entry[j] + x
            kernel[r] = j
            r += 1
    return _run_entries(at, kernel, count, load_xfer, store_xfer, compute, engine, slots, dep, n_kernels, latency,
                        g_first, g_period, g_reps, k_groups)


@cached_njit
def _run_ends(at, kernel, count, n_kernels):
    """(the tile after each run's last, each kernel's last tile) of runs whose values are at entries `at`."""
    run_end = np.empty(at.shape[0], dtype=np.int64)
    last_tile = np.full(n_kernels, -1, dtype=np.int64)
    total = 0
    for r in range(at.shape[0]):
        total += count[at[r]]
        run_end[r] = total
        last_tile[kernel[r]] = total - 1
    return run_end, last_tile


@cached_njit
def _run_entries(at, kernel, count, load_xfer, store_xfer, compute, engine, slots, dep, n_kernels, latency,
                 g_first, g_period, g_reps, k_groups):
    """run_class_groups' simulation: run r of the program has the values of entry at[r] of the per-entry arrays and
    kernel kernel[r] (non-decreasing), whose engine, slots and dep are per kernel. `k_groups` rows (first kernel f,
    kernels per period p, periods n, runs per period, tiles per period, f's first tile): kernels f .. f + n p - 1
    are n repeats of the p kernels from f (repeated layers; commands.kernel_groups). A hint only: at the end of each
    period the state (the tile window, every engine, the stores the next period's loads wait for) is compared with
    the previous period's end; the same state jumps all but the last period at once (_layer_end)."""
    n_runs = at.shape[0]
    run_end, last_tile = _run_ends(at, kernel, count, n_kernels)
    n = run_end[-1] if n_runs else 0
    m = RING - 1
    load_end = np.zeros(RING)
    comp_start = np.zeros(RING)
    comp_end = np.zeros(RING)
    store_end = np.zeros(RING)
    load_why = np.full(RING, DRAM, dtype=np.int64)
    engine_free = np.zeros(ENGINES)
    kernel_end = np.zeros(n_kernels)
    kernel_store = np.zeros(n_kernels)
    waits = np.zeros((n_kernels, N_CAUSES))
    # states at the last anchors, by key (tile of a run; repeats ended of a group) modulo MAX_PERIOD + 1: [0] runs,
    # [1] the group's repeats
    hist = np.zeros((2, MAX_PERIOD + 1, _SNAP))
    hist_key = np.full((2, MAX_PERIOD + 1), -1, dtype=np.int64)
    hist_ref = np.zeros((2, MAX_PERIOD + 1))
    hist_waits = np.zeros((2, MAX_PERIOD + 1, N_CAUSES))
    snap = np.zeros(_SNAP)
    n_groups = g_first.shape[0]
    g_tile0 = np.zeros(n_groups, dtype=np.int64)      # each group's first tile, tiles per repeat, end tile
    g_tiles = np.zeros(n_groups, dtype=np.int64)
    g_end = np.zeros(n_groups, dtype=np.int64)
    for x in range(n_groups):
        f = g_first[x]
        g_tile0[x] = run_end[f] - count[at[f]]
        g_tiles[x] = run_end[f + g_period[x] - 1] - g_tile0[x]
        g_end[x] = g_tile0[x] + g_reps[x] * g_tiles[x]
    gi = 0                                            # the group at or after the store's run
    g_seen = -1                                       # the group hist[1] holds
    k_state = _layer_state(k_groups)                  # _layer_end's record of the last layer end
    ki = 0                                            # the kernel group at or after the store's tile
    dma_free = 0.0
    nl = nc = ns = 0
    rl = rc = rs = 0                                  # the runs of tiles nl, nc and ns
    stepped = 0
    while ns < n:
        nc, rc = _issue_class_computes(nc, nl, ns, rc, run_end, at, compute, engine, slots, kernel, load_end,
                                       load_why, comp_start, comp_end, store_end, engine_free, waits)
        load_ok, ready_l, rl = _class_load_ready(nl, nc, ns, rl, run_end, kernel, slots, dep, last_tile, comp_end,
                                                 kernel_store, load_why)
        store_ok = ns < nc
        while run_end[rs] <= ns:
            rs += 1
        ready_s = comp_end[ns & m] if store_ok else 0.0
        if not load_ok and not store_ok:
            raise RuntimeError("tile pipeline deadlock")
        stepped += 1
        if load_ok and (not store_ok or ready_l <= ready_s):       # rule 5
            load_end[nl & m], dma_free = _transfer(ready_l, load_xfer[at[rl]], dma_free, latency)
            nl += 1
            load_why[nl & m] = DRAM
            continue
        store_end[ns & m], dma_free = _transfer(ready_s, store_xfer[at[rs]], dma_free, latency)
        s = ns
        ns += 1
        k_r = kernel[rs]
        if s == last_tile[k_r]:
            kernel_store[k_r] = store_end[s & m]
            kernel_end[k_r] = max(store_end[s & m], comp_end[s & m])
        # the end of a repeated layer: the same state as at the previous layer's end jumps the layers still to come
        ki, dt, shift, runs_jumped = _layer_end(s, nl, nc, dma_free, k_groups, ki, engine_free, load_end, comp_start,
                                                comp_end, store_end, load_why, dep, last_tile, kernel_end,
                                                kernel_store, waits, snap, k_state)
        if dt:
            dma_free += shift
            nl += dt
            nc += dt
            ns += dt
            rl += runs_jumped
            rc += runs_jumped
            rs += runs_jumped
            hist_key[0, :] = -1
            hist_key[1, :] = -1
            g_seen = -1
            continue
        # the anchor's periodic unit: a repeat of the group around it (its state window inside the group), else a
        # tile of its run (the window inside the run)
        while gi < n_groups and g_first[gi] + g_period[gi] * g_reps[gi] <= rs:
            gi += 1
        if (gi < n_groups and s == run_end[rs] - 1 and g_first[gi] <= rs and (rs + 1 - g_first[gi]) % g_period[gi] == 0
                and s - WINDOW_LO >= g_tile0[gi] and s + WINDOW_HI < g_end[gi]):
            if g_seen != gi:
                hist_key[1, :] = -1
                g_seen = gi
            hs, key, unit, unit_runs, span_end = 1, (rs + 1 - g_first[gi]) // g_period[gi], g_tiles[gi], g_period[gi], \
                g_end[gi]
        elif s - WINDOW_LO >= run_end[rs] - count[at[rs]] and s + WINDOW_HI < run_end[rs]:
            hs, key, unit, unit_runs, span_end = 0, s, 1, 0, run_end[rs]
        else:
            continue
        least = _snapshot(s, nl, nc, dma_free, engine_free[engine[k_r]], load_end, comp_start, comp_end, store_end,
                          load_why, snap)
        d = dep[k_r]
        blocked = d >= 0 and kernel_store[d] - dma_free > least    # the producer's store may still hold a load back
        q = _record(key, blocked, snap, hist[hs], hist_key[hs], hist_ref[hs], hist_waits[hs], dma_free, waits[k_r])
        k = (span_end - 1 - WINDOW_HI - s) // (q * unit) if q else 0     # whole periods all inside the span
        if k < 1:
            continue
        g = (key - q) % (MAX_PERIOD + 1)
        shift = k * (dma_free - hist_ref[hs, g])
        dt = k * q * unit
        _shift_window(s, dt, shift, load_end, comp_start, comp_end, store_end, load_why, snap)
        for c in range(N_CAUSES):
            waits[k_r, c] += k * (waits[k_r, c] - hist_waits[hs, g, c])
        dma_free += shift
        engine_free[engine[k_r]] += shift
        nl += dt
        nc += dt
        ns += dt
        rl += k * q * unit_runs
        rc += k * q * unit_runs
        rs += k * q * unit_runs
        hist_key[0, :] = -1
        if hs:
            hist_key[1, :] = -1
    return kernel_end, waits, stepped


def expand_runs(count, *per_run):
    """Per-tile arrays of a program of runs (for run_tiles and the timeline): each run's values repeated."""
    return tuple(np.repeat(a, count) for a in per_run)


def run_classes_py(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency):
    """Reference of run_classes: expand the runs to tiles, simulate them one by one with run_tiles_py and fold the
    tile times into each kernel's end and stall cycles per cause."""
    count = np.asarray(count, dtype=np.int64)
    tile_kernel = np.repeat(kernel, count)
    last = np.full(n_kernels, -1, dtype=np.int64)
    np.maximum.at(last, tile_kernel, np.arange(tile_kernel.shape[0]))
    dep_tile = np.where(np.asarray(dep) >= 0, last[np.maximum(dep, 0)], -1)
    tiles = expand_runs(count, load_xfer, store_xfer, compute, engine, slots, dep_tile)
    n = tiles[0].shape[0]
    times = run_tiles_py(*tiles[:6], latency, np.zeros(n), np.full(n, -1, dtype=np.int64), 0.0)
    return fold_tiles(times, tile_kernel, n_kernels)


def run_class_groups_py(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency,
                        g_first, g_period, g_reps):
    """Reference of run_class_groups: the groups are a hint only, so run_classes_py of the same runs."""
    return run_classes_py(count, load_xfer, store_xfer, compute, engine, slots, dep, kernel, n_kernels, latency)


def run_program_py(count, load_xfer, store_xfer, compute, first_entry, entries, engine, slots, dep, latency,
                   g_first, g_period, g_reps, k_groups):
    """Reference of run_program: every kernel's runs copied out of the per-entry arrays, then run_classes_py (the
    groups are hints only)."""
    at = np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in zip(first_entry, entries, strict=True)])
    kernel = np.repeat(np.arange(first_entry.shape[0], dtype=np.int64), entries)
    return run_classes_py(count[at], load_xfer[at], store_xfer[at], compute[at], engine[kernel], slots[kernel],
                          dep[kernel], kernel, first_entry.shape[0], latency)


def fold_tiles(times, tile_kernel, n_kernels):
    """(each kernel's end = max(store end, compute end) of its last tile, stall cycles per kernel and cause, tiles)
    from per-tile times."""
    _, _, comp_end, store_end, stall, cause, _ = times
    last = np.full(n_kernels, -1, dtype=np.int64)
    np.maximum.at(last, tile_kernel, np.arange(tile_kernel.shape[0]))
    ends = np.maximum(store_end, comp_end)
    kernel_end = np.where(last >= 0, ends[np.maximum(last, 0)], 0.0)
    waits = np.zeros((n_kernels, N_CAUSES))
    np.add.at(waits, (tile_kernel, cause), stall)
    return kernel_end, waits, tile_kernel.shape[0]
