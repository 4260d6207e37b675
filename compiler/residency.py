"""Layer fusion across kernels (--fusion full): activations kept in an on-chip level between the kernels.

A level's `resident_fraction` caps how much of it kept activations may take; each kernel's tiles get the rest of
the level at that point (the bytes live while it runs, rounded up to 1/16 of the level so searches are shared).
Walking the kernels in order, a kernel's output stays on chip when it fits beside the tensors already kept and is
not a graph output; its consumers then read it from SRAM, and it is dropped after its last consumer. Nothing is
ever evicted early, so a kept tensor never needs writing back. Weights and graph inputs always come from DRAM.
"""
from __future__ import annotations

from dataclasses import dataclass

from arch.config import ArchConfig

from .fusion import KernelSpec
from .ir import Graph


@dataclass(frozen=True)
class Residency:
    """Which of a kernel's DRAM transfers an on-chip copy replaces: operands A and B of a contraction (attention:
    Q; K and V), bytes of other inputs (residuals, vector inputs), and its output's store."""
    a: bool = False
    b: bool = False
    extra_bytes: int = 0
    out: bool = False


NONE = Residency()


def resident_budget(arch: ArchConfig) -> int:
    """Bytes the activation level reserves for kept tensors (once per core unless the level is shared)."""
    level = arch.home("input")
    return level.resident_bytes * (1 if level.shared else arch.cores)


def keep_on_chip(specs: list[KernelSpec], graph: Graph, arch: ArchConfig) -> tuple[list[Residency], list[int]]:
    """For each kernel, which reads and which output stay on chip, and the bytes kept on chip while it runs (its
    tiles get the rest of the level)."""
    budget = resident_budget(arch)
    if budget == 0:
        return [NONE] * len(specs), [0] * len(specs)
    size = {name: t.nbytes for name, t in graph.tensors.items()}
    remaining: dict[str, int] = {}
    for k in specs:
        for t in {t for t, _ in k.reads}:
            remaining[t] = remaining.get(t, 0) + 1
    outputs = set(graph.outputs)
    live: dict[str, int] = {}
    plan, held = [], []
    for k in specs:
        by_role: dict[str, list[str]] = {}
        for t, role in k.reads:
            by_role.setdefault(role, []).append(t)
        a = bool(by_role.get("a")) and all(t in live for t in by_role["a"])
        b = bool(by_role.get("b")) and all(t in live for t in by_role["b"])
        extra = sum(size[t] for t in by_role.get("extra", []) if t in live)
        # the output is written while this kernel's inputs are still on chip: it must fit beside them
        out = (k.output not in outputs and remaining.get(k.output, 0) > 0
               and sum(live.values()) + size[k.output] <= budget)
        if out:
            live[k.output] = size[k.output]
        held.append(sum(live.values()))
        for t in {t for t, _ in k.reads}:
            remaining[t] -= 1
            if remaining[t] == 0:
                live.pop(t, None)
        plan.append(Residency(a, b, extra, out))
    return plan, held
