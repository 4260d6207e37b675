"""Validation mode: run a schedule's GEMMs through the register-level array model and compare with the closed form."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import InputError
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.schedule import Schedule
from tilesim.core.array_model import MAX_DIM, closed_form_cycles, run_array


@dataclass(frozen=True)
class ArrayCheck:
    """One GEMM instance checked on the cycle-level array: its cycles against the closed form, its output against
    numpy's product (skipped=True when it is larger than max_macs)."""
    kernel: str
    m: int
    n: int
    k: int
    closed_form_cycles: int
    array_cycles: int
    output_exact: bool
    skipped: bool = False

    @property
    def agrees(self) -> bool:
        """True when the cycles match exactly and the output equals A·B."""
        return self.skipped or (self.output_exact and self.closed_form_cycles == self.array_cycles)


def validate_array(schedule: Schedule, arch: ArchConfig, max_macs: int = 2_000_000, seed: int = 0) -> list[ArrayCheck]:
    """For every contraction kernel, one GEMM instance (of its g) on random int8 data through the register model."""
    r, c = arch.array.rows, arch.array.cols
    if r > MAX_DIM or c > MAX_DIM:
        raise InputError(f"array.rows, array.cols: the cycle-level model takes arrays up to {MAX_DIM}x{MAX_DIM}, "
                         f"got {r}x{c}; use --set array.rows=... --set array.cols=...")
    rng = np.random.default_rng(seed)
    checks = []
    for kernel in schedule.kernels:
        work = kernel.work
        if not isinstance(work, Contraction):
            continue
        df = kernel.mapping.dataflow
        expected = closed_form_cycles(work.m, work.n, work.k, r, c, df)
        if work.m * work.n * work.k > max_macs:
            checks.append(ArrayCheck(kernel.name, work.m, work.n, work.k, expected, -1, False, skipped=True))
            continue
        a = rng.integers(-128, 128, size=(work.m, work.k))
        b = rng.integers(-128, 128, size=(work.k, work.n))
        run = run_array(a, b, r, c, df)
        checks.append(ArrayCheck(kernel.name, work.m, work.n, work.k, expected, run.cycles,
                                 bool(np.array_equal(run.output, a @ b))))
    return checks


def checks_table(checks: list[ArrayCheck]) -> str:
    """Closed form vs cycle-level cycles per kernel, and a closing count."""
    lines = [f"{'kernel':<24} {'M':>6} {'N':>6} {'K':>6} {'closed form':>12} {'cycle-level':>12}  output"]
    for ch in checks:
        if ch.skipped:
            lines.append(f"{ch.kernel[:24]:<24} {ch.m:>6} {ch.n:>6} {ch.k:>6} {ch.closed_form_cycles:>12,} "
                         f"{'skipped':>12}  (over --max-macs)")
            continue
        lines.append(f"{ch.kernel[:24]:<24} {ch.m:>6} {ch.n:>6} {ch.k:>6} {ch.closed_form_cycles:>12,} "
                     f"{ch.array_cycles:>12,}  {'= A·B' if ch.output_exact else 'WRONG'}")
    ran = [c for c in checks if not c.skipped]
    bad = [c for c in ran if not c.agrees]
    skipped = [c.m * c.n * c.k for c in checks if c.skipped]
    lines.append(f"{len(ran) - len(bad)} agreed, {len(bad)} disagreed, {len(skipped)} skipped"
                 + (f" of {len(checks)} GEMMs: each has more MACs than --max-macs; --max-macs {max(skipped)} checks "
                    "them all (the cycle-level array is slow on large GEMMs)" if skipped else ""))
    return "\n".join(lines) + "\n"
