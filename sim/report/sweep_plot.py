"""Plots of a sweep's rows (optional extra tilesim[plot]: matplotlib, Agg, no display): a latency/energy Pareto
chart with area as colour, and a heatmap of one metric over the first two grid axes."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError, did_you_mean
from tilesim.report.figure import new_figure, plot_kind, require_matplotlib, save
from tilesim.studies.sweep import HIGHER_IS_BETTER, LLM_METRICS, METRICS, pareto_front

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


def draw(kind: str, rows: list[dict], axes: list[tuple[str, list[str]]], path: str, metric: str) -> None:
    """Draw one plot kind to `path` (written atomically)."""
    fig = pareto_figure(rows, [k for k, _ in axes]) if kind == "pareto" else heatmap_figure(rows, axes, metric)
    save(fig, path, SWEEP_DPI)


def _title(rows: list[dict]) -> str:
    """'<workload> on <arch>' from the rows' settings."""
    return f"{rows[0]['workload']} on {rows[0]['arch']}" if rows else "empty sweep"


def pareto_figure(rows: list[dict], keys: list[str]):
    """Latency vs energy of every ok point, area as colour, the Pareto front drawn and labelled."""
    fig = new_figure(8, 6)
    ax = fig.subplots()
    ok = [r for r in rows if r["status"] == "ok"]
    lat = [float(r["latency_s"]) * 1e3 for r in ok]
    energy = [float(r["energy_pj"]) * 1e-9 for r in ok]      # mJ
    area = [float(r["area_mm2"] or 0) for r in ok]
    if any(area):
        sc = ax.scatter(lat, energy, c=area, cmap="viridis", s=22, alpha=0.8)
        fig.colorbar(sc, ax=ax, label="area (mm²)")
    else:
        ax.scatter(lat, energy, s=22, alpha=0.8, label="design point (no area model)")
    front = pareto_front(rows)
    fx = [float(rows[i]["latency_s"]) * 1e3 for i in front]
    fy = [float(rows[i]["energy_pj"]) * 1e-9 for i in front]
    ax.step(fx, fy, where="post", color="crimson", lw=1.2, zorder=2)
    ax.scatter(fx, fy, s=60, facecolors="none", edgecolors="crimson", lw=1.5, zorder=3,
               label=f"Pareto front ({len(front)} points)")
    if len(front) <= 10:
        for i, x, y in zip(front, fx, fy, strict=False):
            ax.annotate(", ".join(rows[i][k] for k in keys), (x, y), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
    for axis, values in (("x", lat), ("y", energy)):
        if values and min(values) > 0 and max(values) / min(values) > 20:
            getattr(ax, f"set_{axis}scale")("log")
    invalid = len(rows) - len(ok)
    ax.set(xlabel="latency (ms)", ylabel="energy per inference (mJ)",
           title=f"{_title(rows)}: {len(ok)} points" + (f" ({invalid} invalid, not shown)" if invalid else ""))
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def heatmap_grid(rows: list[dict], axes: list[tuple[str, list[str]]], metric: str) -> list[list[float]]:
    """metric[i][j] over the values of the first two axes (best over any other axes; NaN where no ok point)."""
    (ky, vy), (kx, vx) = axes[0], axes[1]
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
