"""`tilesim compare` as a table or JSON: the policies side by side, what each saved by fusion kind (DRAM traffic and
cycles, summing to the difference from the unfused run), and its fused kernels with repeated layers grouped."""
from __future__ import annotations

import json

from tilesim.report.format import byte_size, joules
from tilesim.studies.compare import Comparison


def short_ops(ops: tuple[str, ...]) -> list[str]:
    """Op names without the dotted prefix they all share: layer1.0.conv3, layer1.0.bn3 -> conv3, bn3."""
    parts = [o.split(".") for o in ops]
    n = 0
    while all(len(p) > n + 1 for p in parts) and len({p[n] for p in parts}) == 1:
        n += 1
    return [".".join(p[n:]) for p in parts]


def comparison_table(c: Comparison, top: int = 10) -> str:
    """Policies side by side, then per fusing policy its savings by kind and the `top` layer patterns that saved
    the most traffic."""
    ref_cycles = c.reference.cycles if c.reference else None
    r0 = c.results[0]
    lines = [f"tilesim compare: {r0.workload} on {r0.arch}",
             f"{'fusion':<10} {'kernels':>7} {'cycles':>13} {'speedup':>8} {'DRAM read':>11} {'DRAM write':>11} "
             f"{'energy':>10} {'MBU':>6}"]
    for policy, r in zip(c.policies, c.results, strict=True):
        speed = f"{ref_cycles / r.cycles:.2f}x" if ref_cycles else "-"
        lines.append(f"{policy:<10} {len(r.kernels):>7} {r.cycles:>13,} {speed:>8} {byte_size(r.dram_read_bytes):>11} "
                     f"{byte_size(r.dram_write_bytes):>11} {joules(r.energy_pj):>10} {r.mbu:>6.1%}")
    for i, policy in enumerate(c.policies):
        kinds = c.by_kind(i)
        if not any(b or cy for b, cy in kinds.values()):
            continue
        saved_b, saved_c = sum(b for b, _ in kinds.values()), sum(cy for _, cy in kinds.values())
        lines += ["", f"{policy}: saved {byte_size(saved_b)} of DRAM traffic and {saved_c:,} cycles against none",
                  f"  {'by fusion kind':<16} {'DRAM saved':>15} {'cycles saved':>14}"]
        lines += [f"  {kind:<16} {byte_size(b):>15} {cy:>14,}" for kind, (b, cy) in kinds.items()]
        patterns = c.patterns(i)
        if patterns:
            lines += [f"  the {min(top, len(patterns))} of {len(patterns)} fused layer patterns that saved most:",
                      f"  {'pattern':<26} {'count':>5} {'kind':<9} {'DRAM saved':>10} {'cycles saved':>13}  ops"]
            for p in patterns[:top]:
                lines.append(f"  {p.pattern[:26]:<26} {p.count:>5} {p.kind:<9} {byte_size(p.saved_bytes):>10} "
                             f"{p.saved_cycles:>13,}  {' + '.join(short_ops(p.ops))[:29]}")
    return "\n".join(lines) + "\n"


def comparison_json(c: Comparison) -> str:
    """Comparison.to_dict() as JSON text; NaN or infinity is a bug and raises."""
    return json.dumps(c.to_dict(), indent=2, allow_nan=False) + "\n"
