"""Reports of `tilesim serve`: a table, JSON, one CSV row per request, a figure (latency CDFs, batch and KV occupancy
over time) and a Chrome/Perfetto trace (one track per request: queued, prefill, decode; counters for the batch,
the KV cache and the queue)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.report.figure import PLOT_SUFFIXES, new_figure, require_matplotlib, save
from tilesim.report.format import byte_size, percent, si
from tilesim.studies.serve import RateSweep, ServeResult
from tilesim.studies.serve_sweep import ServeGrid

CSV_COLUMNS = ("id", "arrival_s", "prompt_tokens", "output_tokens", "prefix_id", "status", "queue_s", "ttft_s",
               "tpot_s", "e2e_s", "finish_s", "preemptions", "cache_hit_tokens", "energy_j", "j_per_token", "slo_met",
               "reason")


def _ms(x: float | None) -> str:
    """Seconds as milliseconds text ('-' for None)."""
    return "-" if x is None else f"{x * 1e3:.3f}"


def serve_table(result: ServeResult) -> str:
    """The summary as aligned text."""
    s = result.summary
    lines = [f"serve {result.workload} on {result.arch}: {s['scheduler']} scheduler, max batch {s['max_batch']}, "
             f"max tokens/step {s['max_tokens']}, KV cache {s['kv_blocks']} blocks x {s['block_size']} tokens",
             f"requests        {s['served']} served, {s['refused']} refused, {s['steps']} steps over "
             f"{s['duration_s']:.3f} s ({s['busy_s']:.3f} s busy; {result.simulations} graph simulations)",
             "", f"{'latency (ms)':<14}{'p50':>12}{'p90':>12}{'p99':>12}{'mean':>12}"]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end")):
        p = s[key]
        lines.append(f"{label:<14}" + "".join(f"{_ms(p[k]):>12}" for k in ("p50", "p90", "p99", "mean")))
    slo = [f"TTFT <= {_ms(s['slo_ttft_s'])} ms" if s["slo_ttft_s"] else "",
           f"TPOT <= {_ms(s['slo_tpot_s'])} ms" if s["slo_tpot_s"] else ""]
    slo_text = " and ".join(x for x in slo if x) or "no SLO given"
    lines += ["",
              f"throughput      {s['throughput_tokens_per_s']:.1f} output tokens/s, "
              f"{s['throughput_requests_per_s']:.3f} requests/s",
              f"goodput         {s['goodput_requests_per_s']:.3f} requests/s ({slo_text}; "
              f"{percent(s['slo_attainment'])} of requests)",
              f"batch           mean {s['mean_batch']:.1f} (time-weighted), max {s['max_batch_seen']}",
              f"KV occupancy    mean {percent(s['mean_kv_occupancy'])}, max {percent(s['max_kv_occupancy'])}",
              f"in system       mean {s['mean_in_system']:.2f} requests (Little: L = lambda W)",
              f"preemptions     {s['preemptions']} ({s['preemption']}"
              + (f"; {byte_size(s['swapped_bytes'])} copied to and from host)" if s["swapped_bytes"] else ")"),
              f"prefix cache    {percent(s['prefix_hit_rate'])} of prefill tokens found cached",
              f"energy          {si(s['energy_j'], 'J')} ({si(s['idle_energy_j'], 'J')} static while idle at "
              f"{si(s['static_power_w'], 'W')}), {si(s['j_per_output_token'], 'J')} per output token",
              f"J/token         per request (prompt + output): p50 {si(s['j_per_token']['p50'] or 0, 'J')}, "
              f"p99 {si(s['j_per_token']['p99'] or 0, 'J')}"]
    lines += placement_lines(s)
    refused = [r for r in result.rows if r["status"] == "refused"]
    for r in refused[:5]:
        lines.append(f"refused         request {r['id']}: {r['reason']}")
    if len(refused) > 5:
        lines.append(f"refused         ... and {len(refused) - 5} more (see -f csv)")
    return "\n".join(lines) + "\n"


def placement_lines(s: dict) -> list[str]:
    """Where it ran, when not one chip: the tensor-parallel group, or both disaggregated groups and the link."""
    place, d = s.get("placement") or {}, s.get("disaggregation")
    if d is not None:
        out = []
        for name, g in d["groups"].items():
            out.append(f"{name + ' group':<16}{g['chips']} chip(s): {g['steps']} steps, busy "
                       f"{percent(g['utilization'])}, mean batch {g['mean_batch']:.1f}, max KV "
                       f"{percent(g['max_kv_occupancy'])}, {si(g['energy_j'], 'J')}")
        t = d["kv_transfer_s"]
        out.append(f"KV transfers    {d['kv_transfers']} over {d['link']} ({d['link_bandwidth_gb_s']:g} GB/s, "
                   f"{d['link_latency_us']:g} us): {byte_size(d['kv_transfer_bytes'])}, p50 {_ms(t['p50'])} ms, "
                   f"p99 {_ms(t['p99'])} ms on the link; ready p99 {_ms(d['kv_ready_after_prefill_s']['p99'])} ms "
                   f"after prefill; {si(d['link_energy_j'], 'J')}")
        return out
    if place.get("system"):
        return [f"system          {place['system']}: tensor-parallel over {place['tp']} chip(s)"]
    return []


def serve_json(result: ServeResult) -> str:
    """The summary, per-request rows and step timeline as JSON."""
    return json.dumps(result.to_dict(), indent=2) + "\n"


def serve_csv(result: ServeResult) -> str:
    """One row per request (refused ones with their reason)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in result.rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k, "")) for k in CSV_COLUMNS})
    return buf.getvalue()


def serve_report(result: ServeResult, fmt: str) -> str:
    """The report in a format: table, json or csv."""
    return {"table": serve_table, "json": serve_json, "csv": serve_csv}[fmt](result)


def trace_events(result: ServeResult) -> list[dict]:
    """Chrome trace events: a track per served request (queued, prefill until the first token, disaggregated: the KV
    transfer until the decode group has the cache, decode) and counter tracks of batch size, KV blocks in use and
    requests in the system; microseconds."""
    us = 1e6
    events = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0,
               "args": {"name": f"tilesim serve: {result.workload} on {result.arch}"}}]
    sent = {t.rid: t.end_s for t in result.run.extra.get("transfers", ())}
    for r in result.rows:
        if r["status"] != "served":
            continue
        tid = r["id"] + 1
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": f"request {r['id']}"}})
        start, first = r["arrival_s"] + r["queue_s"], r["arrival_s"] + r["ttft_s"]
        arrived = sent.get(r["id"], first)
        for name, a, b in (("queued", r["arrival_s"], start), ("prefill", start, first),
                           ("kv transfer", first, arrived), ("decode", arrived, r["finish_s"])):
            if b > a:
                events.append({"name": name, "ph": "X", "pid": 1, "tid": tid, "ts": a * us, "dur": (b - a) * us,
                               "args": {"prompt_tokens": r["prompt_tokens"], "output_tokens": r["output_tokens"]}})
    for s in result.run.steps:
        events.append({"name": "serving", "ph": "C", "pid": 1, "ts": s.start_s * us,
                       "args": {"batch": s.sequences, "kv_blocks": s.kv_blocks_used, "in_system": s.in_system}})
    return events


def serve_trace_json(result: ServeResult) -> str:
    """The Perfetto trace as JSON text."""
    return json.dumps({"traceEvents": trace_events(result), "displayTimeUnit": "ms"}) + "\n"


def check_plot(path: str | None) -> None:
    """A figure's suffix and matplotlib, checked before the run."""
    if path is not None:
        if Path(path).suffix.lower() not in PLOT_SUFFIXES:
            raise InputError(f"--plot {path}: the file must end in {', '.join(PLOT_SUFFIXES)}")
        require_matplotlib()


def serve_figure(result: ServeResult):
    """Latency CDFs (TTFT, TPOT, end-to-end) beside batch size and KV occupancy over time."""
    fig = new_figure(11, 4)
    cdf, timeline = fig.subplots(1, 2)
    served = [r for r in result.rows if r["status"] == "served"]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end")):
        xs = np.sort([r[key] for r in served if r[key] is not None])
        if len(xs):
            cdf.step(xs * 1e3, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("share of requests")
    cdf.legend()
    steps = result.run.steps
    t = np.array([s.start_s for s in steps])
    timeline.step(t, [s.sequences for s in steps], where="post", label="batch (sequences)")
    timeline.set_xlabel("time (s)")
    timeline.set_ylabel("sequences per step")
    kv = timeline.twinx()
    kv.step(t, [s.kv_blocks_used / result.run.config.kv_blocks for s in steps], where="post", color="tab:red",
            label="KV occupancy")
    kv.set_ylabel("KV cache occupancy")
    kv.set_ylim(0, 1.05)
    fig.suptitle(f"{result.workload} on {result.arch}, {result.summary['scheduler']} scheduler")
    return fig


def draw_serve(result: ServeResult, path: str) -> None:
    """Write the figure to `path` (whole or not at all)."""
    save(serve_figure(result), path)


RATE_COLUMNS = (("rate", "rate/s", "{:.3g}"), ("served", "served", "{}"), ("ttft_p99_ms", "TTFT p99 ms", "{:.2f}"),
                ("tpot_p99_ms", "TPOT p99 ms", "{:.3f}"), ("e2e_p50_ms", "e2e p50 ms", "{:.1f}"),
                ("throughput_tokens_per_s", "tokens/s", "{:.1f}"), ("goodput_requests_per_s", "goodput/s", "{:.3f}"),
                ("slo_attainment", "SLO met", "{:.1%}"), ("mean_batch", "batch", "{:.1f}"),
                ("preemptions", "preempt", "{}"), ("j_per_output_token", "J/token", "{:.3g}"))


def summary_row(s: dict) -> dict:
    """A served stream's summary as the sweep tables' metric columns."""
    ms = lambda d, k: (d[k] or 0.0) * 1e3    # noqa: E731
    return {"served": s["served"], "ttft_p99_ms": ms(s["ttft_s"], "p99"),
            "tpot_p99_ms": ms(s["tpot_s"], "p99"), "e2e_p50_ms": ms(s["e2e_s"], "p50"),
            "throughput_tokens_per_s": s["throughput_tokens_per_s"],
            "goodput_requests_per_s": s["goodput_requests_per_s"], "slo_attainment": s["slo_attainment"],
            "mean_batch": s["mean_batch"], "preemptions": s["preemptions"],
            "j_per_output_token": s["j_per_output_token"]}


def rate_rows(sweep: RateSweep) -> list[dict]:
    """One flat row per rate: the sweep table's columns."""
    return [{"rate": rate} | summary_row(r.summary) for rate, r in zip(sweep.rates, sweep.results, strict=True)]


def aligned(columns: list[tuple[str, str, str]], rows: list[dict]) -> list[str]:
    """A header and one line per row, right-aligned columns (key, heading, format)."""
    cells = [[f.format(row[k]) for k, _, f in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h, _) in enumerate(columns)]
    return ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths, strict=True))] + \
        ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]


def csv_text(columns: list[str], rows: list[dict]) -> str:
    """Rows as CSV with a header."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def grid_report(grid: ServeGrid, fmt: str) -> str:
    """A serving grid as a table (a row per point, or per point and rate, then each point's knee and the best), JSON
    or CSV (the table's rows)."""
    if fmt == "json":
        return json.dumps(grid.to_dict(), indent=2) + "\n"
    rated = grid.points[0].sweep is not None
    rows = []
    for p in grid.points:
        if p.sweep is not None:
            rows += [p.settings | row for row in rate_rows(p.sweep)]
        else:
            rows.append(p.settings | summary_row(p.result.summary))
    metrics = [c for c in RATE_COLUMNS if rated or c[0] != "rate"]
    if fmt == "csv":
        return csv_text([*grid.axes, *(k for k, _, _ in metrics)], rows)
    columns = [(a, a, "{}") for a in grid.axes] + metrics
    first = grid.points[0].sweep.results[0] if rated else grid.points[0].result
    lines = [f"serve {grid.workload} on {grid.arch}: {len(grid.points)} grid points over {', '.join(grid.axes)}, "
             f"{first.summary['requests']} requests each" + (" per rate" if rated else ""), *aligned(columns, rows)]
    if rated:
        s = first.summary
        if s["slo_ttft_s"] is None and s["slo_tpot_s"] is None:
            lines.append("knee: give --slo-ttft and/or --slo-tpot to find the highest rate that meets them")
        else:
            for p in grid.points:
                where = " ".join(f"{k}={v}" for k, v in p.settings.items())
                knee = f"{p.sweep.knee_rate:g} requests/s" if p.sweep.knee_rate is not None else "none"
                lines.append(f"knee at {where}: {knee}")
            best = grid.best
            lines.append("best: " + (" ".join(f"{k}={v}" for k, v in best.settings.items()) +
                                     f" sustains {best.sweep.knee_rate:g} requests/s with {best.sweep.share:.0%} "
                                     "within the SLOs" if best is not None else "no point meets the SLOs"))
    return "\n".join(lines) + "\n"


def rates_report(sweep: RateSweep, fmt: str) -> str:
    """A rate sweep as a table (with its knee), JSON, or CSV (one row per rate)."""
    if fmt == "json":
        return json.dumps(sweep.to_dict(), indent=2) + "\n"
    rows = rate_rows(sweep)
    if fmt == "csv":
        return csv_text([k for k, _, _ in RATE_COLUMNS], rows)
    first = sweep.results[0]
    lines = [f"serve {first.workload} on {first.arch}, {first.summary['scheduler']} scheduler: "
             f"{first.summary['requests']} generated requests per rate", *aligned(list(RATE_COLUMNS), rows)]
    s = first.summary
    if s["slo_ttft_s"] is None and s["slo_tpot_s"] is None:
        lines.append("knee: give --slo-ttft and/or --slo-tpot to find the highest rate that meets them")
    elif sweep.knee_rate is None:
        lines.append(f"knee: no rate swept has {sweep.share:.0%} of its requests within the SLOs")
    else:
        lines.append(f"knee: {sweep.knee_rate:g} requests/s, the highest rate swept with {sweep.share:.0%} of its "
                     "requests within the SLOs")
    return "\n".join(lines) + "\n"
