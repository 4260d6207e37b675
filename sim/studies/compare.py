"""`tilesim compare`: one workload under several fusion policies: cycles, DRAM traffic, energy, and what each fused
kernel saved against the same ops unfused, by fusion kind, with repeated layers grouped.

Attribution (exact: the kinds sum to the difference from the unfused run, in DRAM bytes and in cycles). Every
kernel of the unfused run ('none') is claimed by one kernel of the policy: the one holding its op, or, for an op
the policy removed (a transpose read by strided DMA), the kernel that consumes its result. A policy kernel's
saving is what its claimed unfused kernels moved (took) minus what it moves (takes), split in two:
  fusion     claimed unfused kernels - the same kernel with no activation kept on chip (simulated), credited to
             the kernel's kind: attention (a flash-attention kernel), epilogue (a contraction with ops applied as
             it drains), layer (a chain of vector ops, or a transpose turned into its consumer's strided reads),
             unfused (one op alone, whose mapping or overlap with its neighbours changed);
  residency  the kernel with no activation kept on chip - the kernel as run (--fusion full keeps activations on
             chip between kernels, compiler/residency.py).
Cycles are kernel spans (a kernel's end minus the previous kernel's end), which sum to the run's cycles.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial

from tilesim.arch.config import ArchConfig
from tilesim.compiler.attention import AttentionWork
from tilesim.compiler.ir import Graph
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.residency import NONE
from tilesim.compiler.schedule import CompileOptions, Kernel, Schedule, lower
from tilesim.core.result import KernelResult, SimResult
from tilesim.core.simulate import kernel_evaluator, simulate
from tilesim.studies.schedule_store import CommandMemo, lowered

FUSION_KINDS = ("epilogue", "layer", "attention", "residency", "unfused")
LAYER_INDEX = re.compile(r"(?<![^.])(layers?|blocks?|h|encoder|decoder|stage)?\d+(?=\.|$)")   # layer12, encoder.3


@dataclass(frozen=True)
class GroupSaving:
    """A kernel of a policy and the DRAM bytes and cycles of the unfused kernels it replaces, against its own;
    `resident_*`: the same kernel with no activation kept on chip (= fused_* when nothing is)."""
    kernel: str
    ops: tuple[str, ...]
    kind: str
    unfused_bytes: int
    fused_bytes: int
    unfused_cycles: int = 0
    fused_cycles: int = 0
    unkept_bytes: int | None = None
    unkept_cycles: int | None = None

    @property
    def saved_bytes(self) -> int:
        """Traffic the fusion and residency removed."""
        return self.unfused_bytes - self.fused_bytes

    @property
    def saved_cycles(self) -> int:
        """Cycles the fusion and residency removed."""
        return self.unfused_cycles - self.fused_cycles

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """(bytes, cycles) saved by the kernel's fusion kind and by residency."""
        bytes_kept = self.fused_bytes if self.unkept_bytes is None else self.unkept_bytes
        cycles_kept = self.fused_cycles if self.unkept_cycles is None else self.unkept_cycles
        out = {self.kind: (self.unfused_bytes - bytes_kept, self.unfused_cycles - cycles_kept)}
        if bytes_kept != self.fused_bytes or cycles_kept != self.fused_cycles:
            out["residency"] = (bytes_kept - self.fused_bytes, cycles_kept - self.fused_cycles)
        return out


@dataclass(frozen=True)
class PatternSaving:
    """Kernels of one name pattern (repeated layers: layer*.mlp.up) and kind: how many, and what they saved."""
    pattern: str
    kind: str
    count: int
    ops: tuple[str, ...]
    unfused_bytes: int
    fused_bytes: int
    saved_bytes: int
    saved_cycles: int


@dataclass(frozen=True)
class Comparison:
    """Results per policy, in the order asked, and every kernel of each against the unfused run."""
    policies: tuple[str, ...]
    results: tuple[SimResult, ...]
    schedules: tuple[Schedule, ...]
    savings: tuple[tuple[GroupSaving, ...], ...]       # every kernel of the policy (fused or not)
    reference: SimResult | None = None                 # the unfused run the savings are measured against

    def fused(self, i: int) -> tuple[GroupSaving, ...]:
        """The kernels of policy i that fuse several ops (or absorb a removed one)."""
        return tuple(g for g in self.savings[i] if g.kind != "unfused")

    def by_kind(self, i: int) -> dict[str, tuple[int, int]]:
        """(DRAM bytes, cycles) policy i saved against the unfused run, by fusion kind (FUSION_KINDS order; the
        kinds sum to the difference in total DRAM bytes and cycles)."""
        out = dict.fromkeys(FUSION_KINDS, (0, 0))
        for g in self.savings[i]:
            for kind, (b, c) in g.by_kind().items():
                out[kind] = (out[kind][0] + b, out[kind][1] + c)
        return {k: v for k, v in out.items() if v != (0, 0) or k != "unfused"}

    def patterns(self, i: int) -> list[PatternSaving]:
        """Policy i's fused kernels grouped by name pattern and kind, most DRAM bytes saved first."""
        groups: dict[tuple[str, str], list[GroupSaving]] = {}
        for g in self.fused(i):
            groups.setdefault((layer_pattern(g.kernel), g.kind), []).append(g)
        rows = [PatternSaving(p, kind, len(gs), gs[0].ops, sum(g.unfused_bytes for g in gs),
                              sum(g.fused_bytes for g in gs), sum(g.saved_bytes for g in gs),
                              sum(g.saved_cycles for g in gs)) for (p, kind), gs in groups.items()]
        return sorted(rows, key=lambda r: (-r.saved_bytes, -r.saved_cycles, r.pattern))

    def to_dict(self) -> dict:
        """Per policy: the run's summary keys (docs/design.md section 8), speedup vs none, savings by fusion kind,
        the fused kernels grouped by layer pattern, and each fused kernel (`tilesim compare -f json`)."""
        ref = self.reference.cycles if self.reference else None
        out = []
        for i, (policy, r) in enumerate(zip(self.policies, self.results, strict=True)):
            d = {k: v for k, v in r.to_dict().items() if k != "kernels"}
            d.update(fusion=policy, kernels=len(r.kernels), speedup_vs_none=(ref / r.cycles) if ref else None,
                     savings_by_kind={k: {"saved_dram_bytes": b, "saved_cycles": c}
                                      for k, (b, c) in self.by_kind(i).items()},
                     patterns=[{"pattern": p.pattern, "kind": p.kind, "count": p.count, "ops": list(p.ops),
                                "unfused_dram_bytes": p.unfused_bytes, "fused_dram_bytes": p.fused_bytes,
                                "saved_dram_bytes": p.saved_bytes, "saved_cycles": p.saved_cycles}
                               for p in self.patterns(i)],
                     fused_groups=[{"kernel": g.kernel, "ops": list(g.ops), "kind": g.kind,
                                    "unfused_dram_bytes": g.unfused_bytes, "fused_dram_bytes": g.fused_bytes,
                                    "saved_dram_bytes": g.saved_bytes, "saved_cycles": g.saved_cycles}
                                   for g in self.fused(i)])
            out.append(d)
        return {"workload": self.results[0].workload, "arch": self.results[0].arch, "policies": out}


def layer_pattern(name: str) -> str:
    """A kernel name with its layer indices as '*': layer12.mlp.up -> layer*.mlp.up, encoder.3.ffn -> encoder.*.ffn
    (op-role numbers such as conv3 or experts0 stay)."""
    return LAYER_INDEX.sub(lambda m: (m[1] or "") + "*", name)


def fusion_kind(kernel: Kernel, claimed: int) -> str:
    """The fusion a policy kernel does: attention, epilogue (a contraction with ops applied as it drains), layer (a
    vector chain, or a removed transpose read by strided DMA), unfused (one op, one unfused kernel)."""
    if isinstance(kernel.work, AttentionWork):
        return "attention"
    if isinstance(kernel.work, Contraction) and len(kernel.ops) > 1:
        return "epilogue"
    return "layer" if claimed > 1 or len(kernel.ops) > 1 else "unfused"


def claims(graph: Graph, unfused: Schedule, fused: Schedule) -> list[list[int]]:
    """For each fused kernel, the unfused kernels it replaces: those holding its ops, and those whose op it removed
    (the first fused kernel downstream of that op)."""
    owner = {op: i for i, k in enumerate(fused.kernels) for op in k.ops}
    out: list[list[int]] = [[] for _ in fused.kernels]
    for j, k in enumerate(unfused.kernels):
        home = next((owner[o] for o in k.ops if o in owner), None)
        frontier = list(k.ops)
        while home is None and frontier:            # the op is gone: credit its first consumer that remains
            nxt = [s for o in frontier for s in graph.dag.successors(o)]
            home = next((owner[s] for s in nxt if s in owner), None)
            frontier = nxt
        if home is not None:
            out[home].append(j)
    return out


def traffic(k: KernelResult) -> int:
    """A kernel's DRAM bytes, read and written."""
    return k.dram_read_bytes + k.dram_write_bytes


def savings(graph: Graph, arch: ArchConfig, base: tuple[Schedule, SimResult], run: tuple[Schedule, SimResult],
            memo: dict) -> tuple[GroupSaving, ...]:
    """Every kernel of a policy's run against the unfused kernels it replaces (claims), with the residency share
    measured on the same schedule simulated with no activation kept on chip."""
    schedule, result = run
    kept = [k.residency != NONE and not k.residency.from_cache for k in schedule.kernels]
    unkept = None
    if any(kept):
        plain = replace(schedule, kernels=tuple(replace(k, residency=NONE) if keep else k
                                                for k, keep in zip(schedule.kernels, kept, strict=True)))
        unkept = simulate(plain, arch, memo=memo).kernels
    alone = base[1].kernels
    out = []
    for i, (k, kr, claimed) in enumerate(zip(schedule.kernels, result.kernels, claims(graph, base[0], schedule),
                                             strict=True)):
        out.append(GroupSaving(k.name, k.ops, fusion_kind(k, len(claimed)),
                               sum(traffic(alone[j]) for j in claimed), traffic(kr),
                               sum(alone[j].cycles for j in claimed), kr.cycles,
                               traffic(unkept[i]) if unkept else None, unkept[i].cycles if unkept else None))
    return tuple(out)


def compare(graph: Graph, arch: ArchConfig, policies: tuple[str, ...], base: CompileOptions) -> Comparison:
    """Lower (or read from the store of lowered schedules) and simulate `graph` once per policy (plus 'none' as the
    reference when it is not asked for)."""
    runs = {}
    memo: dict = {}                 # tile commands, shared by the policies' evaluations and runs (one arch)
    evaluate = kernel_evaluator(arch, base.resolved_timing(arch), base.objective, memo=memo)   # kernels recur
    for policy in dict.fromkeys(("none", *tuple(policies))):
        options = replace(base, fusion=policy)
        schedule = lowered(partial(lower, graph, arch, options, evaluate), graph, arch, options,
                           commands=CommandMemo(arch, memo))
        runs[policy] = (schedule, simulate(schedule, arch, memo=memo))
    saved = tuple(savings(graph, arch, runs["none"], runs[p], memo) for p in policies)
    return Comparison(tuple(policies), tuple(runs[p][1] for p in policies), tuple(runs[p][0] for p in policies),
                      saved, runs["none"][1])


__all__ = ["FUSION_KINDS", "Comparison", "GroupSaving", "PatternSaving", "compare", "layer_pattern"]
