"""A decoder LLM run (sim/studies/llm.py) as a table, JSON or CSV: TTFT, TPOT, energy per token, memory, time,
energy and traffic by op class, and the kernels of the prefill and of the last decode step."""
from __future__ import annotations

import csv
import io
import json

from tilesim.report.format import byte_size, si
from tilesim.report.text import KERNEL_COLUMNS, kernel_lines
from tilesim.studies.llm import CLASS_FIELDS, LLMResult, class_totals, llm_dict, phase_runs
from tilesim.studies.op_class import CLASS_LABELS, OP_CLASSES, kernel_class

LLM_TOP = 10            # kernels listed per phase in the table unless --top says otherwise


def llm_json(r: LLMResult, data: dict | None = None) -> str:
    """The run's JSON mapping (llm_dict; `data`: it, when the caller has it) as text; NaN or infinity is a bug and
    raises."""
    return json.dumps(llm_dict(r) if data is None else data, indent=2, allow_nan=False) + "\n"


def llm_table(r: LLMResult, top: int | None = None) -> str:
    """A readable summary of an LLM run (at most 100 columns): the token figures, time, energy and DRAM traffic by
    op class, and the `top` longest kernels of the prefill and of the last decode step (default LLM_TOP)."""
    last = r.decode[-1].end if r.decode else r.prefill
    lines = [f"tilesim: {last.workload.rsplit('.', 1)[0]} on {last.arch}, {r.phase}, batch {r.batch}"]
    if r.prefill:
        p = r.prefill
        lines.append(f"  prefill   {r.prompt_len} tokens: TTFT {si(r.ttft_s, 's')}, "
                     f"{si(r.prefill_pj_per_token * 1e-12, 'J')}/token, util {p.pe_utilization:.1%}, MBU {p.mbu:.1%}")
    if r.decode:
        d = r.decode[-1].end
        lines.append(f"  decode    {r.decode_steps} step(s), context {r.decode[0].first}..{r.decode[-1].last}: "
                     f"TPOT {si(r.tpot_s, 's')}, {si(r.decode_pj_per_token * 1e-12, 'J')}/token")
        lines.append(f"            last step: util {d.pe_utilization:.2%}, MBU {d.mbu:.1%}, "
                     f"{r.tokens_per_s:,.1f} tokens/s")
    lines.append(f"  memory    weights {byte_size(r.weight_bytes)}, KV cache {byte_size(r.kv_cache_bytes)}")
    if last.flash_bytes_per_cycle:
        step = r.decode[-1].end if r.decode else r.prefill
        lines.append(f"  flash     {byte_size(r.flash_weight_bytes)} of weights in flash; "
                     f"{byte_size(step.flash_read_bytes)} read per {'step' if r.decode else 'prefill'}, "
                     f"flash busy {step.flash_utilization:.1%}")
    lines += expert_lines(r)
    lines.append(f"  total     {si(r.latency_s, 's')}, {si(r.energy_pj * 1e-12, 'J')} for {r.tokens:,} tokens, "
                 f"{si(r.power_w, 'W')} average")
    clocks = sorted({s.clock_hz for s in ([r.prefill] if r.prefill else []) + [d.end for d in r.decode]
                     if s.clock_capped})
    if clocks:
        lines.append(f"  clock     {', '.join(si(c, 'Hz') for c in clocks)} under the {last.power_cap_w:g} W power cap "
                     f"(of {si(last.top_clock_hz, 'Hz')})")
    lines += class_lines(r)
    for phase, sim in phase_runs(r):
        what = f"prefill ({r.prompt_len} tokens)" if phase == "prefill" else \
            f"decode step at context {r.decode[-1].last}" + (" (the last)" if r.decode_steps > 1 else "")
        lines += ["", f"{what}: {len(sim.kernels)} kernels, {si(sim.latency_s, 's')}",
                  *kernel_lines(sim.kernels, top or LLM_TOP)]
    return "\n".join(lines) + "\n"


def class_lines(r: LLMResult) -> list[str]:
    """Time, energy and DRAM traffic (read + write) of the whole run by op class, with shares."""
    table = sum(class_totals(r).values())
    rows = [(c, time_s, energy_pj, rd + wr) for c, (time_s, energy_pj, rd, wr) in zip(OP_CLASSES, table, strict=True)
            if time_s or energy_pj]
    totals = [sum(row[i] for row in rows) for i in (1, 2, 3)]
    share = lambda x, total: f"{x / total:.1%}" if total else "-"     # noqa: E731
    lines = ["", f"{'by op class':<22} {'time':>10} {'':>6} {'energy':>10} {'':>6} {'DRAM traffic':>12}"]
    for c, time_s, energy_pj, traffic in rows:
        lines.append(f"  {CLASS_LABELS[c]:<20} {si(time_s, 's'):>10} {share(time_s, totals[0]):>6} "
                     f"{si(energy_pj * 1e-12, 'J'):>10} {share(energy_pj, totals[1]):>6} {byte_size(traffic):>12} "
                     f"{share(traffic, totals[2]):>6}")
    return lines


def expert_lines(r: LLMResult) -> list[str]:
    """MoE routing of the prefill and of a decode step: experts touched per MoE layer, expert weights read, the
    most-loaded expert's tokens against the mean (1.00x: balanced)."""
    lines = []
    for label, load, tokens in (("prefill", r.prefill_experts, r.batch * r.prompt_len),
                                ("decode step", r.decode_experts, r.batch)):
        if load is None:
            continue
        n = len(load.tokens_per_expert)
        mean = sum(load.tokens_per_expert) / n
        lines.append(f"  experts   {label} ({tokens:,} tokens): {load.distinct_experts:,.1f} of {n} experts per "
                     f"layer, {byte_size(load.expert_read_bytes * load.moe_layers)} of expert weights read "
                     f"({load.moe_layers} MoE layers)")
        lines.append(f"            load: busiest expert {load.max_tokens:,.2f} tokens, mean {mean:,.2f} "
                     f"({load.max_tokens / mean:.2f}x)")
    return lines


def llm_csv(r: LLMResult) -> str:
    """One row per kernel of the prefill and of the last decode step (phase, op class, KERNEL_COLUMNS, its time),
    then one row per op class and phase summed over the whole run, then the run's '(total)' row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("workload", "arch", "phase", "op_class", *KERNEL_COLUMNS, "latency_s"))
    name = phase_runs(r)[0][1].workload.rsplit(".", 1)[0]
    arch = phase_runs(r)[0][1].arch
    for phase, sim in phase_runs(r):
        step = "prefill" if phase == "prefill" else "decode step"
        for k in sim.kernels:
            w.writerow([name, arch, step, kernel_class(k.ops, r.op_classes), *(getattr(k, c) for c in KERNEL_COLUMNS),
                        k.cycles / (k.clock_hz or sim.clock_hz)])
    blank = dict.fromkeys(KERNEL_COLUMNS, "")
    for phase, table in class_totals(r).items():
        for c, row in zip(OP_CLASSES, table, strict=True):
            if row.any():
                values = dict(zip(CLASS_FIELDS, map(float, row), strict=True))
                w.writerow(class_row(name, arch, phase, c, blank, values))
    d = llm_dict(r)
    w.writerow(class_row(name, arch, r.phase, "", blank, {**d, "time_s": d["latency_s"]}, "(total)"))
    return buf.getvalue()


def class_row(workload: str, arch: str, phase: str, op_class: str, blank: dict, values: dict,
              name: str | None = None) -> list:
    """A summary row of llm_csv: energy, DRAM bytes and time filled, the per-kernel columns blank."""
    cells = dict(blank, name=name or f"({op_class})", energy_pj=values["energy_pj"],
                 dram_read_bytes=round(values["dram_read_bytes"]), dram_write_bytes=round(values["dram_write_bytes"]))
    return [workload, arch, phase, op_class, *(cells[c] for c in KERNEL_COLUMNS), values["time_s"]]
