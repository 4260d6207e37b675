"""Plots of a sweep's rows (optional extra tilesim[plot]: matplotlib, Agg, no display): the Pareto front over
latency, energy and area as 2-D projections, and a heatmap of one metric over the first two grid axes."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError, did_you_mean
from tilesim.report.figure import new_figure, plot_kind, require_matplotlib, save
from tilesim.report.format import energy_unit, time_unit
from tilesim.report.sweep_text import METRIC_NAMES
from tilesim.studies.sweep import (
    HIGHER_IS_BETTER,
    LLM_METRICS,
    METRICS,
    PARETO_METRICS,
    best_under_area,
    front_metrics,
    pareto_front,
)

PLOT_KINDS = ("pareto", "heatmap")
SWEEP_DPI = 120


def check_plots(paths: list[str], keys: list[str], metric: str, llm: bool = False) -> list[tuple[str, str]]:
    """(kind, path) of each --plot, checked before the sweep runs; also checks --metric (LLM sweeps also allow
    LLM_METRICS)."""
    allowed = METRICS + LLM_METRICS if llm else METRICS
    if metric not in allowed:
        more = " (ttft_s, tpot_s, tokens_per_s, pj_per_token, ... are for decoder LLM sweeps)" \
            if metric in LLM_METRICS else ""
        raise InputError(f"--metric: got '{metric}'{did_you_mean(metric, allowed)}; allowed: {', '.join(allowed)}"
                         f"{more}")
    plots = [(plot_kind(p, PLOT_KINDS), p) for p in paths]
    for kind, path in plots:
        if not Path(path).parent.is_dir():
            raise InputError(f"--plot: directory '{Path(path).parent}' does not exist")
        if kind == "heatmap" and len(keys) < 2:
            raise InputError(f"--plot {path}: a heatmap needs two --grid axes, got {len(keys)}")
    if plots:
        require_matplotlib()
    return plots


def draw(kind: str, rows: list[dict], axes: list[tuple[str, list[str]]], path: str, metric: str,
         front_metrics: tuple[str, ...] = PARETO_METRICS, area_budget_mm2: float | None = None) -> None:
    """Draw one plot kind to `path` (written atomically)."""
    keys = [k for label, _ in axes for k in label.split(",")]
    fig = pareto_figure(rows, keys, front_metrics, area_budget_mm2) if kind == "pareto" else \
        heatmap_figure(rows, axes, metric)
    save(fig, path, SWEEP_DPI)


def _title(rows: list[dict]) -> str:
    """'<workload> on <arch>' from the rows' settings ('several workloads' when a grid varies them)."""
    if not rows:
        return "empty sweep"
    workloads = {r.get("workload") for r in rows}
    return f"{rows[0]['workload'] if len(workloads) == 1 else 'several workloads'} on {rows[0]['arch']}"


MAX_TICKS = 6           # labelled ticks per axis at most


def metric_scale(metric: str, values: list[float]) -> tuple[float, str]:
    """(factor, axis label) that shows a metric in a readable unit: seconds and pJ by the median value's unit."""
    name = METRIC_NAMES.get(metric, metric)
    mid = sorted(values)[len(values) // 2] if values else 0.0
    if metric.endswith("_s"):
        scale, unit = time_unit(mid)
        return 1 / scale, f"{name} ({unit})"
    if metric.endswith("_pj"):
        scale, unit = energy_unit(mid)
        return 1 / scale, f"{name} ({unit})"
    if metric == "area_mm2":
        return 1.0, f"{name} (mm²)"
    return 1.0, name


def readable_axis(ax, which: str, values: list[float]) -> None:
    """Log scale when the values span more than 20x, with at most MAX_TICKS labelled ticks that cannot overlap:
    decades (LogLocator with a bounded count), plus 2 and 5 times them when fewer than two decades show; minor
    ticks unlabelled. Linear axes keep at most MAX_TICKS ticks (MaxNLocator)."""
    from matplotlib.ticker import (  # noqa: PLC0415 (optional dependency)
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )
    axis = getattr(ax, f"{which}axis")
    positive = [v for v in values if v > 0]
    label = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}")      # 1,000 not 1e+03
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 20:
        getattr(ax, f"set_{which}scale")("log")
        decades = math.log10(max(positive) / min(positive))
        subs = (1.0,) if decades >= 2 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=MAX_TICKS))
        axis.set_major_formatter(label)
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=MAX_TICKS * 2))
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(nbins=MAX_TICKS - 1, min_n_ticks=2))
        axis.set_major_formatter(label)


def pareto_figure(rows: list[dict], keys: list[str], metrics: tuple[str, ...] = PARETO_METRICS,
                  area_budget_mm2: float | None = None):
    """The Pareto front over `metrics` (default latency, energy and area) in 2-D projections, one panel per pair
    (latency-energy, latency-area, energy-area): every ok point in grey, the front's points (non-dominated over all
    the metrics, not only the panel's two) marked and numbered as the summary lists them; with an area budget, its
    line on the area axes and the lowest-energy point within it starred."""
    ok = [r for r in rows if r["status"] == "ok"]
    used = front_metrics(rows, metrics) or ("latency_s", "energy_pj")
    pairs = list(itertools.combinations(used, 2)) or [("latency_s", "energy_pj")]
    fig = new_figure(4.6 * len(pairs) + 0.6, 4.6)
    panels = fig.subplots(1, len(pairs), squeeze=False)[0]
    front = pareto_front(rows, used)
    best = best_under_area(rows, area_budget_mm2) if area_budget_mm2 is not None else None
    for ax, (mx, my) in zip(panels, pairs, strict=True):
        raw = {m: [float(r[m]) for r in ok] for m in (mx, my)}
        (fx, lx), (fy, ly) = metric_scale(mx, raw[mx]), metric_scale(my, raw[my])
        xs, ys = [v * fx for v in raw[mx]], [v * fy for v in raw[my]]
        ax.scatter(xs, ys, s=18, color="0.6", alpha=0.8, label=f"design point ({len(ok)})", zorder=1)
        px = [float(rows[i][mx]) * fx for i in front]
        py = [float(rows[i][my]) * fy for i in front]
        ax.scatter(px, py, s=55, facecolors="none", edgecolors="crimson", lw=1.5, zorder=3,
                   label=f"Pareto front ({len(front)})")
        if len(front) <= 12:
            for n, (x, y) in enumerate(zip(px, py, strict=True), 1):
                ax.annotate(f"#{n}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color="crimson")
        if best is not None:
            ax.scatter([float(best[mx]) * fx], [float(best[my]) * fy], marker="*", s=140, color="tab:blue",
                       zorder=4, label=f"lowest energy within {area_budget_mm2:g} mm²")
        for metric, line in ((mx, ax.axvline), (my, ax.axhline)):
            if metric == "area_mm2" and area_budget_mm2 is not None:
                line(area_budget_mm2, ls="--", lw=1, color="tab:blue", zorder=2, label="area budget")
        readable_axis(ax, "x", xs)
        readable_axis(ax, "y", ys)
        ax.set(xlabel=lx, ylabel=ly)
        ax.margins(0.08)                               # room for the #n labels at the edges
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    invalid = len(rows) - len(ok)
    over = ", ".join(METRIC_NAMES.get(m, m) for m in used)
    fig.suptitle(f"{_title(rows)}: Pareto front over {over}, {len(front)} of {len(ok)} points"
                 + (f" ({invalid} invalid, not shown)" if invalid else "")
                 + (f"\n#n: {', '.join(keys)} as listed by the summary" if front and keys else ""), fontsize=10)
    return fig


def heatmap_grid(rows: list[dict], axes: list[tuple[str, list[str]]], metric: str) -> list[list[float]]:
    """metric[i][j] over the values of the first two axes (best over any other axes; NaN where no ok point)."""
    (ky, vy), (kx, vx) = axes[0], axes[1]
    ky, kx = ky.split(",")[0], kx.split(",")[0]           # a tied axis: its first key's column
    pick = max if metric in HIGHER_IS_BETTER else min
    cells: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["status"] == "ok" and r[metric] != "":
            cells.setdefault((r[ky], r[kx]), []).append(float(r[metric]))
    return [[pick(cells[(a, b)]) if (a, b) in cells else math.nan for b in vx] for a in vy]


def heatmap_figure(rows: list[dict], axes: list[tuple[str, list[str]]], metric: str):
    """A metric over the first two grid axes, values written in the cells when there are few."""
    from matplotlib import colormaps  # noqa: PLC0415 (optional dependency)
    from matplotlib.colors import LogNorm  # noqa: PLC0415 (optional dependency)
    (ky, vy), (kx, vx) = axes[0], axes[1]
    grid = np.array(heatmap_grid(rows, axes, metric), dtype=float)
    fig = new_figure(max(5.0, 0.8 * len(vx) + 3), max(4.0, 0.5 * len(vy) + 2.5))
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    finite = grid[np.isfinite(grid)]
    log = finite.size and finite.min() > 0 and finite.max() / finite.min() > 20
    norm = LogNorm() if log else None
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", origin="lower")
    fig.colorbar(im, ax=ax, label=metric + (" (log scale)" if log else ""))
    ax.set_xticks(range(len(vx)), vx, rotation=45 if len(vx) > 6 else 0)
    ax.set_yticks(range(len(vy)), vy)
    ax.set(xlabel=kx, ylabel=ky)
    others = [k for k, _ in axes[2:]]
    notes = [f"{'max' if metric in HIGHER_IS_BETTER else 'min'} over {', '.join(others)}"] if others else []
    notes += ["grey: no valid point"] if finite.size < grid.size else []
    ax.set_title(f"{metric}: {_title(rows)}" + (f"\n({'; '.join(notes)})" if notes else ""), fontsize=10)
    if grid.size <= 144:
        for (i, j), v in np.ndenumerate(grid):
            if not math.isnan(v):
                shade = im.norm(v)
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="black" if shade > 0.6 else "white")
    return fig


__all__ = ["check_plots", "draw", "heatmap_grid", "pareto_figure"]
