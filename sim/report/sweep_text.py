"""The summary `tilesim sweep` prints: counts, best points, perf/mm², the best energy under an area budget and the
Pareto front over the chosen metrics (default latency, energy and area), every number in human units."""
from __future__ import annotations

from tilesim.report.format import quantity
from tilesim.studies.sweep import (
    PARETO_METRICS,
    STATUSES,
    best_perf_per_mm2,
    best_rows,
    best_under_area,
    front_metrics,
    pareto_front,
)

FRONT_SHOWN = 20
# how a metric is named and shown for people (others: the column name and 4 significant digits)
METRIC_NAMES = {"latency_s": "latency", "energy_pj": "energy", "area_mm2": "area", "edp": "EDP",
                "perf_per_mm2": "perf/mm²"}


def metric_text(metric: str, value: str | float | None) -> str:
    """A metric's value from a sweep row for people ('4.04 ms', '6.23 mJ', '0.575 mm²'); 'n/a' where missing."""
    return "n/a" if value in (None, "") else quantity(metric, float(value))


def sweep_summary(rows: list[dict], keys: list[str], out_path: str,
                  metrics: tuple[str, ...] = PARETO_METRICS, area_budget_mm2: float | None = None) -> str:
    """Counts, best points, perf/mm², the best energy under the area budget and the Pareto front, for stdout."""
    count = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    lines = [f"sweep: {len(rows)} points ({count['ok']} ok, {count['invalid']} invalid, {count['error']} failed) "
             f"-> {out_path}"]
    label = lambda r: " ".join(f"{k}={r[k]}" for k in keys)    # noqa: E731
    for metric, r in best_rows(rows).items():
        lines.append(f"  best {METRIC_NAMES[metric]:<9} {metric_text(metric, r[metric]):>10}  at {label(r)}")
    dense = best_perf_per_mm2(rows)
    if dense is not None:
        lines.append(f"  best perf/mm² {metric_text('perf_per_mm2', dense['perf_per_mm2'])}  at {label(dense)} "
                     f"({metric_text('area_mm2', dense['area_mm2'])})")
    if area_budget_mm2 is not None:
        fit = best_under_area(rows, area_budget_mm2)
        head = f"  best energy within {area_budget_mm2:g} mm²:"
        lines.append(f"{head} {metric_text('energy_pj', fit['energy_pj'])} at {label(fit)} (latency "
                     f"{metric_text('latency_s', fit['latency_s'])}, area {metric_text('area_mm2', fit['area_mm2'])})"
                     if fit else f"{head} no ok point fits")
    front = pareto_front(rows, metrics)
    used = front_metrics(rows, metrics)
    if front:
        left = [METRIC_NAMES.get(m, m) for m in metrics if m not in used]
        lines.append(f"  Pareto front over {', '.join(METRIC_NAMES.get(m, m) for m in used)} ({len(front)} of "
                     f"{count['ok']} points)" + (f"; {', '.join(left)} left out (not in every row)" if left else "")
                     + ":")
        shown = [*used, *(m for m in ("area_mm2", "perf_per_mm2") if m not in used)]
        cells = [[f"#{n}", *(metric_text(m, rows[i].get(m)) for m in shown), label(rows[i])]
                 for n, i in enumerate(front[:FRONT_SHOWN], 1)]
        header = ["", *(METRIC_NAMES.get(m, m) for m in shown), "point"]
        widths = [max(len(c[j]) for c in [header, *cells]) for j in range(len(header) - 1)]
        for cols in [header, *cells]:
            lines.append("    " + "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=False)) + "  " + cols[-1])
        if len(front) > FRONT_SHOWN:
            lines.append(f"    ... {len(front) - FRONT_SHOWN} more")
    return "\n".join(lines) + "\n"
