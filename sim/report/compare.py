"""`tilesim compare` as a table or JSON: the policies side by side and what each fused group saved."""
from __future__ import annotations

import json

from tilesim.report.format import byte_size, joules, mib
from tilesim.studies.compare import Comparison


def short_ops(ops: tuple[str, ...]) -> list[str]:
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
             f"{'fusion':<10} {'kernels':>7} {'cycles':>13} {'speedup':>8} {'DRAM read':>11} {'DRAM write':>11} "
             f"{'energy':>10} {'MBU':>6}"]
    for policy, r, _s in zip(c.policies, c.results, c.schedules, strict=False):
        speed = f"{ref_cycles / r.cycles:.2f}x" if ref_cycles else "-"
        lines.append(f"{policy:<10} {len(r.kernels):>7} {r.cycles:>13,} {speed:>8} {byte_size(r.dram_read_bytes):>11} "
                     f"{byte_size(r.dram_write_bytes):>11} {joules(r.energy_pj):>10} {r.mbu:>6.1%}")
    for policy, groups in zip(c.policies, c.savings, strict=False):
        if not groups:
            continue
        saved = sum(g.saved_bytes for g in groups)
        lines += ["", f"{policy}: {len(groups)} fused kernels saved {mib(saved)} MiB of DRAM traffic; "
                      f"the {min(top, len(groups))} that saved most:"]
        for g in sorted(groups, key=lambda g: -g.saved_bytes)[:top]:
            lines.append(f"  {g.kernel[:28]:<28} {mib(g.unfused_bytes):>9} -> {mib(g.fused_bytes):>8} MiB  "
                         f"{' + '.join(short_ops(g.ops))[:40]}")
    return "\n".join(lines) + "\n"


def comparison_json(c: Comparison) -> str:
    """Comparison.to_dict() as JSON text; NaN or infinity is a bug and raises."""
    return json.dumps(c.to_dict(), indent=2, allow_nan=False) + "\n"
