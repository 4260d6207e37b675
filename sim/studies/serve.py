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
from tilesim.arch.system import LINKS, SystemConfig, load_system
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.llm import check_fits
from tilesim.studies.options import OptionError, WorkloadOptions, at_least, option
from tilesim.studies.serve_cost import StepCostModel
from tilesim.studies.serve_disagg import Disaggregated, decode_config, disaggregation_summary
from tilesim.studies.serve_sched import POLICIES, Scheduler, SchedulerConfig, ServeRun
from tilesim.studies.serve_system import GroupStepCost
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
class PlacementOptions:
    """Where the model is served: one chip (--arch), a tensor-parallel group of a system's chips, or two groups
    (prefill, decode) with the KV cache sent over a link between them (docs/serving.md)."""
    system: str | None = field(default=None, metadata=option(
        "serve on a system's chips, tensor-parallel over --tp of them: a system preset (see `tilesim list systems`) "
        "or a system YAML (replaces --arch; --set applies to the chip)", metavar="FILE|PRESET"))
    tp: int | None = field(default=None, metadata=option(
        "serving on a system: tensor-parallel chips (default: all of the system's chips)"))
    disaggregate: bool = field(default=False, metadata=option(
        "prefill and decode on separate chip groups (DistServe, Splitwise): each prompt's KV cache crosses --link "
        "from the prefill group to the decode group", switch=True))
    prefill_chips: int = field(default=1, metadata=option(
        "--disaggregate: chips of the prefill group, tensor-parallel (default 1)"))
    decode_chips: int = field(default=1, metadata=option(
        "--disaggregate: chips of the decode group, tensor-parallel (default 1)"))
    link: str | None = field(default=None, metadata=option(
        f"--disaggregate: the link between the groups, one of {', '.join(LINKS)} (default: the system's link; "
        "without --system, the groups are chips of --arch on a switch of this link)", metavar="NAME"))

    def __post_init__(self) -> None:
        for name in ("tp", "prefill_chips", "decode_chips"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise OptionError(name, f"must be an integer >= 1, got {v!r}")
        if self.link is not None and self.link not in LINKS:
            raise OptionError("link", f"unknown link '{self.link}'{did_you_mean(self.link, LINKS)}; allowed: "
                                      f"{', '.join(LINKS)}")
        if self.disaggregate and self.tp is not None:
            raise OptionError("tp", "with --disaggregate the groups' sizes are --prefill-chips and --decode-chips")
        if not self.disaggregate and (self.prefill_chips != 1 or self.decode_chips != 1 or self.link is not None):
            raise OptionError(("prefill_chips", "decode_chips", "link"), "these apply to disaggregated serving only "
                                                                         "(--disaggregate)")
        if self.tp is not None and self.system is None:
            raise OptionError("tp", "tensor-parallel serving needs a system: give --system (a preset or YAML)")

    def system_config(self, arch: ArchConfig, overrides: tuple[str, ...] = ()) -> SystemConfig | None:
        """The system served on: --system loaded (its chip with the --set overrides), or for disaggregation on
        --arch alone a switch of prefill + decode chips of --arch joined by --link; None for one chip."""
        if self.system is not None:
            return load_system(self.system, tuple(overrides))
        if not self.disaggregate:
            return None
        if self.link is None:
            raise OptionError("link", f"--disaggregate without --system needs the link between the groups: one of "
                                      f"{', '.join(LINKS)}")
        chips = self.prefill_chips + self.decode_chips
        return SystemConfig(f"{chips}x{arch.name}", arch, chips, "switch", LINKS[self.link],
                            description=f"{chips} chips of {arch.name} on a {self.link} switch")


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


SERVE_OPTION_CLASSES = (TraceOptions, SchedulerOptions, PlacementOptions, ServeOutputOptions)


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
    """A model on a chip or a group of chips ready to serve streams: its step costs (memoised across streams) and
    scheduler; with `disagg`, two groups and the link between them instead (serve_disagg.py)."""
    name: str
    arch: str
    config: SchedulerConfig
    model: StepCostModel | GroupStepCost
    draft: StepCostModel | GroupStepCost | None
    weight_bytes: int                # per chip
    kv_bytes_per_token: int          # per chip
    disagg: Disaggregated | None = None
    placement: dict = field(default_factory=dict)

    @property
    def static_w(self) -> float:
        """Static power of the chips serving: the model's chip or group, or both disaggregated groups."""
        if self.disagg is not None:
            return self.disagg.prefill_model.static_w + self.disagg.decode_model.static_w
        return self.model.static_w

    def models(self) -> list:
        """Every step-cost model the server uses."""
        if self.disagg is not None:
            return [self.disagg.prefill_model, self.disagg.decode_model]
        return [m for m in (self.model, self.draft) if m is not None]

    def serve(self, requests: tuple[Request, ...], slo_ttft: float | None, slo_tpot: float | None) -> ServeResult:
        """Serve one stream and summarise it."""
        if self.disagg is not None:
            run = self.disagg.run(list(requests))
        else:
            run = Scheduler(self.config, self.model, self.draft).run(list(requests))
        models = self.models()
        for m in models:
            m.save_points()
        rows = request_rows(run, slo_ttft, slo_tpot)
        summary = summarize(run, rows, slo_ttft, slo_tpot, self.static_w)
        summary["placement"] = self.placement
        if self.disagg is not None:
            summary |= disaggregated_figures(run, rows, self.disagg)
        sims = sum(m.simulations for m in models)
        return ServeResult(self.name, self.arch, run, summary, rows, self.weight_bytes, self.kv_bytes_per_token,
                           sims)


def disaggregated_figures(run: ServeRun, rows: tuple[dict, ...], d: Disaggregated) -> dict:
    """Summary keys of a disaggregated run: batch and KV occupancy are the decode group's, requests in the system
    the exact time average (sum of end-to-end latencies over the duration), energy adds the link's; and the
    `disaggregation` entry (both groups, the link, the transfers)."""
    dec = run.extra["groups"]["decode"]
    served = [r for r in rows if r["status"] == "served"]
    span = (max(r["finish_s"] for r in served) - min(r["arrival_s"] for r in served)) if served else 0.0
    out_tokens = sum(r["output_tokens"] for r in served)
    energy_j = sum(g["energy_j"] for g in run.extra["groups"].values()) + run.extra["link_energy_pj"] * 1e-12
    return {"mean_batch": dec["mean_batch"], "max_batch_seen": dec["max_batch_seen"],
            "mean_kv_occupancy": dec["mean_kv_occupancy"], "max_kv_occupancy": dec["max_kv_occupancy"],
            "mean_in_system": sum(r["e2e_s"] for r in served) / span if span else 0.0,
            "energy_j": energy_j, "j_per_output_token": energy_j / out_tokens if out_tokens else 0.0,
            "disaggregation": disaggregation_summary(run, d.link)}


def group_models(cfg: wl.DecoderConfig, draft_cfg: wl.DecoderConfig | None, chip: ArchConfig,
                 system: SystemConfig | None, tp: int, first_chip: int, options: CompileOptions, types: wl.DTypes,
                 stored: bool) -> tuple[StepCostModel | GroupStepCost, StepCostModel | GroupStepCost | None, int, int]:
    """(model, draft, weight bytes per chip, KV bytes per token per chip) on one chip, or on tp chips of a system
    from first_chip (each chip holds its shard of the model and of the draft, and their caches)."""
    def one(c: wl.DecoderConfig) -> tuple[StepCostModel | GroupStepCost, int, int]:
        if system is None:
            return (StepCostModel(c, chip, options, types, stored), wl.weight_bytes(c, types.weight),
                    wl.kv_cache_bytes_per_token(c, types.kv))
        g = GroupStepCost(c, system, tp, options, types, stored, first_chip)
        return g, g.weight_bytes(), g.kv_bytes_per_token()
    model, weights, per_token = one(cfg)
    draft = None
    if draft_cfg is not None:                   # the draft's weights and its cache of every token live beside
        draft, w, k = one(draft_cfg)
        weights, per_token = weights + w, per_token + k
    return model, draft, weights, per_token


def server(workload: WorkloadOptions, arch: ArchConfig, compile_options: CompileOptions, sched: SchedulerOptions,
           seed: int = 0, placement: PlacementOptions | None = None, system: SystemConfig | None = None) -> Server:
    """The model (and draft) on a chip, a group of a system's chips or two groups (placement; `system` loaded
    from it: PlacementOptions.system_config), its KV cache's capacity and the scheduler's configuration."""
    placement = placement or PlacementOptions()
    cfg = decoder_config(workload.workload)
    if cfg is None:
        raise OptionError("workload", f"serve needs a decoder LLM (gpt2, llama2-7b, ... or an HF config.json), not "
                                      f"'{workload.workload}'")
    chip = system.chip if system is not None else arch
    types = wl.resolve_dtypes(workload.dtypes, workload.graph_dtype(chip.array.dtype) or chip.array.dtype)
    draft_cfg = decoder_config(sched.draft) if sched.draft is not None else None
    if sched.draft is not None and draft_cfg is None:
        raise OptionError("draft", f"must be a decoder LLM (gpt2, llama2-7b, ... or an HF config.json), not "
                                   f"'{sched.draft}'")
    if placement.disaggregate and (draft_cfg is not None or sched.scheduler == "static"):
        raise OptionError("disaggregate", "disaggregated serving runs the continuous or chunked scheduler without "
                                          "a draft model")
    max_tokens = sched.max_tokens or (512 if sched.scheduler == "chunked" else cfg.max_positions)

    def group(tp: int, first_chip: int) -> tuple[SchedulerConfig, StepCostModel | GroupStepCost,
                                                 StepCostModel | GroupStepCost | None, int, int]:
        model, draft, weights, per_token = group_models(cfg, draft_cfg, chip, system, tp, first_chip,
                                                        compile_options, types, sched.step_cache)
        blocks = sched.kv_blocks or kv_capacity_blocks(chip, weights, per_token, sched.block_size)
        if blocks < 1:
            raise OptionError("kv_blocks", f"the off-chip memory holds the weights but no KV cache block of "
                                           f"{sched.block_size} tokens")
        config = SchedulerConfig(sched.scheduler, sched.max_batch, max_tokens, sched.block_size, blocks,
                                 sched.spec_k if draft else 0, sched.acceptance, seed, sched.prefix_hit_rate,
                                 sched.preemption, sched.swap_gb_s * 1e9, per_token)
        return config, model, draft, weights, per_token

    where = system.name if system is not None else arch.name
    if not placement.disaggregate:
        tp = (placement.tp or system.chips) if system is not None else 1
        config, model, draft, weights, per_token = group(tp, 0)
        return Server(cfg.name, where, config, model, draft, weights, per_token,
                      placement={"system": system.name if system else None, "chips": tp, "tp": tp})
    p, d = placement.prefill_chips, placement.decode_chips
    if p + d > system.chips:
        raise OptionError(("prefill_chips", "decode_chips"), f"{p} + {d} chips, the system '{system.name}' has "
                                                             f"{system.chips}")
    pre_config, pre_model, _, weights, per_token = group(p, 0)
    dec_config, dec_model, _, _, _ = group(d, p)
    link = LINKS[placement.link] if placement.link is not None else system.link
    disagg = Disaggregated(pre_config, pre_model, decode_config(dec_config, dec_config.kv_blocks), dec_model, p, d,
                           link, wl.kv_cache_bytes_per_token(cfg, types.kv))
    return Server(cfg.name, where, dec_config, dec_model, None, weights, per_token, disagg,
                  {"system": system.name, "chips": p + d, "tp": None, "prefill_chips": p, "decode_chips": d})


def serve(workload: WorkloadOptions, arch: ArchConfig, compile_options: CompileOptions, trace: TraceOptions,
          sched: SchedulerOptions, placement: PlacementOptions | None = None,
          system: SystemConfig | None = None) -> ServeResult:
    """Serve the stream on the arch (or the placement's system: `system` loaded from it) and summarise it."""
    srv = server(workload, arch, compile_options, sched, trace.seed, placement, system)
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
                sched: SchedulerOptions, rates: tuple[float, ...], share: float = 0.9,
                placement: PlacementOptions | None = None, system: SystemConfig | None = None) -> RateSweep:
    """The same generated stream (seed, lengths, count) at each rate; step costs simulated once for all."""
    srv = server(workload, arch, compile_options, sched, trace.seed, placement, system)
    return sweep_rates(srv, trace, sched, rates, share)


def sweep_rates(srv: Server, trace: TraceOptions, sched: SchedulerOptions, rates: tuple[float, ...],
                share: float) -> RateSweep:
    """The generated stream at each rate through one server, and the knee."""
    results = tuple(srv.serve(replace(trace, rates=None, rate=r).stream(), sched.slo_ttft, sched.slo_tpot)
                    for r in rates)
    slo = sched.slo_ttft is not None or sched.slo_tpot is not None
    ok = [r for r, res in zip(rates, results, strict=True) if slo and res.summary["slo_attainment"] >= share]
    return RateSweep(rates, results, share, max(ok) if ok else None)


SERVE_WORKLOAD_FIELDS = ("weight_dtype", "activation_dtype", "kv_dtype", "dtype")


def split_serve_options(workload: str, options: dict, caller: str = "serve") -> tuple[
        WorkloadOptions, CompileOptions, TraceOptions, SchedulerOptions, PlacementOptions]:
    """Keyword options of tilesim.serve into their dataclasses; an unknown one is a TypeError naming it."""
    kinds = {f.name: cls for cls in (CompileOptions, TraceOptions, SchedulerOptions, PlacementOptions)
             for f in fields(cls)}
    kinds |= dict.fromkeys(SERVE_WORKLOAD_FIELDS, WorkloadOptions)
    for key in options:
        if key not in kinds:
            raise TypeError(f"{caller}() got an unexpected option '{key}'{did_you_mean(key, kinds)}")
    pick = lambda cls: {k: v for k, v in options.items() if kinds[k] is cls}     # noqa: E731
    return (WorkloadOptions(workload, **pick(WorkloadOptions)), CompileOptions(**pick(CompileOptions)),
            TraceOptions(**pick(TraceOptions)), SchedulerOptions(**pick(SchedulerOptions)),
            PlacementOptions(**pick(PlacementOptions)))
