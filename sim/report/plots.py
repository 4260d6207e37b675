"""Plots of one run (`tilesim run --plot FILE`, optional extra tilesim[plot]: matplotlib, Agg, no display): the
kernels on the arch's roofline, the energy by component and by kernel, and the engines' utilisation over time.

The roofline and energy plots read the run's JSON mapping (SimResult.to_dict(), or a `run --format json` file), so
`tilesim report` draws them from a saved result; the timeline needs the per-tile times of simulate(timeline=True).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.core.commands import ARRAY, VECTOR, build_program
from tilesim.core.energy import action_counts, by_component, dynamic_energy_pj, static_energy_pj
from tilesim.core.result import SimResult
from tilesim.report.figure import new_figure, require_matplotlib, save
from tilesim.report.figure import plot_kind as named_kind
from tilesim.report.format import energy_unit, joules, pj, sig, time_unit
from tilesim.studies.llm import LLMResult, llm_dict, simulated_steps
from tilesim.studies.op_class import CLASS_LABELS

PLOT_KINDS = ("roofline", "energy", "timeline")
BOUND_COLORS = {"compute": "tab:blue", "memory": "tab:red", "vector": "tab:green"}
ENGINE_COLORS = {"array": "tab:blue", "vector": "tab:green", "dma": "tab:orange"}
LABELLED = 5            # kernels named on the roofline and the timeline
TOP_KERNELS = 12        # bars in the energy-by-kernel panel
TIME_BUCKETS = 200


# ---------------------------------------------------------------- choosing and writing plots

def plot_kind(path: str) -> str:
    """roofline, energy or timeline, read from the file name (e.g. roofline.png, resnet-energy.svg)."""
    return named_kind(path, PLOT_KINDS)


def check_plots(paths: list[str]) -> list[tuple[str, str]]:
    """(kind, path) of each --plot, checked before the run: kind, suffix, folder, matplotlib."""
    plots = [(plot_kind(p), p) for p in paths]
    for _, path in plots:
        if not Path(path).parent.is_dir():
            raise InputError(f"--plot: directory '{Path(path).parent}' does not exist")
    if plots:
        require_matplotlib()
    return plots


def draw(kind: str, result: SimResult, path: str, components: dict | None = None) -> None:
    """Draw one plot kind of a run to `path`; `components` is per-kernel energy by component (optional)."""
    save(run_figure(kind, result, components), path)


def run_figure(kind: str, result: SimResult, components: dict | None = None):
    """The figure of one plot kind for a SimResult."""
    if kind == "timeline":
        return timeline_figure(result)
    d = result.to_dict()
    return roofline_figure(d) if kind == "roofline" else energy_figure(d, components)


def _title(d: dict) -> str:
    """'<workload> on <arch>'."""
    return f"{d.get('workload', '?')} on {d.get('arch', '?')}"


# ---------------------------------------------------------------- roofline

def level_bandwidths(d: dict) -> dict[str, float]:
    """Bytes per cycle of each on-chip level with traffic, recovered from its bytes and bandwidth utilisation."""
    out = {}
    cycles = d.get("cycles") or 0
    for name, t in list(d.get("memory_traffic", {}).items())[1:]:         # the first level is off-chip
        moved, util = t["read_bytes"] + t["write_bytes"], t["bandwidth_utilization"]
        if moved and util and cycles:
            out[name] = moved / (cycles * util)
    return out


def roofline_figure(d: dict):
    """Kernels at (MACs per DRAM byte, attained MACs/cycle) under the compute roof and each level's slope."""
    fig = new_figure(8, 5.5)
    ax = fig.subplots()
    peak, bw = float(d["peak_macs_per_cycle"]), float(d["offchip_bytes_per_cycle"])
    kernels = [k for k in d["kernels"] if k["arithmetic_intensity"] > 0 and k["attained_macs_per_cycle"] > 0]
    xs = [k["arithmetic_intensity"] for k in kernels] + [peak / bw]
    x = np.geomspace(min(xs) / 4, max(xs) * 4, 200)
    ax.plot(x, np.minimum(peak, bw * x), color="black", lw=2,
            label=f"roof: {peak:,.0f} MACs/cycle, off-chip {sig(bw)} B/cycle")
    for (name, level_bw), style in zip(level_bandwidths(d).items(), ("--", ":", "-.", (0, (5, 1))), strict=False):
        ax.plot(x, np.minimum(peak, level_bw * x), color="grey", ls=style, lw=1,
                label=f"{name} ceiling {sig(level_bw)} B/cycle")
    _roofline_points(ax, kernels, d)
    hidden = len(d["kernels"]) - len(kernels)
    notes = ["marker area ~ cycles", "on-chip ceilings drawn at the DRAM intensity"]
    notes += [f"{hidden} kernel{'s' * (hidden != 1)} without MACs or DRAM traffic not shown"] if hidden else []
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (MACs per DRAM byte)",
           ylabel="attained MACs per cycle", xlim=(x[0], x[-1]), ylim=(_low(kernels, peak), peak * 8))
    _label_longest(ax, kernels)
    ax.set_title(f"Roofline: {_title(d)}\n" + "\n".join(textwrap.wrap(f"({'; '.join(notes)})", 95)),
                 fontsize=9)
    ax.legend(loc="best", fontsize=7)
    ax.grid(True, which="both", alpha=0.25)
    return fig


def _low(kernels: list[dict], peak: float) -> float:
    """Bottom of the y axis: below the slowest kernel, at most peak / 100."""
    ys = [k["attained_macs_per_cycle"] for k in kernels]
    return min([*ys, peak / 100]) / 2


def _roofline_points(ax, kernels: list[dict], d: dict) -> None:
    """One marker per kernel (colour: bound, area: cycles), the run as a star, the longest kernels named."""
    longest = max((k["cycles"] for k in kernels), default=1) or 1
    for bound, color in BOUND_COLORS.items():
        ks = [k for k in kernels if k["bound"] == bound]
        if ks:
            ax.scatter([k["arithmetic_intensity"] for k in ks], [k["attained_macs_per_cycle"] for k in ks],
                       s=[15 + 285 * k["cycles"] / longest for k in ks], color=color, alpha=0.6,
                       edgecolors="white", lw=0.5, label=f"{bound}-bound kernels ({len(ks)})", zorder=3)
    traffic = d["dram_read_bytes"] + d["dram_write_bytes"]
    if traffic and d["cycles"] and d["macs"]:
        ax.scatter([d["macs"] / traffic], [d["macs"] / d["cycles"]], marker="*", s=220, color="gold",
                   edgecolors="black", lw=0.8, label="whole run", zorder=4)


def _label_longest(ax, kernels: list[dict]) -> None:
    """Number the longest kernels at their markers and name them in a box at the top left, above the roof's
    slope, where no kernel can be."""
    longest = sorted(kernels, key=lambda k: -k["cycles"])[:LABELLED]
    spots: dict[tuple, list[int]] = {}                 # kernels drawn at the same spot share one label
    for i, k in enumerate(longest, start=1):
        x, y = k["arithmetic_intensity"], k["attained_macs_per_cycle"]
        spots.setdefault((round(math.log10(x), 2), round(math.log10(y), 2)), []).append(i)
    for ranks in spots.values():
        k = longest[ranks[0] - 1]
        ax.annotate(",".join(map(str, ranks)), (k["arithmetic_intensity"], k["attained_macs_per_cycle"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, fontweight="bold")
    if longest:
        names = "\n".join(f"{i}  {kernel_label(k)[:36]} ({k['cycles']:,} cycles)" for i, k in enumerate(longest, 1))
        ax.text(0.02, 0.97, f"longest kernels\n{names}", transform=ax.transAxes, va="top", ha="left", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "lightgrey", "alpha": 0.9})


# ---------------------------------------------------------------- energy

def kernel_components(schedule, arch, result: SimResult) -> dict[str, dict[str, float]]:
    """Per kernel, its energy by component (pJ), recounted from the schedule; leakage is static power x its span,
    split as the run's static_power_mw is (static, static.<component>)."""
    prog = build_program(schedule, arch)
    out = {}
    for kernel, cmds, kr in zip(schedule.kernels, prog.per_kernel, result.kernels, strict=False):
        comp = by_component(dynamic_energy_pj(action_counts(kernel, cmds, arch), arch, kernel.name))
        for key, mw in result.static_power_mw.items():
            static = static_energy_pj(arch, kr.cycles, mw)
            if static:
                comp[key] = static
        out[kr.name] = comp
    return out


def component_colors(names) -> dict[str, str]:
    """A stable colour per energy component (sorted names over tab10, then tab20)."""
    from matplotlib import colormaps  # noqa: PLC0415 (optional dependency)
    names = sorted(names)
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def energy_figure(d: dict, components: dict | None = None):
    """Energy by component (pie) and the kernels that use most (bars, stacked by component when known)."""
    if components is None and d["kernels"] and all("energy_breakdown_pj" in k for k in d["kernels"]):
        components = {k["name"]: k["energy_breakdown_pj"] for k in d["kernels"]}
    fig = new_figure(11, 5)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.5))
    colors = component_colors(d["energy_breakdown_pj"])
    _energy_pie(left, d["energy_breakdown_pj"], colors)
    _energy_bars(right, d["kernels"], components, colors)
    pj_per_mac = d["energy_pj"] / d["macs"] if d.get("macs") else 0.0
    fig.suptitle(f"Energy: {_title(d)}: {joules(d['energy_pj'])}"
                 + (f", {pj(pj_per_mac)}/MAC" if pj_per_mac else ""), fontsize=11)
    return fig


def _energy_pie(ax, breakdown: dict[str, float], colors: dict) -> None:
    """Share of each component (its legend also keys the kernel bars); slices under 5% named there only."""
    items = sorted(((k, v) for k, v in breakdown.items() if v > 0), key=lambda kv: -kv[1])
    if not items:
        ax.text(0.5, 0.5, "no energy recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    total = sum(v for _, v in items)
    wedges, _ = ax.pie([v for _, v in items], colors=[colors[k] for k, _ in items], startangle=90,
                       counterclock=False, wedgeprops={"width": 0.45, "edgecolor": "white"},
                       labels=[k if v / total >= 0.05 else "" for k, v in items], labeldistance=1.08,
                       textprops={"fontsize": 8})
    ax.legend(wedges, [f"{k}: {v / total:.1%} ({joules(v)})" for k, v in items], loc="upper center",
              bbox_to_anchor=(0.5, 0.0), fontsize=7, ncol=2, frameon=False)
    ax.set_title("by component", fontsize=10)


def _energy_bars(ax, kernels: list[dict], components: dict | None, colors: dict) -> None:
    """The TOP_KERNELS kernels using most energy as horizontal bars (the rest summed in the axis label)."""
    ranked = sorted(kernels, key=lambda k: -k["energy_pj"])
    shown, rest = ranked[:TOP_KERNELS], ranked[TOP_KERNELS:]
    factor, unit = energy_unit(max((k["energy_pj"] for k in shown), default=0.0))
    y = np.arange(len(shown))[::-1]
    if components:
        left = np.zeros(len(shown))
        for comp, color in colors.items():
            widths = np.array([components.get(k["name"], {}).get(comp, 0.0) for k in shown]) / factor
            if widths.any():
                ax.barh(y, widths, left=left, color=color, label=comp)
                left += widths
    else:
        ax.barh(y, [k["energy_pj"] / factor for k in shown],
                color=[BOUND_COLORS.get(k["bound"], "lightgrey") for k in shown])
        _bound_legend(ax, {k["bound"] for k in shown})
    ax.set_yticks(y, [kernel_label(k)[:30] for k in shown], fontsize=7)
    total = sum(k["energy_pj"] for k in kernels) or 1.0
    others = sum(k["energy_pj"] for k in rest)
    ax.set_xlabel(f"energy ({unit})" + (f"; {len(rest)} other kernels not shown: {joules(others)} "
                                        f"({others / total:.0%} of the kernels')" if rest else ""))
    key = "colours: components, as in the pie" if components else "colours: the kernel's bound"
    ax.set_title(f"by kernel (top {len(shown)} of {len(kernels)}; {key})", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def kernel_label(k: dict) -> str:
    """A kernel's name, with its phase for decoder LLM results (prefill and decode kernels share names)."""
    return k["name"] + (f" ({k['phase']})" if "phase" in k else "")


def _bound_legend(ax, bounds: set) -> None:
    """Legend patches for the bounds that occur."""
    from matplotlib.patches import Patch  # noqa: PLC0415 (optional dependency)
    handles = [Patch(color=c, label=f"{b}-bound") for b, c in BOUND_COLORS.items() if b in bounds]
    ax.legend(handles=handles, fontsize=7, loc="lower right")


# ---------------------------------------------------------------- timeline

def busy_intervals(result: SimResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(starts, ends) in cycles of the array's and vector unit's tile computes and the DMA channel's transfers."""
    t = result.timeline
    if t is None:
        raise ValueError("simulate(..., timeline=True) keeps the event times a timeline plot needs")
    out = {}
    for name, engine in (("array", ARRAY), ("vector", VECTOR)):
        on = t.engine == engine
        out[name] = (t.compute_start[on], t.compute_end[on])
    # a transfer holds the channel for xfer cycles and lands `latency` cycles later (as in sim/trace.py)
    load_end, store_end = t.load_end - t.latency, t.store_end - t.latency
    ends = np.concatenate((load_end[t.load_xfer > 0], store_end[t.store_xfer > 0]))
    xfer = np.concatenate((t.load_xfer[t.load_xfer > 0], t.store_xfer[t.store_xfer > 0]))
    out["dma"] = (np.maximum(ends - xfer, 0.0), ends)
    return out


def busy_per_bucket(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Busy fraction of each bucket [edges[i], edges[i+1]) covered by the intervals (overlaps add up)."""
    covered = _covered_before(starts, edges) - _covered_before(ends, edges)
    return np.diff(covered) / np.diff(edges)


def _covered_before(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """sum over points p < e of (e - p), for each edge e."""
    p = np.sort(points.astype(np.float64))
    n = np.searchsorted(p, edges, side="left")
    csum = np.concatenate(([0.0], np.cumsum(p)))
    return n * edges - csum[n]


def timeline_figure(result: SimResult, buckets: int = TIME_BUCKETS):
    """Busy fraction of the array, the vector unit and the DMA channel per time bucket, kernels marked."""
    r = result
    edges = np.linspace(0.0, max(r.cycles, 1), buckets + 1)
    scale, unit = time_unit(r.latency_s)
    to_unit = 1.0 / (r.clock_hz * scale)
    fig = new_figure(10, 5.5)
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (name, (starts, ends)) in zip(axes, busy_intervals(r).items(), strict=False):
        busy = busy_per_bucket(starts, ends, edges)
        ax.stairs(busy, edges * to_unit, fill=True, color=ENGINE_COLORS[name], alpha=0.8)
        ax.set_ylim(0, max(1.05, busy.max() * 1.05))
        ax.set_ylabel(f"{name}\nbusy", fontsize=9)
        ax.text(1.0, 1.0, f"{r.engine_busy[name]:.1%} of the run", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=8)
        ax.yaxis.set_major_formatter("{x:.0%}")
        _kernel_marks(ax, r, to_unit)
    _kernel_names(axes[0], r, to_unit)
    axes[-1].set(xlabel=f"time ({unit}); grey lines: kernel boundaries", xlim=(0, edges[-1] * to_unit))
    fig.suptitle(f"Engine utilisation: {r.workload} on {r.arch} ({len(r.kernels)} kernels, {buckets} time buckets)",
                 fontsize=11)
    return fig


def kernel_ends(result: SimResult) -> np.ndarray:
    """Each kernel's end (cycles): the running sum of the kernels' spans."""
    return np.cumsum([k.cycles for k in result.kernels], dtype=np.float64)


def _kernel_marks(ax, result: SimResult, to_unit: float) -> None:
    """A thin grey line at each kernel boundary (fainter when there are many)."""
    ends = kernel_ends(result)[:-1]
    alpha = 0.6 if len(ends) <= 40 else 0.25
    for e in ends:
        ax.axvline(e * to_unit, color="grey", lw=0.5, alpha=alpha)


def _kernel_names(ax, result: SimResult, to_unit: float) -> None:
    """The longest kernels' names above the top panel, centred on their spans."""
    ends = kernel_ends(result)
    starts = ends - [k.cycles for k in result.kernels]
    total = max(ends[-1], 1.0) if len(ends) else 1.0
    longest = sorted(range(len(result.kernels)), key=lambda i: -result.kernels[i].cycles)[:LABELLED]
    for i in longest:
        if result.kernels[i].cycles / total >= 0.02:
            ax.text((starts[i] + ends[i]) / 2 * to_unit, 1.02, result.kernels[i].name[:18], ha="center",
                    va="bottom", fontsize=6, rotation=30, transform=ax.get_xaxis_transform())


# ---------------------------------------------------------------- decoder LLM runs

def draw_llm(kind: str, r: LLMResult, path: str) -> None:
    """Draw one plot kind of a decoder LLM run: the roofline and energy of the prefill's and last decode step's
    kernels (llm_dict), or the engines over the simulated steps."""
    if kind == "timeline":
        fig = steps_timeline_figure([(title, sim) for title, _, sim in simulated_steps(r)], r.phase)
    else:
        d = llm_dict(r)
        d["workload"] = f"{d['workload'].rsplit('.', 1)[0]} {r.phase}"
        fig = roofline_figure(d) if kind == "roofline" else llm_energy_figure(d)
    save(fig, path)


def llm_energy_figure(d: dict):
    """An LLM run's energy: by component (pie), by op class over the whole run (bars with their share of the time
    too), and the kernels of the prefill and last decode step that use most."""
    fig = new_figure(15, 5)
    left, middle, right = fig.subplots(1, 3, width_ratios=(1, 0.9, 1.4))
    colors = component_colors(d["energy_breakdown_pj"])
    _energy_pie(left, d["energy_breakdown_pj"], colors)
    classes = d["op_classes"]["run"]
    names = list(classes)[::-1]
    factor, unit = energy_unit(max((v["energy_pj"] for v in classes.values()), default=0.0))
    time_total = sum(v["time_s"] for v in classes.values()) or 1.0
    bars = middle.barh([CLASS_LABELS.get(c, c) for c in names], [classes[c]["energy_pj"] / factor for c in names],
                       color="tab:purple")
    middle.bar_label(bars, [f"{classes[c]['time_s'] / time_total:.0%} of time" for c in names], fontsize=7,
                     padding=2)
    middle.set(xlabel=f"energy ({unit}), whole run")
    middle.set_title("by op class", fontsize=10)
    middle.grid(True, axis="x", alpha=0.3)
    _energy_bars(right, d["kernels"], None, colors)
    per_token = f", {joules(d['pj_per_token'])}/token" if d.get("pj_per_token") else ""
    fig.suptitle(f"Energy: {_title(d)}: {joules(d['energy_pj'])}{per_token}", fontsize=11)
    return fig


def steps_timeline_figure(parts: list[tuple[str, SimResult]], what: str, buckets: int = TIME_BUCKETS):
    """Busy fraction of the array, the vector unit and the DMA channel over simulated runs drawn back to back (an
    LLM's prefill and sampled decode steps), each run's start marked and named."""
    starts_s = np.cumsum([0.0] + [sim.latency_s for _, sim in parts])
    edges = np.linspace(0.0, max(starts_s[-1], 1e-30), buckets + 1)
    scale, unit = time_unit(starts_s[-1])
    fig = new_figure(10, 5.5)
    axes = fig.subplots(3, 1, sharex=True)
    for ax, name in zip(axes, ENGINE_COLORS, strict=True):
        busy = np.zeros(buckets)
        for (_, sim), at_s in zip(parts, starts_s, strict=False):
            lo, hi = busy_intervals(sim)[name]
            busy += busy_per_bucket(lo / sim.clock_hz + at_s, hi / sim.clock_hz + at_s, edges)
        ax.stairs(busy, edges / scale, fill=True, color=ENGINE_COLORS[name], alpha=0.8)
        ax.set_ylim(0, max(1.05, busy.max() * 1.05))
        ax.set_ylabel(f"{name}\nbusy", fontsize=9)
        ax.yaxis.set_major_formatter("{x:.0%}")
        for at_s in starts_s[1:-1]:
            ax.axvline(at_s / scale, color="black", lw=0.8)
    for (title, _), at_s, end_s in zip(parts, starts_s, starts_s[1:], strict=False):
        axes[0].text((at_s + end_s) / 2 / scale, 0.97, title.split(" (")[0], ha="center", va="top", fontsize=7,
                     transform=axes[0].get_xaxis_transform(), bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    axes[-1].set(xlabel=f"time ({unit}) of the simulated runs, back to back; decode steps between them are "
                        "interpolated, not drawn", xlim=(0, edges[-1] / scale))
    workload = parts[0][1].workload.rsplit(".", 1)[0] if parts else "?"
    fig.suptitle(f"Engine utilisation: {workload} {what} on {parts[0][1].arch if parts else '?'}", fontsize=11)
    return fig


__all__ = [
    "PLOT_KINDS",
    "busy_intervals",
    "busy_per_bucket",
    "check_plots",
    "draw",
    "draw_llm",
    "energy_figure",
    "kernel_components",
    "llm_energy_figure",
    "plot_kind",
    "roofline_figure",
    "run_figure",
    "save",
    "timeline_figure",
]
