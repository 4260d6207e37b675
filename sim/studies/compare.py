"""`tilesim compare`: one workload under several fusion policies: cycles, DRAM traffic, energy, and what each fused
group saved against the same ops unfused."""
from __future__ import annotations

from dataclasses import dataclass, replace

from tilesim.arch.config import ArchConfig
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions, Schedule, lower
from tilesim.core.result import SimResult
from tilesim.core.simulate import kernel_evaluator, simulate


@dataclass(frozen=True)
class GroupSaving:
    """A fused kernel and the DRAM bytes its ops moved when each ran alone, minus what it moves fused."""
    kernel: str
    ops: tuple[str, ...]
    unfused_bytes: int
    fused_bytes: int

    @property
    def saved_bytes(self) -> int:
        """Traffic the fusion removed."""
        return self.unfused_bytes - self.fused_bytes


@dataclass(frozen=True)
class Comparison:
    """Results per policy, in the order asked, and the fused groups of each against the unfused run."""
    policies: tuple[str, ...]
    results: tuple[SimResult, ...]
    schedules: tuple[Schedule, ...]
    savings: tuple[tuple[GroupSaving, ...], ...]

    def to_dict(self) -> dict:
        """Per policy: the run's summary keys (docs/design.md section 8), speedup vs none, and the fused groups'
        savings (`tilesim compare -f json`)."""
        ref = self.results[self.policies.index("none")].cycles if "none" in self.policies else None
        out = []
        for policy, r, groups in zip(self.policies, self.results, self.savings, strict=False):
            d = {k: v for k, v in r.to_dict().items() if k != "kernels"}
            d.update(fusion=policy, kernels=len(r.kernels), speedup_vs_none=(ref / r.cycles) if ref else None,
                     fused_groups=[{"kernel": g.kernel, "ops": list(g.ops), "unfused_dram_bytes": g.unfused_bytes,
                                    "fused_dram_bytes": g.fused_bytes, "saved_dram_bytes": g.saved_bytes}
                                   for g in groups])
            out.append(d)
        return {"workload": self.results[0].workload, "arch": self.results[0].arch, "policies": out}


def compare(graph: Graph, arch: ArchConfig, policies: tuple[str, ...], base: CompileOptions) -> Comparison:
    """Lower and simulate `graph` once per policy (plus 'none' as the reference when it is not asked for)."""
    runs = {}
    memo: dict = {}                 # tile commands, shared by the policies' evaluations and runs (one arch)
    evaluate = kernel_evaluator(arch, base.resolved_timing(arch), base.objective, memo=memo)   # kernels recur
    for policy in dict.fromkeys(("none", *tuple(policies))):
        options = replace(base, fusion=policy)
        schedule = lower(graph, arch, options, evaluate)
        runs[policy] = (schedule, simulate(schedule, arch, memo=memo))
    alone = {k.ops[0]: kr.dram_read_bytes + kr.dram_write_bytes
             for k, kr in zip(runs["none"][0].kernels, runs["none"][1].kernels, strict=False)}
    savings = []
    for policy in policies:
        schedule, result = runs[policy]
        savings.append(tuple(GroupSaving(k.name, k.ops, sum(alone.get(o, 0) for o in k.ops),
                                         kr.dram_read_bytes + kr.dram_write_bytes)
                             for k, kr in zip(schedule.kernels, result.kernels, strict=False) if len(k.ops) > 1))
    return Comparison(tuple(policies), tuple(runs[p][1] for p in policies), tuple(runs[p][0] for p in policies),
                      tuple(savings))


__all__ = ["Comparison", "GroupSaving", "compare"]
