"""The summary `tilesim sweep` prints: counts, best points and the latency/energy Pareto front."""
from __future__ import annotations

from tilesim.studies.sweep import STATUSES, best_rows, pareto_front

FRONT_SHOWN = 20


def sweep_summary(rows: list[dict], keys: list[str], out_path: str) -> str:
    """Counts, best points and the latency/energy Pareto front, for stdout."""
    count = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    lines = [f"sweep: {len(rows)} points ({count['ok']} ok, {count['invalid']} invalid, {count['error']} failed) "
             f"-> {out_path}"]
    label = lambda r: " ".join(f"{k}={r[k]}" for k in keys)    # noqa: E731
    for metric, r in best_rows(rows).items():
        lines.append(f"  best {metric:<10} {float(r[metric]):.4g}  at {label(r)}")
    front = pareto_front(rows)
    if front:
        lines.append(f"  Pareto front, latency vs energy ({len(front)} points):")
        lines += [f"    {float(rows[i]['latency_s']):.4g} s  {float(rows[i]['energy_pj']) * 1e-12:.4g} J  "
                  f"{_area(rows[i])}  {label(rows[i])}" for i in front[:FRONT_SHOWN]]
        if len(front) > FRONT_SHOWN:
            lines.append(f"    ... {len(front) - FRONT_SHOWN} more")
    return "\n".join(lines) + "\n"


def _area(row: dict) -> str:
    """The row's area, or that the arch has none."""
    return f"{float(row['area_mm2']):.3g} mm²" if row["area_mm2"] and float(row["area_mm2"]) else "area n/a"
