"""LLM inference: prefill, one decode step, or generation (prefill then N decode steps at growing context).

TTFT is the prefill latency; TPOT the mean latency of a decode step; energy per token is prefill energy per prompt
token and decode energy per generated token. Decode steps of a generation differ only in the attention over a
cache that grows one token a step, so a step's cost is affine in its context: generation simulates decode at the
first, middle and last contexts, and at every bend inside the run (a sliding window filling up: past it a
windowed layer's cost stops growing), and integrates the steps between samples by the trapezoid rule (exact for
costs linear between samples), so any number of generated tokens costs three decode simulations (plus one per
window bend crossed).

The KV cache that must fit is batch x kv_cache_bytes(tokens held): a sliding-window layer holds at most its
window. MoE runs report their routing in expectation (workloads/llm.py expert_load): experts touched per MoE layer
in a prefill and in a decode step, the expert weight bytes that reads, and the tokens each expert processes.

Weights live in DRAM, or, on an arch with a flash level, partly in flash (place_weights): the flash level's
`weights` rule says which (overflow: the share that does not fit the DRAM beside the KV cache and the flash staging
buffer, taken from every weight alike; all; none; mlp or a glob on kernel names: those kernels' weight matrices).
Weights in flash stream flash -> DRAM -> array every token (sim/commands.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import pairwise

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import InputError
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions, Schedule, lower
from tilesim.core.commands import weights_in_flash
from tilesim.core.result import SimResult
from tilesim.core.simulate import kernel_evaluator, simulate
from tilesim.studies.op_class import OP_CLASSES, kernel_class, op_classes
from tilesim.studies.options import PHASES, OptionError
from tilesim.studies.schedule_store import CommandMemo, lowered
from tilesim.workloads.llm import ExpertLoad


@dataclass(frozen=True)
class DecodeSpan:
    """Decode steps at contexts `first`..`last`, their cost linear between the simulated steps at either end."""
    first: int
    last: int
    start: SimResult
    end: SimResult

    @property
    def steps(self) -> int:
        """How many decode steps the span covers."""
        return self.last - self.first + 1

    def total(self, field: str) -> float:
        """Sum of a per-step quantity over the span's steps (trapezoid rule between its ends)."""
        return self.steps * (getattr(self.start, field) + getattr(self.end, field)) / 2


@dataclass(frozen=True)
class LLMResult:
    """An LLM run: the prefill and/or decode simulations and the per-token figures (docs/design.md section 8)."""
    phase: str
    batch: int
    prompt_len: int
    gen_tokens: int
    weight_bytes: int
    kv_cache_bytes: int            # at the end of the run: batch x tokens held x bytes per token
    prefill: SimResult | None
    decode: tuple[DecodeSpan, ...]
    flash_weight_bytes: int = 0    # of weight_bytes, those stored in the flash level (place_weights)
    prefill_experts: ExpertLoad | None = None   # MoE routing of the prefill (batch x prompt tokens)
    decode_experts: ExpertLoad | None = None    # MoE routing of one decode step (batch tokens)
    op_classes: Mapping[str, str] = field(default_factory=dict, compare=False)   # op -> class (studies/op_class.py)
    prefill_schedule: Schedule | None = field(default=None, compare=False)      # the prefill's kernels and mappings
    decode_schedule: Schedule | None = field(default=None, compare=False)       # ... of the last decode step

    @property
    def ttft_s(self) -> float:
        """Time to first token: the prefill's latency (0 without a prefill)."""
        return self.prefill.latency_s if self.prefill else 0.0

    @property
    def decode_s(self) -> float:
        """Time of all decode steps."""
        return sum(s.total("latency_s") for s in self.decode)

    @property
    def decode_steps(self) -> int:
        """Decode steps simulated (or covered by buckets)."""
        return sum(s.steps for s in self.decode)

    @property
    def tpot_s(self) -> float:
        """Time per output token: mean decode step latency (0 without decode steps)."""
        return self.decode_s / self.decode_steps if self.decode else 0.0

    @property
    def latency_s(self) -> float:
        """The whole run."""
        return self.ttft_s + self.decode_s

    @property
    def power_w(self) -> float:
        """Average power over the whole run: energy / time."""
        return self.energy_pj * 1e-12 / self.latency_s if self.latency_s else 0.0

    @property
    def prefill_pj_per_token(self) -> float:
        """Prefill energy per prompt token (all sequences of the batch)."""
        return self.prefill.energy_pj / (self.batch * self.prompt_len) if self.prefill else 0.0

    @property
    def decode_pj_per_token(self) -> float:
        """Decode energy per generated token (all sequences of the batch)."""
        steps = self.decode_steps
        return sum(s.total("energy_pj") for s in self.decode) / (self.batch * steps) if steps else 0.0

    @property
    def tokens(self) -> int:
        """Tokens this run processes: prompt tokens in prefill, generated tokens in decode (x batch)."""
        return self.batch * ((self.prompt_len if self.prefill else 0) + self.decode_steps)

    @property
    def energy_pj(self) -> float:
        """Energy of the whole run."""
        return (self.prefill.energy_pj if self.prefill else 0.0) + sum(s.total("energy_pj") for s in self.decode)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second while decoding (prefill tokens per second in prefill alone)."""
        if self.decode_steps:
            return self.batch * self.decode_steps / self.decode_s
        return self.tokens / self.latency_s if self.latency_s else 0.0


GraphFor = Callable[[str, int], Graph]      # (phase, seq_len or context) -> Graph
KVBytes = Callable[[int], int]              # tokens held -> one sequence's KV cache bytes
ExpertsFor = Callable[[int], ExpertLoad | None]   # tokens in a step -> its MoE routing (None: a dense model)


def check_fits(arch: ArchConfig, weight_bytes: int, kv_bytes: int) -> None:
    """Weights and the KV cache must fit the off-chip memory (one clear line when they do not); see place_weights
    for an arch with a flash level."""
    off = arch.offchip
    if weight_bytes + kv_bytes > off.capacity_bytes:
        gib = 2**30
        hint = (f"or set memory.{arch.flash.name}.weights (overflow, all, mlp) to stream weights from the flash "
                f"level '{arch.flash.name}'" if arch.flash else
                "or an arch with a flash level (kind: flash, e.g. phone-npu) to stream the weights that do not fit")
        raise OptionError(f"memory.{off.name}.capacity_bytes",       # an arch field; the hint names options
                          f"weights ({weight_bytes / gib:.2f} GiB) + KV cache ({kv_bytes / gib:.2f} GiB) need "
                          f"{(weight_bytes + kv_bytes) / gib:.2f} GiB, more than the {off.capacity_bytes / gib:.2f} "
                          f"GiB of {off.name}; use a smaller batch or context, narrower {{weight_dtype}}/{{kv_dtype}}, "
                          f"a bigger memory, {hint}")


@dataclass(frozen=True)
class WeightPlacement:
    """Where an LLM's weights are stored: bytes in flash, and the share of every weight read from flash per token
    under `weights: overflow` (0 under the other rules, which place whole kernels' weights)."""
    flash_bytes: int
    overflow_share: float


def flash_matrix_bytes(graph: Graph, rule: str) -> int:
    """Bytes of the weight matrices (B operands that are parameters) of the contractions whose names match a flash
    level's `weights` rule, each tensor once."""
    seen = {}
    for op in graph.ops:
        if op.op_type in ("MatMul", "Gemm") and weights_in_flash(op.name, rule):
            t = graph.tensors[op.inputs[1]]
            if t.is_param:
                seen[t.name] = t.nbytes
    return sum(seen.values())


def place_weights(arch: ArchConfig, weight_bytes: int, kv_bytes: int, graph: Graph | None = None) -> WeightPlacement:
    """Split the weights between DRAM and the flash level by its `weights` rule and check that each part fits:
    DRAM holds its weights, the KV cache and the flash staging buffer; flash holds the rest. Without a flash level
    (or with `weights: none`, or when everything fits under `overflow`) this is check_fits."""
    flash, off = arch.flash, arch.offchip
    rule = flash.weights if flash else "none"
    if rule == "none" or (rule == "overflow" and weight_bytes + kv_bytes <= off.capacity_bytes):
        check_fits(arch, weight_bytes, kv_bytes)
        return WeightPlacement(0, 0.0)
    staging = flash.staging_bytes or 0
    room = off.capacity_bytes - kv_bytes - staging             # DRAM left for weights
    if rule == "overflow":
        stored = weight_bytes - max(room, 0)
    elif rule == "all":
        stored = weight_bytes
    else:
        stored = min(flash_matrix_bytes(graph, rule), weight_bytes)
    gib = 2**30
    if weight_bytes - stored > room:
        raise InputError(f"memory.{off.name}.capacity_bytes: weights kept in DRAM ({(weight_bytes - stored) / gib:.2f}"
                         f" GiB) + KV cache ({kv_bytes / gib:.2f} GiB) + flash staging ({staging / gib:.2f} GiB) "
                         f"need more than the {off.capacity_bytes / gib:.2f} GiB of {off.name}; use a smaller batch "
                         f"or context, a smaller memory.{flash.name}.staging_bytes, or place more weights in flash "
                         f"(memory.{flash.name}.weights)")
    if stored > flash.capacity_bytes:
        raise InputError(f"memory.{flash.name}.capacity_bytes: {stored / gib:.2f} GiB of weights placed in flash, "
                         f"more than its {flash.capacity_bytes / gib:.2f} GiB")
    return WeightPlacement(stored, stored / weight_bytes if rule == "overflow" and weight_bytes else 0.0)


def run_llm(graph_for: GraphFor, arch: ArchConfig, options: CompileOptions, phase: str, batch: int,
            prompt_len: int, gen_tokens: int, weight_bytes: int, kv_bytes: int | KVBytes,
            bends: tuple[int, ...] = (), experts: ExpertsFor | None = None, timeline: bool = False) -> LLMResult:
    """Simulate a phase: prefill of `prompt_len` tokens; one decode step at context `prompt_len`; or generate
    (prefill, then `gen_tokens` decode steps at contexts prompt_len .. prompt_len + gen_tokens - 1).
    `kv_bytes`: one sequence's cache bytes per token, or a function of the tokens held (sliding windows);
    `bends`: decode contexts where the step cost changes slope (generate samples them too); `experts`: the MoE
    routing of a step of n tokens, for the report."""
    if phase not in PHASES:
        raise OptionError("phase", f"got '{phase}', allowed: {', '.join(PHASES)}")
    held = prompt_len + (gen_tokens if phase == "generate" else 1 if phase == "decode" else 0)
    kv_bytes = batch * (kv_bytes(held) if callable(kv_bytes) else held * kv_bytes)
    globbed = arch.flash is not None and arch.flash.weights not in ("none", "all", "overflow")
    placement = place_weights(arch, weight_bytes, kv_bytes, graph_for("decode", 0) if globbed else None)
    share = placement.overflow_share
    memo: dict = {}     # tile commands shared across steps (one arch, one timing, one flash share)
    evaluate = kernel_evaluator(arch, options.resolved_timing(arch), options.objective, share, memo)  # across steps

    plans: dict[tuple[str, int], Schedule] = {}
    classes: dict[str, str] = {}

    def run(kind: str, size: int) -> SimResult:
        graph = graph_for(kind, size)
        classes.update(op_classes(graph))
        plans[kind, size] = lowered(partial(lower, graph, arch, options, evaluate), graph, arch, options, share,
                                    commands=CommandMemo(arch, memo, share))
        return simulate(plans[kind, size], arch, flash_share=share, memo=memo, timeline=timeline)

    prefill = run("prefill", prompt_len) if phase in ("prefill", "generate") else None
    spans: list[DecodeSpan] = []
    if phase == "decode":
        step = run("decode", prompt_len)
        spans.append(DecodeSpan(prompt_len, prompt_len, step, step))
    elif phase == "generate":
        spans = generate_spans(prompt_len, prompt_len + gen_tokens - 1, bends, lambda c: run("decode", c))
    routing = (experts(batch * prompt_len) if experts and prefill else None,
               experts(batch) if experts and spans else None)
    return LLMResult(phase, batch, prompt_len, gen_tokens if phase == "generate" else 0, weight_bytes, kv_bytes,
                     prefill, tuple(spans), placement.flash_bytes, *routing, op_classes=classes,
                     prefill_schedule=plans.get(("prefill", prompt_len)),
                     decode_schedule=plans.get(("decode", spans[-1].last)) if spans else None)


def generate_spans(first: int, last: int, bends: tuple[int, ...], step: Callable[[int], SimResult]) \
        -> list[DecodeSpan]:
    """Decode steps at contexts first..last as spans between simulated samples: first, middle, last and every bend
    strictly inside; each span [a, b) ends at the step interpolated at b - 1, the last one at `last` itself."""
    points = sorted({first, (first + last) // 2, last} | {c for c in bends if first < c < last})
    samples = {c: step(c) for c in points}
    if len(points) == 1:
        return [DecodeSpan(first, last, samples[first], samples[first])]
    spans = [DecodeSpan(a, b - 1, samples[a], _lerp_point(samples, a, b, b - 1))
             for a, b in pairwise(points[:-1])]
    return [*spans, DecodeSpan(points[-2], last, samples[points[-2]], samples[last])]


def _lerp_point(samples: dict, a: int, b: int, c: int) -> SimResult:
    """The step at context c (a <= c < b) by linear interpolation of the simulated steps at a and b: latency, energy
    and traffic interpolated; the rest taken from the step at a."""
    if c == a:
        return samples[a]
    t = (c - a) / (b - a)
    lo, hi = samples[a], samples[b]
    mix = lambda f: getattr(lo, f) + t * (getattr(hi, f) - getattr(lo, f))   # noqa: E731
    return replace(lo, cycles=round(mix("cycles")), latency_s=mix("latency_s"), energy_pj=mix("energy_pj"),
                   dram_read_bytes=round(mix("dram_read_bytes")), dram_write_bytes=round(mix("dram_write_bytes")),
                   macs=round(mix("macs")), flash_read_bytes=round(mix("flash_read_bytes")))


CLASS_FIELDS = ("time_s", "energy_pj", "dram_read_bytes", "dram_write_bytes")   # what a class breakdown sums


def class_vector(sim: SimResult, classes: Mapping[str, str]) -> np.ndarray:
    """One simulated run's CLASS_FIELDS per op class (rows in OP_CLASSES order): its kernels' spans at their
    clocks, energy and DRAM bytes summed by kernel_class."""
    out = np.zeros((len(OP_CLASSES), len(CLASS_FIELDS)))
    for k in sim.kernels:
        row = OP_CLASSES.index(kernel_class(k.ops, classes))
        out[row] += (k.cycles / (k.clock_hz or sim.clock_hz), k.energy_pj, k.dram_read_bytes, k.dram_write_bytes)
    return out


def class_totals(r: LLMResult) -> dict[str, np.ndarray]:
    """CLASS_FIELDS per op class of the prefill and of all decode steps (keys "prefill", "decode" when run): a
    span's steps by the trapezoid rule like its totals, its interpolated end taken between the simulated samples
    either side (the next span's start), so the classes sum to the run's latency, energy and traffic."""
    out = {}
    if r.prefill:
        out["prefill"] = class_vector(r.prefill, r.op_classes)
    if r.decode:
        total = np.zeros((len(OP_CLASSES), len(CLASS_FIELDS)))
        for i, s in enumerate(r.decode):
            start = class_vector(s.start, r.op_classes)
            if i + 1 < len(r.decode):       # end interpolated at s.last between this sample and the next
                nxt = r.decode[i + 1]
                t = (s.last - s.first) / (nxt.first - s.first)
                end = start + t * (class_vector(nxt.start, r.op_classes) - start)
            else:
                end = class_vector(s.end, r.op_classes)
            total += s.steps * (start + end) / 2
        out["decode"] = total
    return out


def classes_dict(table: np.ndarray) -> dict[str, dict[str, float]]:
    """A class breakdown as {class: {field: value}} (classes without time or energy left out)."""
    return {c: dict(zip(CLASS_FIELDS, map(float, row), strict=True))
            for c, row in zip(OP_CLASSES, table, strict=True) if row.any()}


def op_class_dict(r: LLMResult) -> dict:
    """The run's time, energy and DRAM bytes by op class: whole run, and per phase."""
    phases = class_totals(r)
    return {"run": classes_dict(sum(phases.values())),
            "by_phase": {phase: classes_dict(table) for phase, table in phases.items()}}


def llm_dict(r: LLMResult) -> dict:
    """JSON mapping: the section 6 keys of the whole run, the LLM keys, and the runs it is made of."""
    def total(field: str) -> float:
        return (getattr(r.prefill, field) if r.prefill else 0) + sum(s.total(field) for s in r.decode)
    cycles, macs = round(total("cycles")), round(total("macs"))
    reads, writes = round(total("dram_read_bytes")), round(total("dram_write_bytes"))
    first = r.prefill or r.decode[0].start
    peak = first.peak_macs_per_cycle
    breakdown: dict[str, float] = dict(r.prefill.energy_breakdown_pj) if r.prefill else {}
    for s in r.decode:                          # components scaled like the span's total energy
        scale = s.total("energy_pj") / s.start.energy_pj if s.start.energy_pj else 0.0
        for k, v in s.start.energy_breakdown_pj.items():
            breakdown[k] = breakdown.get(k, 0.0) + v * scale
    last = r.decode[-1].end if r.decode else r.prefill
    kernels = [dict(k, phase=phase, op_class=kernel_class(tuple(k["ops"]), r.op_classes))
               for phase, sim in phase_runs(r) for k in sim.to_dict()["kernels"]]
    return {
        "workload": last.workload, "arch": last.arch, "timing": last.timing, "cycles": cycles,
        "latency_s": r.latency_s, "macs": macs, "pe_utilization": macs / (cycles * peak) if cycles else 0.0,
        "mbu": (reads + writes) / (cycles * first.offchip_bytes_per_cycle) if cycles else 0.0,
        "energy_pj": r.energy_pj, "energy_breakdown_pj": breakdown, "dram_read_bytes": reads,
        "power_w": r.power_w,
        "dram_write_bytes": writes, "area_mm2": last.area_mm2,
        "phase": r.phase, "batch": r.batch, "prompt_len": r.prompt_len, "gen_tokens": r.gen_tokens,
        "tokens": r.tokens, "pj_per_token": r.energy_pj / r.tokens if r.tokens else 0.0,
        "prefill_pj_per_token": r.prefill_pj_per_token, "decode_pj_per_token": r.decode_pj_per_token,
        "ttft_s": r.ttft_s, "tpot_s": r.tpot_s, "tokens_per_s": r.tokens_per_s,
        "kv_cache_bytes": r.kv_cache_bytes, "weight_bytes": r.weight_bytes,
        "flash_weight_bytes": r.flash_weight_bytes, "flash_read_bytes": round(total("flash_read_bytes")),
        "flash_utilization": (total("flash_read_bytes") / (cycles * first.flash_bytes_per_cycle)
                              if cycles and first.flash_bytes_per_cycle else 0.0),
        "experts": experts_dict(r),
        "decode_spans": [{"first_context": s.first, "last_context": s.last, "steps": s.steps,
                              "first_step_latency_s": s.start.latency_s, "last_step_latency_s": s.end.latency_s,
                              "first_step_energy_pj": s.start.energy_pj, "last_step_energy_pj": s.end.energy_pj}
                         for s in r.decode],
        "peak_macs_per_cycle": peak, "offchip_bytes_per_cycle": first.offchip_bytes_per_cycle,
        "op_classes": op_class_dict(r),
        "kernels": kernels,
    }


def span_starts(r: LLMResult) -> list[float]:
    """When each span of decode steps starts (s from the run's start): after the prefill and the spans before."""
    starts, at = [], r.ttft_s
    for span in r.decode:
        starts.append(at)
        at += span.total("latency_s")
    return starts


def simulated_steps(r: LLMResult) -> list[tuple[str, float, SimResult]]:
    """(title, start time in s, run) of every simulated step of an LLM run, in time order: the prefill, the first
    decode step of each span and the run's last step (the steps between are interpolated)."""
    out = [(f"prefill ({r.prompt_len} tokens x batch {r.batch})", 0.0, r.prefill)] if r.prefill else []
    for span, start_s in zip(r.decode, span_starts(r), strict=True):
        out.append((f"decode step at context {span.first} (simulated)", start_s, span.start))
    last = r.decode[-1] if r.decode else None
    if last and last.last != last.first:                # the last span's end is simulated too
        out.append((f"decode step at context {last.last} (simulated)", r.latency_s - last.end.latency_s, last.end))
    return out


def step_windows(r: LLMResult) -> list[tuple[str, float, float, dict]]:
    """(name, start s, duration s, details) of the prefill and of each span of decode steps over the run."""
    out = [(f"prefill ({r.prompt_len} tokens)", 0.0, r.ttft_s, {"tokens": r.prompt_len})] if r.prefill else []
    out += [(f"decode steps at context {span.first}..{span.last}", start_s, span.total("latency_s"),
             {"steps": span.steps, "simulated": "first and last; linear between"})
            for span, start_s in zip(r.decode, span_starts(r), strict=True)]
    return out


def phase_runs(r: LLMResult) -> list[tuple[str, SimResult]]:
    """(phase, simulated run) whose kernels an LLM report lists: the prefill and the last decode step."""
    return ([("prefill", r.prefill)] if r.prefill else []) + ([("decode", r.decode[-1].end)] if r.decode else [])


def experts_dict(r: LLMResult) -> dict | None:
    """The MoE routing of the run's prefill and decode step (None for a dense model): experts touched per MoE layer,
    expert weight bytes read per MoE layer and in all its MoE layers, and each expert's expected tokens."""
    def one(load: ExpertLoad | None, tokens: int) -> dict | None:
        if load is None:
            return None
        return {"tokens": tokens, "moe_layers": load.moe_layers, "distinct_experts": load.distinct_experts,
                "expert_read_bytes_per_layer": load.expert_read_bytes,
                "expert_read_bytes": load.expert_read_bytes * load.moe_layers,
                "max_tokens_per_expert": load.max_tokens, "tokens_per_expert": list(load.tokens_per_expert)}
    if r.prefill_experts is None and r.decode_experts is None:
        return None
    return {"prefill": one(r.prefill_experts, r.batch * r.prompt_len), "decode_step": one(r.decode_experts, r.batch)}
