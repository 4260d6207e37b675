"""`tilesim compare`: one workload under several fusion policies: cycles, DRAM traffic, energy, and what each fused
group saved against the same ops unfused."""
from __future__ import annotations

import json
from dataclasses import dataclass

from tilesim.arch.config import ArchConfig
from tilesim.compiler.fusion import POLICIES
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


def compare(graph: Graph, arch: ArchConfig, policies: tuple[str, ...], base: CompileOptions) -> Comparison:
    """Lower and simulate `graph` once per policy (plus 'none' as the reference when it is not asked for)."""
    from dataclasses import replace
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


def _mib(x: float) -> str:
    return f"{x / 2**20:.2f}"


def _short(ops: tuple[str, ...]) -> list[str]:
    """Op names without the dotted prefix they all share: layer1.0.conv3, layer1.0.bn3 -> conv3, bn3."""
    parts = [o.split(".") for o in ops]
    n = 0
    while all(len(p) > n + 1 for p in parts) and len({p[n] for p in parts}) == 1:
        n += 1
    return [".".join(p[n:]) for p in parts]


def comparison_table(c: Comparison, top: int = 10) -> str:
    """Policies side by side, then the groups that saved the most traffic under each fusing policy."""
    base = c.results[c.policies.index("none")] if "none" in c.policies else None
    ref_cycles = base.cycles if base else None
    r0 = c.results[0]
    lines = [f"tilesim compare: {r0.workload} on {r0.arch}",
             f"{'fusion':<10} {'kernels':>7} {'cycles':>13} {'speedup':>8} {'DRAM rd MiB':>12} {'DRAM wr MiB':>12} "
             f"{'energy mJ':>10} {'MBU':>6}"]
    for policy, r, _s in zip(c.policies, c.results, c.schedules, strict=False):
        speed = f"{ref_cycles / r.cycles:.2f}x" if ref_cycles else "-"
        lines.append(f"{policy:<10} {len(r.kernels):>7} {r.cycles:>13,} {speed:>8} {_mib(r.dram_read_bytes):>12} "
                     f"{_mib(r.dram_write_bytes):>12} {r.energy_pj * 1e-9:>10.4g} {r.mbu:>6.1%}")
    for policy, groups in zip(c.policies, c.savings, strict=False):
        if not groups:
            continue
        saved = sum(g.saved_bytes for g in groups)
        lines += ["", f"{policy}: {len(groups)} fused kernels saved {_mib(saved)} MiB of DRAM traffic; "
                      f"the {min(top, len(groups))} that saved most:"]
        for g in sorted(groups, key=lambda g: -g.saved_bytes)[:top]:
            lines.append(f"  {g.kernel[:28]:<28} {_mib(g.unfused_bytes):>9} -> {_mib(g.fused_bytes):>8} MiB  "
                         f"{' + '.join(_short(g.ops))[:40]}")
    return "\n".join(lines) + "\n"


def comparison_json(c: Comparison) -> str:
    """Per policy: the run's summary keys (DESIGN.md section 6), speedup vs none, and the fused groups' savings."""
    ref = c.results[c.policies.index("none")].cycles if "none" in c.policies else None
    out = []
    for policy, r, groups in zip(c.policies, c.results, c.savings, strict=False):
        d = {k: v for k, v in r.to_dict().items() if k != "kernels"}
        d.update(fusion=policy, kernels=len(r.kernels), speedup_vs_none=(ref / r.cycles) if ref else None,
                 fused_groups=[{"kernel": g.kernel, "ops": list(g.ops), "unfused_dram_bytes": g.unfused_bytes,
                                    "fused_dram_bytes": g.fused_bytes, "saved_dram_bytes": g.saved_bytes}
                               for g in groups])
        out.append(d)
    return json.dumps({"workload": c.results[0].workload, "arch": c.results[0].arch, "policies": out},
                      indent=2, allow_nan=False) + "\n"


__all__ = ["POLICIES", "compare", "comparison_json", "comparison_table"]
