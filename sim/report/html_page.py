"""`tilesim report INPUT --html OUT`: one self-contained HTML page (inline CSS, plots as base64 PNG) summarising a
`run --format json` result, a `compare --format json` result or a sweep CSV; the kind is read from the content."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.core.files import write_atomic
from tilesim.report.compare import short_ops
from tilesim.report.figure import figure_bytes, new_figure, plots_available
from tilesim.report.format import area, count, mib_text, percent, pj, quantity, si, sig
from tilesim.report.plots import energy_figure, kernel_label, llm_energy_figure, roofline_figure
from tilesim.report.sweep_plot import pareto_figure
from tilesim.report.sweep_text import metric_text
from tilesim.studies.op_class import CLASS_LABELS
from tilesim.studies.sweep import best_rows, pareto_front

KINDS = ("run", "compare", "sweep")
MAX_ROWS = 1000          # table rows shown per table; the rest are counted
NUMBER = (int, float)
RUN_KEYS = {"workload": str, "arch": str, "cycles": NUMBER, "latency_s": NUMBER, "macs": NUMBER,
            "energy_pj": NUMBER, "energy_breakdown_pj": dict, "dram_read_bytes": NUMBER,
            "dram_write_bytes": NUMBER, "kernels": list}
KERNEL_KEYS = {"name": str, "bound": str, "cycles": NUMBER, "macs": NUMBER, "energy_pj": NUMBER,
               "dram_read_bytes": NUMBER, "dram_write_bytes": NUMBER, "pe_utilization": NUMBER,
               "arithmetic_intensity": NUMBER, "attained_macs_per_cycle": NUMBER, "ops": list}
LEVEL_KEYS = {"read_bytes": NUMBER, "write_bytes": NUMBER, "bandwidth_utilization": NUMBER}
ROOFLINE_KEYS = {"peak_macs_per_cycle": NUMBER, "offchip_bytes_per_cycle": NUMBER}
GROUP_KEYS = {"kernel": str, "ops": list, "unfused_dram_bytes": NUMBER, "fused_dram_bytes": NUMBER,
              "saved_dram_bytes": NUMBER}
POLICY_KEYS = {"fusion": str, "kernels": NUMBER, "cycles": NUMBER, "latency_s": NUMBER, "energy_pj": NUMBER,
               "dram_read_bytes": NUMBER, "dram_write_bytes": NUMBER, "fused_groups": list}
SWEEP_COLUMNS = ("status", "workload", "arch", "latency_s", "energy_pj", "edp", "area_mm2")
SWEEP_SHOWN = ("cycles", "latency_s", "energy_pj", "edp", "pe_utilization", "pj_per_mac", "area_mm2")
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
tr.best td{background:#fff6d8}img{max-width:100%;display:block;margin:.5em 0}
.note{color:#666;font-size:.85em}"""


# ---------------------------------------------------------------- reading the input

def load_input(path: str) -> tuple[str, object]:
    """(kind, data) of a report input: run or compare (a JSON mapping) or sweep (a list of CSV rows)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"report: no such file '{path}'")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"report: '{path}' is not a text file; {_expected()}") from None
    if text.lstrip().startswith(("{", "[")):
        return _json_input(text, path)
    rows = _sweep_rows(text)
    if rows is None:
        raise InputError(f"report: '{path}' is not a tilesim result; {_expected()}")
    return "sweep", rows


def _expected() -> str:
    """What report reads, for error messages."""
    return "expected the JSON of `tilesim run -f json` or `tilesim compare -f json`, or a `tilesim sweep` CSV"


def _json_input(text: str, path: str) -> tuple[str, dict]:
    """run or compare from a JSON document, its required keys checked."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"report: '{path}' is malformed JSON ({e.msg} at line {e.lineno}); {_expected()}") from None
    if isinstance(d, dict) and "policies" in d:
        _check(d, {"policies": list}, path)
        if not d["policies"]:
            raise InputError(f"report: '{path}': 'policies' is empty")
        for i, policy in enumerate(d["policies"]):
            where = f"{path}: policies[{i}]"
            _check(policy, dict(RUN_KEYS, **POLICY_KEYS), where)
            _check_numbers(policy["energy_breakdown_pj"], f"{where}: energy_breakdown_pj")
            for j, group in enumerate(policy["fused_groups"]):
                _check(group, GROUP_KEYS, f"{where}: fused_groups[{j}]")
        return "compare", d
    if isinstance(d, dict) and "kernels" in d and "cycles" in d:
        _check_run(d, path)
        return "run", d
    raise InputError(f"report: '{path}' is JSON but not a tilesim result; {_expected()}")


def _check_run(d: dict, path: str) -> None:
    """The keys a run report reads, with their types (the roofline's only when present: LLM runs lack them)."""
    _check(d, RUN_KEYS, path)
    _check_numbers(d["energy_breakdown_pj"], f"{path}: energy_breakdown_pj")
    for i, k in enumerate(d["kernels"]):
        _check(k, KERNEL_KEYS, f"{path}: kernels[{i}]")
    if any(key in d for key in ROOFLINE_KEYS):
        _check(d, ROOFLINE_KEYS, path)
    for key in ("engine_busy", "memory_traffic"):
        if not isinstance(d.get(key, {}), dict):
            raise InputError(f"report: '{path}': '{key}' must be an object")
    _check_numbers(d.get("engine_busy", {}), f"{path}: engine_busy")
    for name, level in d.get("memory_traffic", {}).items():
        _check(level, LEVEL_KEYS, f"{path}: memory_traffic.{name}")


def _check_numbers(d: dict, where: str) -> None:
    """Every value of a mapping is a number."""
    _check(d, dict.fromkeys(d, NUMBER), where)


def _check(d, keys: dict, where: str) -> None:
    """Each key present with the expected type (numbers: int or float, not bool), else a one-line InputError."""
    if not isinstance(d, dict):
        raise InputError(f"report: '{where}': expected a JSON object")
    for key, kind in keys.items():
        if key not in d:
            raise InputError(f"report: '{where}': missing key '{key}'; {_expected()}")
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            name = "a number" if kind is NUMBER else {str: "a string", dict: "an object", list: "a list"}[kind]
            raise InputError(f"report: '{where}': '{key}' must be {name}, got {json.dumps(value)[:40]}")


def _sweep_rows(text: str) -> list[dict] | None:
    """The rows of a sweep CSV (None when the header is not a sweep's); bad rows are one-line errors."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
    except csv.Error:
        return None
    if not set(SWEEP_COLUMNS) <= set(header):
        return None
    try:
        rows = [_sweep_row(row, n, len(header)) for n, row in enumerate(reader, start=2)]
    except csv.Error as e:
        raise InputError(f"report: malformed sweep CSV ({e})") from None
    if not rows:
        raise InputError("report: the sweep CSV has no rows")
    return rows


def _sweep_row(row: dict, n: int, cells: int) -> dict:
    """One sweep row, checked: all cells present, an ok row's plotted metrics numbers."""
    if None in row or None in row.values():
        raise InputError(f"report: sweep CSV line {n}: expected {cells} cells")
    if row["status"] == "ok":
        for column in ("latency_s", "energy_pj", "edp", "area_mm2"):
            if row[column] or column != "area_mm2":
                _number(row[column], f"sweep CSV line {n}: {column}")
    return row


def _number(text: str, where: str) -> float:
    """A CSV cell as a float, else a one-line InputError."""
    try:
        return float(text)
    except ValueError:
        raise InputError(f"report: {where}: expected a number, got '{text[:40]}'") from None


def sweep_keys(rows: list[dict]) -> list[str]:
    """The grid keys of a sweep: the columns before 'status'."""
    header = list(rows[0])
    return header[:header.index("status")]


# ---------------------------------------------------------------- HTML pieces

def _e(x) -> str:
    """Text escaped for HTML."""
    return html.escape(str(x))


def fmt(value) -> str:
    """A number for a table: integers with thousands separators, floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return count(value)
    return str(value)


def table(header: list[str] | None, rows: list[list], best: set[int] = frozenset()) -> str:
    """An HTML table; numbers right-aligned; rows whose index is in `best` highlighted; at most MAX_ROWS rows."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = []
    for i, row in enumerate(rows[:MAX_ROWS]):
        cells = "".join(f'<td class="n">{_e(fmt(c))}</td>' if _numeric(c) else f"<td>{_e(c)}</td>" for c in row)
        body.append(f'<tr{" class=best" if i in best else ""}>{cells}</tr>')
    more = f'<p class="note">... {len(rows) - MAX_ROWS:,} more rows not shown</p>' if len(rows) > MAX_ROWS else ""
    return f"<table>{head}{''.join(body)}</table>{more}"


def _numeric(cell) -> bool:
    """Right-aligned: numbers, and text that reads as one (12.5%, 3.2 MiB, 1.05x)."""
    if isinstance(cell, bool):
        return False
    if isinstance(cell, (int, float)):
        return True
    text = str(cell)
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))


def pairs(items: list[tuple[str, object]]) -> str:
    """A two-column table of (name, value)."""
    return table(None, [[k, v] for k, v in items])


def image(fig, alt: str) -> str:
    """The figure as an <img> with its PNG inline (base64)."""
    data = base64.b64encode(figure_bytes(fig)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: list[str]) -> str:
    """The whole HTML document."""
    note = "" if plots_available() else ('<p class="note">Plots left out: matplotlib is not installed '
                                         "(pip install 'tilesim[plot]').</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>{note}{''.join(sections)}"
            '<p class="note">Generated by tilesim report.</p></body></html>\n')


def ops_text(ops: list) -> str:
    """Fused op names without their shared prefix: 'conv2 + bn2 + relu'."""
    return " + ".join(short_ops(tuple(map(str, ops)))) if ops else ""


def _pct(x) -> str:
    """A fraction as a percentage (blank when it is not a number)."""
    return percent(x) if isinstance(x, NUMBER) else ""


# ---------------------------------------------------------------- run

def run_html(d: dict) -> str:
    """Summary, roofline and energy plots, and the per-kernel table of one run."""
    sections = [f"<h2>Summary</h2>{pairs(run_summary(d))}"]
    llm = "phase" in d
    if plots_available():
        if all(k in d for k in ROOFLINE_KEYS) and d["kernels"]:
            sections.append(f"<h2>Roofline</h2>{image(roofline_figure(d), 'roofline')}")
        elif llm:
            sections.append('<p class="note">No roofline: an LLM result has no peak or bandwidth figures.</p>')
        by_class = llm and _classes_ok(d)
        sections.append(f"<h2>Energy</h2>{image(llm_energy_figure(d) if by_class else energy_figure(d), 'energy')}")
    if llm and _classes_ok(d):
        sections.append(f"<h2>By op class (whole run)</h2>{class_table(d['op_classes'].get('run', {}))}")
    note = '<p class="note">The kernels of the prefill and of the last decode step.</p>' if llm else ""
    sections.append(f"<h2>Kernels ({len(d['kernels'])}, longest first)</h2>{note}{kernel_table(d)}")
    return page(f"tilesim run: {run_title(d)} on {d['arch']}", sections)


def _classes_ok(d: dict) -> bool:
    """Whether an LLM result's op_classes.run is {class: {time_s, energy_pj, ...: numbers}} (older files lack it)."""
    run = d.get("op_classes", {}).get("run") if isinstance(d.get("op_classes"), dict) else None
    return isinstance(run, dict) and all(
        isinstance(v, dict) and all(isinstance(v.get(f), NUMBER) and not isinstance(v.get(f), bool)
                                    for f in ("time_s", "energy_pj", "dram_read_bytes", "dram_write_bytes"))
        for v in run.values())


def run_title(d: dict) -> str:
    """What ran: the workload, and for a decoder LLM its model and phase ('llama3-8b generate', not the name of
    the last graph simulated, 'llama3-8b.decode')."""
    if "phase" not in d:
        return str(d["workload"])
    return f"{str(d['workload']).rsplit('.', 1)[0]} {d['phase']}"


def class_table(classes: dict) -> str:
    """Time, energy and DRAM traffic per op class (an LLM result's op_classes.run), with shares."""
    rows = [(c, v) for c, v in classes.items() if isinstance(v, dict)]
    total = {f: sum(float(v.get(f, 0)) for _, v in rows) or 1.0 for f in ("time_s", "energy_pj")}
    body = []
    for c, v in rows:
        traffic = float(v.get("dram_read_bytes", 0)) + float(v.get("dram_write_bytes", 0))
        body.append([CLASS_LABELS.get(c, c), si(float(v.get("time_s", 0)), "s"), percent(v.get("time_s", 0) /
                     total["time_s"]), si(float(v.get("energy_pj", 0)) * 1e-12, "J"),
                     percent(v.get("energy_pj", 0) / total["energy_pj"]), mib_text(traffic)])
    return table(["op class", "time", "share", "energy", "share", "DRAM traffic"], body)


def run_summary(d: dict) -> list[tuple[str, object]]:
    """(name, value) rows of the run's totals (and an LLM run's token figures when present)."""
    traffic = d["dram_read_bytes"] + d["dram_write_bytes"]
    rows = [("workload", d["workload"]), ("arch", d["arch"]), ("timing", d.get("timing", "")),
            ("cycles", d["cycles"]), ("latency", si(d["latency_s"], "s")), ("MACs", d["macs"]),
            ("PE utilization", _pct(d.get("pe_utilization"))), ("MBU (off-chip bandwidth used)", _pct(d.get("mbu"))),
            ("energy", si(d["energy_pj"] * 1e-12, "J")),
            ("energy per MAC", pj(d['energy_pj'] / d['macs']) if d["macs"] else ""),
            ("DRAM read", mib_text(d["dram_read_bytes"])), ("DRAM write", mib_text(d["dram_write_bytes"])),
            ("arithmetic intensity", f"{sig(d['macs'] / traffic)} MACs/DRAM byte" if traffic else "")]
    if d.get("peak_macs_per_cycle"):
        rows.append(("peak", f"{d['peak_macs_per_cycle']:,} MACs/cycle"))
    if d.get("area_mm2"):
        rows.append(("area", area(d['area_mm2'])))
    if isinstance(d.get("engine_busy"), dict):
        rows.append(("engines busy", ", ".join(f"{k} {_pct(v)}" for k, v in d["engine_busy"].items())))
    if isinstance(d.get("memory_traffic"), dict):
        rows.append(("level bandwidth used", ", ".join(f"{k} {_pct(t.get('bandwidth_utilization'))}"
                                                       for k, t in d["memory_traffic"].items())))
    total = d["energy_pj"] or 1.0
    rows.append(("energy by component", ", ".join(f"{k} {v / total:.1%}" for k, v in
                                                  sorted(d["energy_breakdown_pj"].items(), key=lambda kv: -kv[1]))))
    llm = {"phase": "phase", "tokens": "tokens", "ttft_s": "time to first token", "tpot_s": "time per output token",
           "tokens_per_s": "throughput", "pj_per_token": "energy per token"}
    rows += [(label, quantity(k, d[k]) if isinstance(d[k], NUMBER) and not isinstance(d[k], bool) else d[k])
             for k, label in llm.items() if k in d]
    return rows


def kernel_table(d: dict) -> str:
    """Per-kernel rows sorted by cycles: bound, fused ops, utilisation, traffic, energy, roofline point."""
    cycles = d["cycles"] or 1
    classes = all(isinstance(k.get("op_class"), str) for k in d["kernels"]) and d["kernels"]   # LLM results
    header = ["kernel", "bound", "cycles", "% of run", "util", "DRAM rd", "DRAM wr", "energy",
              "MACs/byte", "MACs/cycle", *(["op class"] if classes else []), "ops"]
    rows = [[kernel_label(k), k["bound"], k["cycles"],
             f"{k['cycles'] / cycles:.1%}", _pct(k["pe_utilization"]), mib_text(k["dram_read_bytes"]),
             mib_text(k["dram_write_bytes"]), si(k["energy_pj"] * 1e-12, "J"), k["arithmetic_intensity"],
             k["attained_macs_per_cycle"], *([CLASS_LABELS.get(k["op_class"], k["op_class"])] if classes else []),
             ops_text(k["ops"])]
            for k in sorted(d["kernels"], key=lambda k: -k["cycles"])]
    return table(header, rows)


# ---------------------------------------------------------------- compare

def compare_html(d: dict) -> str:
    """The policies side by side, a bar chart against the first policy, and each policy's fused-group savings."""
    sections = [f"<h2>Fusion policies</h2>{policy_table(d['policies'])}"]
    if plots_available():
        sections.append(f"<h2>Relative to {_e(d['policies'][0]['fusion'])}</h2>"
                        f"{image(compare_figure(d), 'policies compared')}")
    for p in d["policies"]:
        sections.append(savings_html(p))
    workload, arch = d.get("workload", d["policies"][0]["workload"]), d.get("arch", d["policies"][0]["arch"])
    return page(f"tilesim compare: {workload} on {arch}", sections)


def policy_table(policies: list[dict]) -> str:
    """One row per policy."""
    header = ["fusion", "kernels", "cycles", "speedup vs none", "latency", "DRAM rd", "DRAM wr", "energy",
              "pJ/MAC", "MBU", "PE util", "fused groups", "DRAM saved"]
    rows = [[p["fusion"], p["kernels"], p["cycles"],
             f"{p['speedup_vs_none']:.3f}x" if isinstance(p.get("speedup_vs_none"), NUMBER) else "-",
             si(p["latency_s"], "s"), mib_text(p["dram_read_bytes"]), mib_text(p["dram_write_bytes"]),
             si(p["energy_pj"] * 1e-12, "J"), pj(p['energy_pj'] / p['macs']) if p["macs"] else "",
             _pct(p.get("mbu")), _pct(p.get("pe_utilization")), len(p["fused_groups"]),
             mib_text(_saved(p))] for p in policies]
    return table(header, rows)


def _saved(policy: dict) -> float:
    """DRAM bytes the policy's fused groups saved."""
    return sum(g["saved_dram_bytes"] for g in policy["fused_groups"])


def savings_html(policy: dict, top: int = 15) -> str:
    """What one policy saved by fusion kind, and its fused layer patterns (or, in older results, fused groups)
    that saved the most DRAM traffic."""
    kinds, patterns = policy.get("savings_by_kind"), policy.get("patterns")
    if isinstance(kinds, dict) and isinstance(patterns, list):
        if not any(v.get("saved_dram_bytes") or v.get("saved_cycles") for v in kinds.values()):
            return ""
        by_kind = table(["fusion kind", "DRAM saved", "cycles saved"],
                        [[k, mib_text(v["saved_dram_bytes"]), v["saved_cycles"]] for k, v in kinds.items()])
        rows = [[p["pattern"], p["count"], p["kind"], ops_text(p["ops"]), mib_text(p["saved_dram_bytes"]),
                 p["saved_cycles"]] for p in patterns[:top]]
        return (f"<h2>{_e(policy['fusion'])}: saved {mib_text(sum(v['saved_dram_bytes'] for v in kinds.values()))} "
                f"of DRAM traffic against none</h2>{by_kind}<p class=\"note\">The {min(top, len(patterns))} fused "
                "layer patterns that saved most (repeated layers grouped).</p>"
                + table(["pattern", "count", "kind", "ops", "DRAM saved", "cycles saved"], rows))
    groups = sorted(policy["fused_groups"], key=lambda g: -g["saved_dram_bytes"])
    if not groups:
        return ""
    rows = [[g["kernel"], ops_text(g["ops"]), mib_text(g["unfused_dram_bytes"]), mib_text(g["fused_dram_bytes"]),
             mib_text(g["saved_dram_bytes"])] for g in groups[:top]]
    return (f"<h2>{_e(policy['fusion'])}: {len(groups)} fused kernels saved {mib_text(_saved(policy))} of DRAM traffic"
            f'</h2><p class="note">The {min(top, len(groups))} that saved most.</p>'
            + table(["kernel", "ops", "unfused DRAM", "fused DRAM", "saved"], rows))


def compare_figure(d: dict):
    """Cycles, energy and DRAM bytes of each policy relative to the first, as grouped bars."""
    policies = d["policies"]
    metrics = {"cycles": lambda p: p["cycles"], "energy": lambda p: p["energy_pj"],
               "DRAM bytes": lambda p: p["dram_read_bytes"] + p["dram_write_bytes"]}
    fig = new_figure(8, 4)
    ax = fig.subplots()
    width = 0.8 / len(policies)
    x = np.arange(len(metrics))
    for i, p in enumerate(policies):
        ratios = [f(p) / f(policies[0]) if f(policies[0]) else 0.0 for f in metrics.values()]
        bars = ax.bar(x + (i - (len(policies) - 1) / 2) * width, ratios, width, label=p["fusion"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, list(metrics))
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(ylabel=f"relative to {policies[0]['fusion']}",
           title=f"{policies[0]['workload']} on {policies[0]['arch']}: fusion policies (lower is better)")
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- sweep

def sweep_html(rows: list[dict]) -> str:
    """Counts and best points, the Pareto plot, and every row (Pareto points highlighted)."""
    keys = sweep_keys(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    front = set(pareto_front(rows))
    counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in ("ok", "invalid", "error"))
    summary = [("points", f"{len(rows)} ({counts})"), ("grid", ", ".join(keys))]
    summary += [(f"best {m}", f"{metric_text(m, r[m])} at " + " ".join(f"{k}={r[k]}" for k in keys))
                for m, r in best_rows(rows).items()]
    sections = [f"<h2>Summary</h2>{pairs(summary)}"]
    if plots_available() and ok:
        sections.append(f"<h2>Pareto front: latency, energy, area</h2>{image(pareto_figure(rows, keys), 'pareto')}")
    shown = [c for c in SWEEP_SHOWN if c in rows[0]]
    body = [[r[k] for k in keys] + [r["status"]] + [_cell(r[c]) for c in shown] + [r.get("reason", "")]
            for r in rows]
    sections.append(f"<h2>Points (Pareto front highlighted: {len(front)})</h2>"
                    + table([*keys, "status", *shown, "reason"], body, front))
    return page(f"tilesim sweep: {rows[0]['workload']} on {rows[0]['arch']}", sections)


def _cell(text: str):
    """A sweep cell as a number when it is one (for formatting), else the text."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


# ---------------------------------------------------------------- command

def report_html(kind: str, data) -> str:
    """The HTML page of a run, compare or sweep input."""
    return {"run": run_html, "compare": compare_html, "sweep": sweep_html}[kind](data)


def write_report(input_path: str, html_path: str) -> None:
    """The HTML page of a saved run, compare or sweep result, written atomically to `html_path`."""
    target = Path(html_path)
    if not target.parent.is_dir():
        raise InputError(f"--html: directory '{target.parent}' does not exist")
    kind, data = load_input(input_path)
    write_atomic(target, report_html(kind, data))


__all__ = ["KINDS", "load_input", "report_html", "sweep_keys", "write_report"]
