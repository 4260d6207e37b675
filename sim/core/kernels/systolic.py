"""Register-transfer model of an R x C systolic array running one GEMM C[M,N] = A[M,K] . B[K,N], fold by fold.

Every PE register is simulated cycle by cycle; operands enter with the dataflow's skew and move one PE per cycle.
Each token carries a *tag* (the index of the streamed row, or of the reduction step in OS) so the model can check
that the skew keeps operands aligned and can say where a result belongs; EMPTY (-1) marks a bubble.

Timing convention (chosen so the counts equal SCALE-Sim 3.0.0's closed forms exactly):
  * Cycle 0 is the first cycle of the first fold. Folds run strictly one after another (column folds outer, row
    folds inner); fold f+1's cycle 0 is the cycle after fold f's last output. Edge folds are zero-padded to the
    full R x C array (padded lanes carry zero-valued tokens), so every fold takes the full-array time, as in
    SCALE-Sim, whose padded lanes carry null requests but keep the fold length.
  * WS (B stationary, K on rows, N on columns, M streamed, T = M):
      fold cycles 0 .. R-1  preload: weight row R-1-t enters the top of the array in cycle t and every weight
                            register shifts down one row, so after R cycles PE(r,c) holds B[k0+r, n0+c];
      A[i, k0+r] enters row r at the left edge in cycle R + i + r (the skew), then moves one PE right per cycle;
      PE(r,c) in cycle R + i + r + c latches psum(r,c) = psum(r-1,c) + w(r,c) * a (psum(-1,c) = 0);
      the psum register of PE(R-1,c) is the array's output: row i of column c leaves in cycle 2R - 1 + i + c.
      Last output of a fold: i = T-1, c = C-1, local cycle 2R + T + C - 3, so a fold lasts 2R + T + C - 2 cycles.
  * OS (C stationary, M on rows, N on columns, K streamed, T = K):
      A[m0+r, s] enters row r at the left in cycle s + r and moves right; B[s, n0+c] enters column c at the top
      in cycle s + c and moves down; both reach PE(r,c) in cycle s + r + c, which latches acc += a * b.
      A PE's result is final at its last MAC (tag s = T-1 travels with the operands) and is read out of the
      accumulator at that clock edge (the accumulator restarts at 0 for the next fold). Last output of a fold:
      PE(R-1,C-1), local cycle T + R + C - 3, so a fold lasts T + R + C - 2 cycles. SCALE-Sim charges OS no drain
      beyond this (its output-write schedule overlaps the drain with the skew), and neither does this model.
  * IS (A^T stationary, K on rows, M on columns, N streamed) is WS on the transposed problem: C^T = B^T . A^T,
    with B^T (N x K) streamed and A^T (K x M) held, so (Sr, Sc, T) = (K, M, N) and each fold is timed like WS.
  The returned last_cycle is the global cycle in which the last output of the last fold leaves the array:
  F * (2R + C + T - 2) - 1 for WS and IS, F * (T + R + C - 2) - 1 for OS, F = ceil(Sr/R) * ceil(Sc/C).

The numba kernels update the registers in place, visiting PEs from the bottom-right corner so each PE still reads
its neighbours' old values; the *_py references recompute the whole next state from an explicit copy of the old
one and assert the alignment invariants. Tests require the two to agree exactly.
"""
from __future__ import annotations

import numpy as np

from tilesim.core.kernels.jit import cached_njit

EMPTY = -1  # tag of an empty register (a bubble)


@cached_njit
def _stationary_b(a, b, rows, cols):
    """WS register model: B held in the PEs, A streamed left to right, psums flowing down; returns (C, last_cycle)."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), np.int64)
    w = np.zeros((rows, cols), np.int64)  # stationary weight registers
    xv = np.zeros((rows, cols), np.int64)  # activation registers (value, tag = streamed row i)
    xt = np.full((rows, cols), EMPTY, np.int64)
    pv = np.zeros((rows, cols), np.int64)  # partial-sum registers (value, tag)
    pt = np.full((rows, cols), EMPTY, np.int64)
    start = 0  # global cycle of the current fold's cycle 0
    last = -1
    feed_end = 2 * rows + m - 2  # local cycle of the feeder's last token: i = m-1 into row rows-1
    for fc in range((n + cols - 1) // cols):
        for fr in range((k + rows - 1) // rows):
            k0 = fr * rows
            n0 = fc * cols
            w[:, :] = 0
            xt[:, :] = EMPTY
            pt[:, :] = EMPTY
            t = 0
            while True:
                busy = False
                for r in range(rows - 1, -1, -1):
                    for c in range(cols - 1, -1, -1):
                        # activation arriving at PE(r,c): from the skewed feeder at the left edge, else from the left
                        if c == 0:
                            i = t - rows - r
                            if 0 <= i < m:
                                tag = i
                                val = a[i, k0 + r] if k0 + r < k else 0
                            else:
                                tag = EMPTY
                                val = 0
                        else:
                            tag = xt[r, c - 1]
                            val = xv[r, c - 1]
                        if tag != EMPTY:
                            above = pv[r - 1, c] if r > 0 else 0
                            pv[r, c] = above + w[r, c] * val
                            pt[r, c] = tag
                            busy = True
                            if r == rows - 1:  # the bottom psum register is the array's output port
                                if n0 + c < n:
                                    out[tag, n0 + c] += pv[r, c]
                                last = start + t
                        else:
                            pt[r, c] = EMPTY
                        xv[r, c] = val
                        xt[r, c] = tag
                        # preload: weights shift down one row; row rows-1-t enters at the top
                        if t < rows:
                            if r > 0:
                                w[r, c] = w[r - 1, c]
                            else:
                                kr = k0 + rows - 1 - t
                                w[r, c] = b[kr, n0 + c] if kr < k and n0 + c < n else 0
                if not busy and t >= feed_end:
                    break
                t += 1
            start = last + 1
    return out, last


@cached_njit
def systolic_ws(a, b, rows, cols):
    """Weight-stationary run of C = A . B on a rows x cols array; returns (C, last_cycle)."""
    return _stationary_b(a, b, rows, cols)


@cached_njit
def systolic_is(a, b, rows, cols):
    """Input-stationary run of C = A . B: WS on C^T = B^T . A^T (A^T held, B^T streamed); returns (C, last_cycle)."""
    ct, last = _stationary_b(np.ascontiguousarray(b.T), np.ascontiguousarray(a.T), rows, cols)
    return np.ascontiguousarray(ct.T), last


@cached_njit
def systolic_os(a, b, rows, cols):
    """Output-stationary run of C = A . B: A flows right, B flows down, PEs accumulate; returns (C, last_cycle)."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), np.int64)
    acc = np.zeros((rows, cols), np.int64)
    av = np.zeros((rows, cols), np.int64)  # A registers (value, tag = reduction step s)
    at = np.full((rows, cols), EMPTY, np.int64)
    bv = np.zeros((rows, cols), np.int64)  # B registers (value, tag)
    bt = np.full((rows, cols), EMPTY, np.int64)
    start = 0
    last = -1
    feed_end = k - 1 + max(rows, cols) - 1  # local cycle of the feeders' last token
    for fc in range((n + cols - 1) // cols):
        for fr in range((m + rows - 1) // rows):
            m0 = fr * rows
            n0 = fc * cols
            acc[:, :] = 0
            at[:, :] = EMPTY
            bt[:, :] = EMPTY
            t = 0
            while True:
                busy = False
                for r in range(rows - 1, -1, -1):
                    for c in range(cols - 1, -1, -1):
                        if c == 0:  # A[m0+r, s] enters row r in cycle s + r
                            s = t - r
                            if 0 <= s < k:
                                ta = s
                                va = a[m0 + r, s] if m0 + r < m else 0
                            else:
                                ta = EMPTY
                                va = 0
                        else:
                            ta = at[r, c - 1]
                            va = av[r, c - 1]
                        if r == 0:  # B[s, n0+c] enters column c in cycle s + c
                            s = t - c
                            if 0 <= s < k:
                                tb = s
                                vb = b[s, n0 + c] if n0 + c < n else 0
                            else:
                                tb = EMPTY
                                vb = 0
                        else:
                            tb = bt[r - 1, c]
                            vb = bv[r - 1, c]
                        if ta != EMPTY:  # the skew guarantees tb == ta here (the reference asserts it)
                            acc[r, c] += va * vb
                            busy = True
                            if ta == k - 1:  # last MAC: the result leaves the accumulator this cycle
                                if m0 + r < m and n0 + c < n:
                                    out[m0 + r, n0 + c] = acc[r, c]
                                acc[r, c] = 0
                                last = start + t
                        av[r, c] = va
                        at[r, c] = ta
                        bv[r, c] = vb
                        bt[r, c] = tb
                if not busy and t >= feed_end:
                    break
                t += 1
            start = last + 1
    return out, last


# ---------------------------------------------------------------------------------------------------------------
# Pure-Python references: the same registers and schedule, written for obviousness rather than speed. Registers
# hold (value, tag) tuples or None; each cycle builds the complete next state from the old one.
# ---------------------------------------------------------------------------------------------------------------

def _grid(rows, cols, fill):
    """A rows x cols list-of-lists filled with `fill`."""
    return [[fill] * cols for _ in range(rows)]


def _ws_weight(b, k0, n0, r, c):
    """Fold (k0, n0)'s B block, zero-padded to rows x cols: the weight PE (r, c) holds."""
    k, n = b.shape
    return int(b[k0 + r, n0 + c]) if k0 + r < k and n0 + c < n else 0


def _ws_feed(a, k0, rows, r, t):
    """Token the skewed feeder drives into row r in cycle t: A[i, k0+r] for i = t - rows - r."""
    m, k = a.shape
    i = t - rows - r
    if 0 <= i < m:
        return (int(a[i, k0 + r]) if k0 + r < k else 0, i)
    return None


def _ws_fold_py(a, b, rows, cols, k0, n0, out, start):
    """One WS fold (B block at (k0, n0)) cycle by cycle; adds its results into `out`; returns its last cycle."""
    m = a.shape[0]
    n = b.shape[1]
    last = start - 1
    w = _grid(rows, cols, 0)
    act = _grid(rows, cols, None)
    psum = _grid(rows, cols, None)
    t = 0
    while True:
        if t == rows:  # preload done: every PE holds its weight
            assert all(w[r][c] == _ws_weight(b, k0, n0, r, c) for r in range(rows) for c in range(cols))
        new_w = [row[:] for row in w]
        if t < rows:  # weight registers shift down; row rows-1-t enters at the top
            for c in range(cols):
                new_w[0][c] = _ws_weight(b, k0, n0, rows - 1 - t, c)
                for r in range(1, rows):
                    new_w[r][c] = w[r - 1][c]
        new_act = _grid(rows, cols, None)
        new_psum = _grid(rows, cols, None)
        for r in range(rows):
            for c in range(cols):
                x = _ws_feed(a, k0, rows, r, t) if c == 0 else act[r][c - 1]
                above = (0, x[1] if x else None) if r == 0 else psum[r - 1][c]
                new_act[r][c] = x
                if x is None:
                    assert r == 0 or above is None, "psum arrived without its activation"
                    continue
                assert t >= rows, "activation arrived during preload"
                assert above is not None and above[1] == x[1], "skew misaligned psum and activation"
                new_psum[r][c] = (above[0] + w[r][c] * x[0], x[1])
                if r == rows - 1:  # leaves the array at the bottom edge this cycle
                    if n0 + c < n:
                        out[x[1]][n0 + c] += new_psum[r][c][0]
                    last = start + t
        w, act, psum = new_w, new_act, new_psum
        fed_all = t >= 2 * rows + m - 2
        if fed_all and all(v is None for row in act for v in row):
            return last
        t += 1


def _stationary_b_py(a, b, rows, cols):
    """Reference of _stationary_b (WS): explicit next-state registers and alignment asserts."""
    m, k = a.shape
    n = b.shape[1]
    out = [[0] * n for _ in range(m)]
    start, last = 0, -1
    for fc in range(-(-n // cols)):  # column folds outer
        for fr in range(-(-k // rows)):  # row folds inner
            last = _ws_fold_py(a, b, rows, cols, fr * rows, fc * cols, out, start)
            start = last + 1
    return np.array(out, dtype=np.int64).reshape(m, n), last


def systolic_ws_py(a, b, rows, cols):
    """Pure-Python reference of systolic_ws."""
    return _stationary_b_py(a, b, rows, cols)


def systolic_is_py(a, b, rows, cols):
    """Pure-Python reference of systolic_is (WS on C^T = B^T . A^T)."""
    ct, last = _stationary_b_py(b.T, a.T, rows, cols)
    return np.ascontiguousarray(ct.T), last


def _os_feed_a(a, m0, r, t):
    """Token entering row r at the left edge in cycle t: A[m0+r, s], s = t - r (zero-padded)."""
    m, k = a.shape
    s = t - r
    if 0 <= s < k:
        return (int(a[m0 + r, s]) if m0 + r < m else 0, s)
    return None


def _os_feed_b(b, n0, c, t):
    """Token entering column c at the top edge in cycle t: B[s, n0+c], s = t - c (zero-padded)."""
    k, n = b.shape
    s = t - c
    if 0 <= s < k:
        return (int(b[s, n0 + c]) if n0 + c < n else 0, s)
    return None


def systolic_os_py(a, b, rows, cols):
    """Pure-Python reference of systolic_os: explicit next-state registers and alignment asserts."""
    m, k = a.shape
    n = b.shape[1]
    out = [[0] * n for _ in range(m)]
    start, last = 0, -1
    for fc in range(-(-n // cols)):  # column folds outer
        for fr in range(-(-m // rows)):  # row folds inner
            m0, n0 = fr * rows, fc * cols

            acc = _grid(rows, cols, 0)
            ra = _grid(rows, cols, None)
            rb = _grid(rows, cols, None)
            t = 0
            while True:
                new_acc = [row[:] for row in acc]
                new_a = _grid(rows, cols, None)
                new_b = _grid(rows, cols, None)
                for r in range(rows):
                    for c in range(cols):
                        x = _os_feed_a(a, m0, r, t) if c == 0 else ra[r][c - 1]
                        y = _os_feed_b(b, n0, c, t) if r == 0 else rb[r - 1][c]
                        new_a[r][c], new_b[r][c] = x, y
                        assert (x is None) == (y is None), "A and B tokens out of step"
                        if x is None:
                            continue
                        assert x[1] == y[1], "skew misaligned A and B"
                        new_acc[r][c] = acc[r][c] + x[0] * y[0]
                        if x[1] == k - 1:  # final MAC: read the result out, restart the accumulator
                            if m0 + r < m and n0 + c < n:
                                out[m0 + r][n0 + c] = new_acc[r][c]
                            new_acc[r][c] = 0
                            last = start + t
                acc, ra, rb = new_acc, new_a, new_b
                fed_all = t >= k - 1 + max(rows, cols) - 1
                if fed_all and all(v is None for row in ra for v in row):
                    break
                t += 1
            assert all(v == 0 for row in acc for v in row)
            start = last + 1
    return np.array(out, dtype=np.int64).reshape(m, n), last
