"""A decoder LLM run (sim/studies/llm.py) as a table or JSON: TTFT, TPOT, energy per token, memory."""
from __future__ import annotations

import json

from tilesim.report.format import byte_size, si
from tilesim.studies.llm import LLMResult, llm_dict


def llm_json(r: LLMResult) -> str:
    """The run's JSON mapping (llm_dict) as text; NaN or infinity is a bug and raises."""
    return json.dumps(llm_dict(r), indent=2, allow_nan=False) + "\n"


def llm_table(r: LLMResult) -> str:
    """A readable summary of an LLM run (at most 100 columns)."""
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
    return "\n".join(lines) + "\n"


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
