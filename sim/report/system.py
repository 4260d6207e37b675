"""A decoder LLM run on a system of chips (sim/studies/system.py) as a table, JSON or a Perfetto trace."""
from __future__ import annotations

import json

from tilesim.report.format import GIB, si
from tilesim.studies.system import (
    LayoutPoint,
    SystemResult,
    link_utilization,
    system_dict,
    training_activation_peak_bytes,
    training_stash,
)
from tilesim.studies.system_sweep import LAYOUT_COLUMNS, system_metrics


def system_json(r: SystemResult) -> str:
    """The JSON text (NaN or infinity is a bug and raises)."""
    return json.dumps(system_dict(r), indent=2, allow_nan=False) + "\n"


def system_table(r: SystemResult) -> str:
    """A readable summary (at most 100 columns)."""
    o, sysm = r.options, r.system
    net = f" + {sysm.network.name} between nodes of {sysm.chips_per_node}" if sysm.network else ""
    lines = [f"tilesim: {r.model} on {sysm.name} ({sysm.chips}x {sysm.chip.name}, {sysm.topology}, "
             f"{sysm.link.name}{net}), {r.phase}, batch {r.batch} per replica",
             f"  layout    tp {o.tp} x pp {o.pp} x ep {o.ep} x dp {o.dp} = {o.chips} chips; {o.micro_batches} "
             f"micro-batch(es), schedule {o.pipeline_schedule}"
             + (f", {o.virtual_stages} virtual stages" if o.virtual_stages > 1 else "")
             + (", sequence parallel" if o.sequence_parallel else "")]
    if o.pp > 1:
        stash = training_stash(o.pipeline_schedule, o.pp, o.micro_batches, o.virtual_stages)
        lines.append(f"  training  a step under {o.pipeline_schedule} would stash {stash:g} micro-batches, "
                     f"{training_activation_peak_bytes(r) / GIB:.2f} GiB of activations on stage 0")
    for name, p in (("prefill", r.prefill), ("decode", r.decode)):
        if not p:
            continue
        head = f"TTFT {si(p.time_s, 's')}" if name == "prefill" else \
            f"TPOT {si(r.tpot_s, 's')}, {r.tokens_per_s:,.1f} tokens/s"
        lines.append(f"  {name:<9} {head}, {si(p.energy_pj * 1e-12 / p.tokens, 'J')}/token, bubble "
                     f"{p.bubble:.1%}")
        lines.append(f"            comm {si(p.comm_s, 's')} ({p.comm_s / p.time_s:.1%} of the time), links "
                     f"{si(p.link_pj * 1e-12, 'J')}, link util. {link_utilization(r, p):.2%}, idle static "
                     + (f"{si(p.idle_static_pj * 1e-12, 'J')}" if p.idle_static_pj is not None else
                        "n/m"))
    lines.append(f"  per chip  {'stage':>5} {'weights':>9} {'KV':>9} {'activ.':>9} {'prefill':>10} {'decode':>10}")
    for s in r.stages:
        lines.append(f"            {s.stage.index:>5} {s.weight_bytes / GIB:>7.2f}Gi {s.kv_bytes / GIB:>7.3f}Gi "
                     f"{s.activation_bytes / GIB:>7.3f}Gi {si(s.prefill_s, 's'):>10} {si(s.decode_s, 's'):>10}")
    lines.append(f"  total     {si(r.latency_s, 's')}, {si(r.energy_pj * 1e-12, 'J')} for {r.tokens:,} tokens "
                 f"({si(r.energy_pj * 1e-12 / r.tokens, 'J')}/token with "
                 + ("links and all chips' static power)" if r.static_w is not None else
                    "links; static not modelled)"))
    return "\n".join(lines) + "\n"


def system_trace(r: SystemResult) -> str:
    """A Chrome/Perfetto trace of one prefill (or decode round): a track per used chip with its micro-batches'
    compute, and a track per chip's links with its collectives and pipeline sends (times from the closed forms)."""
    o = r.options
    kind = "prefill" if r.prefill else "decode"
    events: list[dict] = []
    m, v, p = o.micro_batches, o.virtual_stages, o.pp
    compute = [(s.prefill_s if kind == "prefill" else s.decode_s) / v for s in r.stages]
    comm = [sum(c.time_s for c in (s.prefill_comm if kind == "prefill" else s.decode_comm).values()) / v
            for s in r.stages]
    chunk = [a + b for a, b in zip(compute, comm, strict=True)]
    free = [0.0] * p                                  # when each stage is next free
    for mb in range(m):
        ready = 0.0
        for c in range(v):
            for s in range(p):
                start = max(free[s], ready)
                for t in range(o.tp):
                    chip = t + o.tp * o.ep * s
                    events.append({"name": f"mb{mb} chunk{c}", "ph": "X", "pid": 1, "tid": chip,
                                   "ts": start * 1e6, "dur": compute[s] * 1e6})
                    if comm[s]:
                        events.append({"name": f"mb{mb} collectives", "ph": "X", "pid": 2, "tid": chip,
                                       "ts": (start + compute[s]) * 1e6, "dur": comm[s] * 1e6})
                free[s] = ready = start + chunk[s]
    names = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "chips (compute)"}},
             {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "links (collectives)"}}]
    for s in range(p):
        for t in range(o.tp):
            chip = t + o.tp * o.ep * s
            for pid in (1, 2):
                names.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": chip,
                              "args": {"name": f"chip {chip} (stage {s}, tp {t})"}})
    return json.dumps({"traceEvents": names + events, "displayTimeUnit": "ns"}, allow_nan=False) + "\n"


def layout_rows(points: list[LayoutPoint]) -> list[dict]:
    """One row per layout: its settings, status (ok or invalid with the reason) and the system figures
    (studies/system_sweep.py system_metrics)."""
    rows = []
    for lp in points:
        row = dict(lp.point, status="ok" if lp.result else "invalid", reason=lp.reason)
        if lp.result:
            row.update(system_metrics(lp.result))
        rows.append(row)
    return rows


def layout_table(points: list[LayoutPoint]) -> str:
    """The layouts as a text table (rows_table)."""
    return rows_table(list(dict(points[0].point)) if points else [], layout_rows(points))


def rows_table(keys: list[str], rows: list[dict]) -> str:
    """Layout or system-sweep rows (numbers or CSV text) as a text table (at most 100 columns; rows that did not
    run with their reason cut short)."""
    head = " ".join(f"{k[-8:]:>8}" for k in keys) + f" {'TTFT':>9} {'TPOT':>9} {'tok/s':>8} {'J/tok':>7} {'comm':>6}" \
        f" {'bubble':>6} {'GiB/chip':>8}"
    lines = [head]
    for row in rows:
        cells = " ".join(f"{str(row[k])[:8]:>8}" for k in keys)
        if row["status"] != "ok":
            lines.append(f"{cells}  -- {row['status']}: {row['reason']}"[:100])
            continue
        v = {k: float(row[k]) for k in LAYOUT_COLUMNS}
        ttft, tpot = (si(v[k], "s") if v[k] else "-" for k in ("ttft_s", "tpot_s"))
        lines.append(f"{cells} {ttft:>9} {tpot:>9} {v['tokens_per_s']:>8,.0f} {v['j_per_token']:>7.3g} "
                     f"{v['comm_share']:>6.1%} {v['bubble']:>6.1%} {v['max_memory_bytes'] / GIB:>8.1f}")
    return "\n".join(lines) + "\n"
