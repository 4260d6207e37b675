"""A decoder LLM run on a system of chips (sim/studies/system.py) as a table, JSON or a Perfetto trace."""
from __future__ import annotations

import json

from tilesim.report.format import GIB, si, sig
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


def link_ports(r: SystemResult, chip: int) -> list[tuple[int, str, str]]:
    """(track id, kind, name) of a chip's links: its `link` port (to the switch, or its ring/torus neighbour links
    taken together) and, on a hierarchical system, its `network` port."""
    sysm = r.system
    where = {"switch": "switch port", "hierarchical": "node switch port"}.get(sysm.topology, "neighbour links")
    ports = [(2 * chip, "link", f"chip {chip} {where} ({sysm.link.name})")]
    if sysm.network:
        ports.append((2 * chip + 1, "network", f"chip {chip} network port ({sysm.network.name})"))
    return ports


def system_trace(r: SystemResult) -> str:
    """A Chrome/Perfetto trace of one prefill (or decode round): a track per used chip (pid 1) with its
    micro-batches' compute, and a track per link port of each used chip (pid 2: its `link` port, and its
    `network` port on a hierarchical system) with the tensor/expert collectives it takes part in and the pipeline
    sends it makes; times from the closed forms, chunks list-scheduled greedily with a send between stages."""
    o, sysm = r.options, r.system
    kind = "prefill" if r.prefill else "decode"
    phase = r.prefill or r.decode
    events: list[dict] = []
    m, v, p = o.micro_batches, o.virtual_stages, o.pp
    compute = [(s.prefill_s if kind == "prefill" else s.decode_s) / v for s in r.stages]
    comm = [(sum(c.time_s for c in (s.prefill_comm if kind == "prefill" else s.decode_comm).values())
             - (s.prefill_hidden_s if kind == "prefill" else s.decode_hidden_s)) / v for s in r.stages]
    chunk = [a + b for a, b in zip(compute, comm, strict=True)]
    node = (lambda c: c // sysm.chips_per_node) if sysm.network else (lambda c: 0)
    chips = [[t + o.tp * o.ep * s for t in range(o.tp)] for s in range(p)]
    free = [0.0] * p                                  # when each stage is next free
    for mb in range(m):
        ready = 0.0
        for c in range(v):
            for s in range(p):
                start = max(free[s], ready)
                crosses = len({node(x) for x in chips[s]}) > 1       # a tp group spread over nodes
                last = c == v - 1 and s == p - 1
                nxt = chips[(s + 1) % p]
                for t, chip in enumerate(chips[s]):
                    events.append({"name": f"mb{mb} chunk{c}", "ph": "X", "pid": 1, "tid": chip,
                                   "ts": start * 1e6, "dur": compute[s] * 1e6})
                    for tid, port, _ in link_ports(r, chip):
                        if comm[s] and (port == "link" or crosses):
                            events.append({"name": f"mb{mb} collectives", "ph": "X", "pid": 2, "tid": tid,
                                           "ts": (start + compute[s]) * 1e6, "dur": comm[s] * 1e6})
                        if p > 1 and not last and (port == "network") == (node(chip) != node(nxt[t])):
                            events.append({"name": f"mb{mb} send to chip {nxt[t]}", "ph": "X", "pid": 2,
                                           "tid": tid, "ts": (start + chunk[s]) * 1e6, "dur": phase.p2p_s * 1e6})
                free[s] = start + chunk[s]
                ready = free[s] + (phase.p2p_s if p > 1 else 0.0)
    names = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "chips (compute)"}},
             {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "links (collectives, sends)"}}]
    for s in range(p):
        for t, chip in enumerate(chips[s]):
            names.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": chip,
                          "args": {"name": f"chip {chip} (stage {s}, tp {t})"}})
            names += [{"name": "thread_name", "ph": "M", "pid": 2, "tid": tid, "args": {"name": name}}
                      for tid, _, name in link_ports(r, chip)]
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
        lines.append(f"{cells} {ttft:>9} {tpot:>9} {v['tokens_per_s']:>8,.0f} {sig(v['j_per_token']):>7} "
                     f"{v['comm_share']:>6.1%} {v['bubble']:>6.1%} {v['max_memory_bytes'] / GIB:>8.1f}")
    return "\n".join(lines) + "\n"
