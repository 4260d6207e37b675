"""`tilesim serve`: a request stream served by a decoder LLM on an arch (docs/serving.md).

The stream (a trace or a seeded generator, serve_trace.py) goes through a scheduler (serve_sched.py) whose step
costs come from tilesim's simulations of the model's graphs (serve_cost.py). The KV cache gets what the off-chip
memory holds beside the weights, in blocks of --block-size tokens. Reported: TTFT, TPOT and end-to-end latency
percentiles, throughput, goodput under SLOs, batch size and KV occupancy over time, preemptions and energy (steps
plus static power while idle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np

from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import did_you_mean
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.llm import check_fits
from tilesim.studies.options import OptionError, WorkloadOptions, at_least, option
from tilesim.studies.serve_cost import StepCostModel
from tilesim.studies.serve_sched import POLICIES, Scheduler, SchedulerConfig, ServeRun
from tilesim.studies.serve_trace import Request, generate, parse_lengths, read_trace
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

Policy = Literal["static", "continuous", "chunked"]
Arrivals = Literal["poisson", "bursty"]
Preemption = Literal["recompute", "swap"]
ServeFormat = Literal["table", "json", "csv"]
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class TraceOptions:
    """Where requests come from: a trace file, or a generator (rate, count, arrivals, lengths, seed)."""
    trace: str | None = field(default=None, metadata=option(
        "CSV or JSONL of requests: arrival_s, prompt_tokens, output_tokens[, prefix_id], or the Azure LLM trace "
        "layout TIMESTAMP, ContextTokens, GeneratedTokens (docs/serving.md)", metavar="FILE"))
    rate: float | None = field(default=None, metadata=option(
        "generate requests at this mean rate (requests/s) instead of --trace"))
    rates: str | None = field(default=None, metadata=option(
        "sweep: the generated stream at each of these rates (requests/s, e.g. 1,2,4,8), a summary row per rate and "
        "the knee: the highest rate at which --slo-share of the requests meet the SLOs", metavar="R1,R2,..."))
    requests: int = field(default=100, metadata=option("generated requests (default 100)"))
    arrivals: Arrivals = field(default="poisson", metadata=option(
        "generated arrivals: poisson (default) or bursty (gamma gaps, --cv)"))
    cv: float = field(default=2.0, metadata=option("bursty arrivals: coefficient of variation of the gaps "
                                                   "(default 2)"))
    prompt_lengths: str = field(default="fixed:512", metadata=option(
        "generated prompt tokens: fixed:N, uniform:LO,HI, lognormal:MEDIAN,SIGMA or empirical:FILE.csv[:COLUMN] "
        "(default fixed:512)", metavar="DIST"))
    output_lengths: str = field(default="fixed:128", metadata=option(
        "generated output tokens, as --prompt-lengths (default fixed:128)", metavar="DIST"))
    seed: int = field(default=0, metadata=option("seed of the generator (default 0)"))

    def __post_init__(self) -> None:
        if self.trace is not None and self.rate is not None:
            raise OptionError(("trace", "rate"), "give a trace file or a rate to generate a stream, not both")
        if self.rates is not None:
            if self.trace is not None or self.rate is not None:
                raise OptionError("rates", "a rate sweep generates its streams; give neither a trace nor a rate")
            parse_rates(self.rates)
        elif self.trace is None and self.rate is None:
            raise OptionError(("trace", "rate"), "give a trace file or a request rate to generate a stream")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise OptionError("rate", f"must be > 0 requests/s, got {self.rate:g}")
        at_least("requests", self.requests, 1)
        if self.arrivals not in Arrivals.__args__:
            raise OptionError("arrivals", f"got '{self.arrivals}', allowed: poisson, bursty")
        if not (self.cv > 0 and math.isfinite(self.cv)):
            raise OptionError("cv", f"must be > 0, got {self.cv:g}")

    def stream(self) -> tuple[Request, ...]:
        """The requests: read from the trace, or generated."""
        if self.trace is not None:
            return read_trace(self.trace)
        return generate(self.requests, self.rate, parse_lengths("prompt_lengths", self.prompt_lengths),
                        parse_lengths("output_lengths", self.output_lengths), self.arrivals, self.cv, self.seed)


@dataclass(frozen=True)
class SchedulerOptions:
    """How steps are formed, the KV cache's pages, and the SLOs goodput counts against."""
    scheduler: Policy = field(default="continuous", metadata=option(
        "static, continuous (iteration-level, vLLM/Orca; default) or chunked (prefill chunks mixed with decode, "
        "Sarathi-Serve)"))
    max_batch: int = field(default=64, metadata=option("most sequences in a step (default 64)"))
    max_tokens: int | None = field(default=None, metadata=option(
        "most tokens in a step; chunked: the chunk budget (default: chunked 512, else the model's positions)"))
    block_size: int = field(default=16, metadata=option("KV cache block, tokens (default 16)"))
    kv_blocks: int | None = field(default=None, metadata=option(
        "KV cache capacity in blocks (default: the off-chip memory less the weights)"))
    preemption: Preemption = field(default="recompute", metadata=option(
        "when the KV cache runs out: recompute (drop the victim's cache, prefill again; default) or swap (copy it to "
        "host memory over --swap-gb-s and back)"))
    swap_gb_s: float = field(default=64.0, metadata=option(
        "swap preemption: the host link's bandwidth, GB/s (default 64: PCIe 5.0 x16, one direction)"))
    prefix_hit_rate: float = field(default=0.0, metadata=option(
        "prefix caching without prefix ids: share of each prompt found already computed (whole blocks; default 0); "
        "requests with a prefix_id in the trace share their prefix's cached blocks instead"))
    draft: str | None = field(default=None, metadata=option(
        "speculative decoding (continuous scheduler): the draft model, a decoder LLM (e.g. gpt2 for a target of its "
        "vocabulary; any decoder is accepted)"))
    spec_k: int = field(default=4, metadata=option("speculative decoding: draft tokens per round (default 4)"))
    acceptance: float = field(default=1.0, metadata=option(
        "speculative decoding: probability that the target accepts each draft token (default 1)"))
    slo_ttft: float | None = field(default=None, metadata=option("goodput: time to first token SLO, s"))
    slo_tpot: float | None = field(default=None, metadata=option("goodput: time per output token SLO, s"))
    slo_share: float = field(default=0.9, metadata=option(
        "rate sweeps: the share of requests that must meet the SLOs at the knee (default 0.9)"))
    step_cache: bool = field(default=True, metadata=option(
        "neither read nor write the on-disk store of simulated step costs (docs/serving.md)", flag="--no-step-cache",
        switch=True))

    def __post_init__(self) -> None:
        if self.scheduler not in POLICIES:
            raise OptionError("scheduler", f"got '{self.scheduler}', allowed: {', '.join(POLICIES)}")
        for name in ("max_batch", "max_tokens", "block_size", "kv_blocks", "spec_k"):
            at_least(name, getattr(self, name), 1)
        if self.preemption not in Preemption.__args__:
            raise OptionError("preemption", f"got '{self.preemption}', allowed: recompute, swap")
        if not (self.swap_gb_s > 0 and math.isfinite(self.swap_gb_s)):
            raise OptionError("swap_gb_s", f"must be > 0 GB/s, got {self.swap_gb_s:g}")
        if not 0 < self.slo_share <= 1:
            raise OptionError("slo_share", f"must be > 0 and <= 1, got {self.slo_share:g}")
        if not 0 <= self.prefix_hit_rate <= 1:
            raise OptionError("prefix_hit_rate", f"must be >= 0 and <= 1, got {self.prefix_hit_rate:g}")
        if not 0 <= self.acceptance <= 1:
            raise OptionError("acceptance", f"must be >= 0 and <= 1, got {self.acceptance:g}")
        if self.draft is not None and self.scheduler != "continuous":
            raise OptionError("draft", f"speculative decoding runs with the continuous scheduler, not "
                                       f"'{self.scheduler}'")
        for name in ("slo_ttft", "slo_tpot"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise OptionError(name, f"must be > 0 s, got {v:g}")


@dataclass(frozen=True)
class ServeOutputOptions:
    """How `tilesim serve` reports."""
    format: ServeFormat = field(default="table", metadata=option(
        "table (default), json (summary, per-request rows and the step timeline) or csv (one row per request)",
        short="-f"))
    output: str | None = field(default=None, metadata=option("write the report to this file instead of stdout",
                                                             flag="-o"))
    trace_out: str | None = field(default=None, metadata=option(
        "write a Chrome/Perfetto trace: one track per request (queued, prefill, decode), counters for batch and "
        "KV occupancy", flag="--perfetto", metavar="TRACE.json"))
    figure: str | None = field(default=None, metadata=option(
        "write a figure (.png, .svg, .pdf): latency CDFs and the batch and KV occupancy timeline (tilesim[plot])",
        flag="--plot", metavar="FILE.png"))


SERVE_OPTION_CLASSES = (TraceOptions, SchedulerOptions, ServeOutputOptions)


@dataclass(frozen=True)
class ServeResult:
    """A served stream: the run, its summary, and what it ran on."""
    workload: str
    arch: str
    run: ServeRun
    summary: dict
    rows: tuple[dict, ...]
    weight_bytes: int
    kv_bytes_per_token: int
    simulations: int

    def to_dict(self) -> dict:
        """The JSON `tilesim serve -f json` prints."""
        steps = [{"start_s": s.start_s, "latency_s": s.latency_s, "energy_pj": s.energy_pj,
                  "sequences": s.sequences, "prefill_tokens": s.prefill_tokens, "decode_tokens": s.decode_tokens,
                  "kv_blocks_used": s.kv_blocks_used, "in_system": s.in_system, "waiting": s.waiting}
                 for s in self.run.steps]
        return {"workload": self.workload, "arch": self.arch, "summary": self.summary, "requests": list(self.rows),
                "steps": steps}


def kv_capacity_blocks(arch: ArchConfig, weight_bytes: int, kv_bytes_per_token: int, block_size: int) -> int:
    """Blocks of the cache: the off-chip memory less the weights, over block_size x bytes per token."""
    check_fits(arch, weight_bytes, 0)
    return (arch.offchip.capacity_bytes - weight_bytes) // (block_size * kv_bytes_per_token)


def percentiles(values: list[float]) -> dict:
    """p50, p90, p99 and mean (None without values)."""
    if not values:
        return {f"p{p}": None for p in PERCENTILES} | {"mean": None}
    a = np.asarray(values)
    return {f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES} | {"mean": float(a.mean())}


def request_rows(run: ServeRun, slo_ttft: float | None, slo_tpot: float | None) -> tuple[dict, ...]:
    """One row per request: times, latencies, energy, SLO verdict, or why it was refused."""
    rows = []
    for o in run.requests:
        r = o.req
        row = {"id": r.rid, "arrival_s": r.arrival_s, "prompt_tokens": r.prompt_tokens,
               "output_tokens": r.output_tokens, "prefix_id": r.prefix_id or ""}
        if o.refused:
            rows.append(row | {"status": "refused", "reason": o.refused})
            continue
        ttft = o.first_token_s - r.arrival_s
        tpot = (o.finish_s - o.first_token_s) / (r.output_tokens - 1) if r.output_tokens > 1 else None
        ok = (slo_ttft is None or ttft <= slo_ttft) and (slo_tpot is None or tpot is None or tpot <= slo_tpot)
        energy_j = o.energy_pj * 1e-12
        rows.append(row | {"status": "served", "reason": "", "queue_s": o.start_s - r.arrival_s, "ttft_s": ttft,
                           "tpot_s": tpot, "e2e_s": o.finish_s - r.arrival_s, "finish_s": o.finish_s,
                           "preemptions": o.preemptions, "cache_hit_tokens": o.cache_hit_tokens,
                           "energy_j": energy_j,
                           "j_per_token": energy_j / (r.prompt_tokens + r.output_tokens),
                           "slo_met": ok if (slo_ttft or slo_tpot) else None})
    return tuple(rows)


def summarize(run: ServeRun, rows: tuple[dict, ...], slo_ttft: float | None, slo_tpot: float | None,
              static_w: float) -> dict:
    """The run's figures: latency percentiles, throughput, goodput, occupancy, preemptions, energy."""
    served = [r for r in rows if r["status"] == "served"]
    first = min((r["arrival_s"] for r in served), default=0.0)
    span = run.end_s - first if served else 0.0
    out_tokens = sum(r["output_tokens"] for r in served)
    busy = sum(s.latency_s for s in run.steps)
    step_pj = sum(s.energy_pj for s in run.steps)
    total_j = (step_pj + run.idle_energy_pj) * 1e-12
    weights = np.array([s.latency_s for s in run.steps]) if run.steps else np.zeros(1)
    mean_of = lambda xs: float(np.average(np.array(xs), weights=weights)) if run.steps else 0.0   # noqa: E731
    in_system = [s.in_system for s in run.steps]
    hits = sum(r["cache_hit_tokens"] for r in served)
    computed = sum(s.prefill_tokens for s in run.steps)
    good = [r for r in served if r["slo_met"] in (True, None)]
    return {
        "requests": len(rows), "served": len(served), "refused": len(rows) - len(served),
        "scheduler": run.config.policy, "max_batch": run.config.max_batch, "max_tokens": run.config.max_tokens,
        "block_size": run.config.block_size, "kv_blocks": run.config.kv_blocks,
        "duration_s": span, "busy_s": busy, "steps": len(run.steps),
        "ttft_s": percentiles([r["ttft_s"] for r in served]),
        "tpot_s": percentiles([r["tpot_s"] for r in served if r["tpot_s"] is not None]),
        "e2e_s": percentiles([r["e2e_s"] for r in served]),
        "throughput_tokens_per_s": out_tokens / span if span else 0.0,
        "throughput_requests_per_s": len(served) / span if span else 0.0,
        "goodput_requests_per_s": len(good) / span if span else 0.0,
        "slo_ttft_s": slo_ttft, "slo_tpot_s": slo_tpot, "slo_attainment": len(good) / len(served) if served else 0.0,
        "mean_batch": mean_of([s.sequences for s in run.steps]),
        "max_batch_seen": max((s.sequences for s in run.steps), default=0),
        "mean_kv_occupancy": mean_of([s.kv_blocks_used for s in run.steps]) / run.config.kv_blocks,
        "max_kv_occupancy": max((s.kv_blocks_used for s in run.steps), default=0) / run.config.kv_blocks,
        "mean_in_system": (sum(n * s.latency_s for n, s in zip(in_system, run.steps, strict=True)) / (busy + run.idle_s)
                           if busy + run.idle_s else 0.0),
        "preemptions": sum(r["preemptions"] for r in served), "preemption": run.config.preemption,
        "swapped_bytes": run.extra.get("swapped_bytes", 0),
        "prefix_hit_rate": hits / (hits + computed) if hits + computed else 0.0,
        "spec_k": run.config.spec_k, "acceptance": run.config.acceptance if run.config.spec_k else None,
        "energy_j": total_j, "idle_energy_j": run.idle_energy_pj * 1e-12, "static_power_w": static_w,
        "j_per_output_token": total_j / out_tokens if out_tokens else 0.0,
        "j_per_token": percentiles([r["j_per_token"] for r in served]),
    }


@dataclass(frozen=True)
class Server:
    """A model on an arch ready to serve streams: its step costs (memoised across streams) and scheduler."""
    name: str
    arch: str
    config: SchedulerConfig
    model: StepCostModel
    draft: StepCostModel | None
    weight_bytes: int
    kv_bytes_per_token: int

    def serve(self, requests: tuple[Request, ...], slo_ttft: float | None, slo_tpot: float | None) -> ServeResult:
        """Serve one stream and summarise it."""
        run = Scheduler(self.config, self.model, self.draft).run(list(requests))
        for m in (self.model, self.draft):
            if m is not None:
                m.save_points()
        rows = request_rows(run, slo_ttft, slo_tpot)
        summary = summarize(run, rows, slo_ttft, slo_tpot, self.model.static_w)
        sims = self.model.simulations + (self.draft.simulations if self.draft else 0)
        return ServeResult(self.name, self.arch, run, summary, rows, self.weight_bytes, self.kv_bytes_per_token,
                           sims)


def server(workload: WorkloadOptions, arch: ArchConfig, compile_options: CompileOptions, sched: SchedulerOptions,
           seed: int = 0) -> Server:
    """The model (and draft), its KV cache's capacity and the scheduler's configuration."""
    cfg = decoder_config(workload.workload)
    if cfg is None:
        raise OptionError("workload", f"serve needs a decoder LLM (gpt2, llama2-7b, ... or an HF config.json), not "
                                      f"'{workload.workload}'")
    types = wl.resolve_dtypes(workload.dtypes, workload.graph_dtype(arch.array.dtype) or arch.array.dtype)
    weight_bytes, per_token = wl.weight_bytes(cfg, types.weight), wl.kv_cache_bytes_per_token(cfg, types.kv)
    draft_cfg = decoder_config(sched.draft) if sched.draft is not None else None
    if sched.draft is not None and draft_cfg is None:
        raise OptionError("draft", f"must be a decoder LLM (gpt2, llama2-7b, ... or an HF config.json), not "
                                   f"'{sched.draft}'")
    if draft_cfg is not None:                   # the draft's weights and its cache of every token live beside
        weight_bytes += wl.weight_bytes(draft_cfg, types.weight)
        per_token += wl.kv_cache_bytes_per_token(draft_cfg, types.kv)
    blocks = sched.kv_blocks or kv_capacity_blocks(arch, weight_bytes, per_token, sched.block_size)
    if blocks < 1:
        raise OptionError("kv_blocks", f"the off-chip memory holds the weights but no KV cache block of "
                                       f"{sched.block_size} tokens")
    max_tokens = sched.max_tokens or (512 if sched.scheduler == "chunked" else cfg.max_positions)
    model = StepCostModel(cfg, arch, compile_options, types, sched.step_cache)
    draft = StepCostModel(draft_cfg, arch, compile_options, types, sched.step_cache) if draft_cfg is not None \
        else None
    config = SchedulerConfig(sched.scheduler, sched.max_batch, max_tokens, sched.block_size, blocks,
                             sched.spec_k if draft else 0, sched.acceptance, seed, sched.prefix_hit_rate,
                             sched.preemption, sched.swap_gb_s * 1e9, per_token)
    return Server(cfg.name, arch.name, config, model, draft, weight_bytes, per_token)


def serve(workload: WorkloadOptions, arch: ArchConfig, compile_options: CompileOptions, trace: TraceOptions,
          sched: SchedulerOptions) -> ServeResult:
    """Serve the stream on the arch and summarise it."""
    srv = server(workload, arch, compile_options, sched, trace.seed)
    return srv.serve(trace.stream(), sched.slo_ttft, sched.slo_tpot)


@dataclass(frozen=True)
class RateSweep:
    """One generated stream per rate through the same server; the knee is the highest rate at which at least
    `share` of the requests meet the SLOs (None without SLOs, or when no rate does)."""
    rates: tuple[float, ...]
    results: tuple[ServeResult, ...]
    share: float
    knee_rate: float | None

    def to_dict(self) -> dict:
        """The JSON of `tilesim serve --rates ... -f json`: a summary per rate and the knee."""
        return {"workload": self.results[0].workload, "arch": self.results[0].arch, "slo_share": self.share,
                "knee_rate": self.knee_rate,
                "rates": [{"rate": rate} | r.summary for rate, r in zip(self.rates, self.results, strict=True)]}


def parse_rates(text: str) -> tuple[float, ...]:
    """--rates R1,R2,...: request rates > 0, ascending."""
    try:
        rates = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise OptionError("rates", f"expected comma-separated request rates, got '{text}'") from None
    if not rates or not all(r > 0 and math.isfinite(r) for r in rates):
        raise OptionError("rates", f"expected request rates > 0, got '{text}'")
    return rates


def serve_rates(workload: WorkloadOptions, arch: ArchConfig, compile_options: CompileOptions, trace: TraceOptions,
                sched: SchedulerOptions, rates: tuple[float, ...], share: float = 0.9) -> RateSweep:
    """The same generated stream (seed, lengths, count) at each rate; step costs simulated once for all."""
    srv = server(workload, arch, compile_options, sched, trace.seed)
    results = tuple(srv.serve(replace(trace, rates=None, rate=r).stream(), sched.slo_ttft, sched.slo_tpot)
                    for r in rates)
    slo = sched.slo_ttft is not None or sched.slo_tpot is not None
    ok = [r for r, res in zip(rates, results, strict=True) if slo and res.summary["slo_attainment"] >= share]
    return RateSweep(rates, results, share, max(ok) if ok else None)


SERVE_WORKLOAD_FIELDS = ("weight_dtype", "activation_dtype", "kv_dtype", "dtype")


def split_serve_options(workload: str, options: dict, caller: str = "serve") -> tuple[
        WorkloadOptions, CompileOptions, TraceOptions, SchedulerOptions]:
    """Keyword options of tilesim.serve into their dataclasses; an unknown one is a TypeError naming it."""
    kinds = {f.name: cls for cls in (CompileOptions, TraceOptions, SchedulerOptions) for f in fields(cls)}
    kinds |= dict.fromkeys(SERVE_WORKLOAD_FIELDS, WorkloadOptions)
    for key in options:
        if key not in kinds:
            raise TypeError(f"{caller}() got an unexpected option '{key}'{did_you_mean(key, kinds)}")
    pick = lambda cls: {k: v for k, v in options.items() if kinds[k] is cls}     # noqa: E731
    return (WorkloadOptions(workload, **pick(WorkloadOptions)), CompileOptions(**pick(CompileOptions)),
            TraceOptions(**pick(TraceOptions)), SchedulerOptions(**pick(SchedulerOptions)))
