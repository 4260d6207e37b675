"""Prefill/decode disaggregation (DistServe, Zhong et al. OSDI 2024; Splitwise, Patel et al. ISCA 2024): prompts
are prefilled on one group of chips, the KV cache crosses a link, and another group decodes (docs/serving.md).

- Prefill group (prefill_chips, tensor-parallel over them: serve_system.py): the stream's prompts under the
  scheduler chosen (continuous or chunked), each request as if it wanted one output token: its prefill yields the
  first token, so TTFT = prefill finish - arrival. Its blocks stay taken until its cache has been sent (a prefill
  that cannot find blocks waits for them).
- KV transfer: the whole prompt's cache, prompt x KV bytes per token of the model (every layer, every kv head,
  once), sent as each prefill ends, first finished first sent, one transfer at a time over the link between the
  groups (a FIFO queue on it); each of min(prefill, decode) chips sends its share at once over its own port:
      transfer = alpha + bytes / (min(P, D) x B)      (core/collectives.py point_to_point of bytes / min(P, D))
  Its energy is bytes x 8 x pJ/bit of the link.
- Decode group (decode_chips): a request arrives when its cache has; admission waits for the KV cache's blocks
  on the decode group (serve_sched.py prefilled arrivals); it decodes its other O - 1 tokens under the same
  scheduler, with the decode group's cache and its preemption. A request of one output token ends at its prefill.

Energy: both groups' steps, the link, and each group's static power while it is idle over the whole run (first
arrival to last finish).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tilesim.arch.system import Link
from tilesim.core.collectives import point_to_point
from tilesim.studies.serve_sched import RequestOutcome, Scheduler, SchedulerConfig, Seq, ServeRun
from tilesim.studies.serve_trace import Request


@dataclass(frozen=True)
class Transfer:
    """One request's KV cache sent from the prefill to the decode group."""
    rid: int
    ready_s: float               # its prefill's end
    start_s: float               # when the link took it
    end_s: float                 # when the decode group has it
    bytes: int
    energy_pj: float


class LinkQueue:
    """The link between the groups: transfers one at a time, first come first sent (FIFO), each of `ports` chips
    sending its share at once: start = max(ready, link free), end = start + alpha + bytes / (ports x B)."""

    def __init__(self, link: Link, ports: int):
        self.link, self.ports = link, ports
        self.free_s = -np.inf
        self.sent: list[Transfer] = []

    def send(self, rid: int, ready_s: float, n_bytes: int) -> Transfer:
        """Queue a request's cache of n bytes, ready at ready_s; the transfer it gets."""
        one = point_to_point(n_bytes / self.ports, self.link)
        start = max(ready_s, self.free_s)
        self.free_s = start + one.time_s
        t = Transfer(rid, ready_s, start, self.free_s, n_bytes, one.energy_pj * self.ports)
        self.sent.append(t)
        return t


def group_figures(run: ServeRun, chips: int, span_s: float, static_w: float) -> dict:
    """One group's steps over the run: busy time and share, batch and KV occupancy, energy (steps and idle)."""
    lat = np.array([s.latency_s for s in run.steps]) if run.steps else np.zeros(1)
    busy = float(lat.sum()) if run.steps else 0.0
    weigh = lambda xs: float(np.average(np.array(xs), weights=lat)) if busy else 0.0   # noqa: E731
    step_pj = sum(s.energy_pj for s in run.steps)
    idle_pj = max(span_s - busy, 0.0) * static_w * 1e12
    return {"chips": chips, "steps": len(run.steps), "busy_s": busy, "utilization": busy / span_s if span_s else 0.0,
            "kv_blocks": run.config.kv_blocks,
            "mean_batch": weigh([s.sequences for s in run.steps]),
            "max_batch_seen": max((s.sequences for s in run.steps), default=0),
            "mean_kv_occupancy": weigh([s.kv_blocks_used for s in run.steps]) / run.config.kv_blocks,
            "max_kv_occupancy": max((s.kv_blocks_used for s in run.steps), default=0) / run.config.kv_blocks,
            "energy_j": (step_pj + idle_pj) * 1e-12, "idle_energy_j": idle_pj * 1e-12}


@dataclass(frozen=True)
class Disaggregated:
    """Two groups (scheduler configurations and step-cost models) and the link between them; `run` serves a stream
    through prefill, transfer and decode."""
    prefill_config: SchedulerConfig
    prefill_model: Any           # StepCostModel or serve_system.GroupStepCost
    decode_config: SchedulerConfig
    decode_model: Any
    prefill_chips: int
    decode_chips: int
    link: Link
    kv_bytes_per_token: int      # of the whole model: what a token's cache sends

    def run(self, requests: list[Request]) -> ServeRun:
        """The stream through both groups: one outcome per request, both groups' steps (in time order), the
        transfers and each group's figures in `extra`."""
        by_id = {r.rid: r for r in requests}
        link = LinkQueue(self.link, min(self.prefill_chips, self.decode_chips))

        def send(s: Seq) -> float:
            """A prefill's end: its cache queued on the link (none for a request of one token); its blocks are
            held until the link has sent it."""
            r = by_id[s.req.rid]
            if r.output_tokens <= 1:
                return s.finish_s
            return link.send(r.rid, s.finish_s, r.prompt_tokens * self.kv_bytes_per_token).end_s

        first = Scheduler(self.prefill_config, self.prefill_model, handoff=send).run(
            [replace(r, output_tokens=1) for r in requests])
        done = {o.req.rid: o for o in first.requests}
        transfers = {t.rid: t for t in link.sent}
        arrivals = sorted((replace(by_id[rid], arrival_s=t.end_s, prefix_id=None, prefix_tokens=0)
                           for rid, t in transfers.items()), key=lambda r: (r.arrival_s, r.rid))
        second = Scheduler(self.decode_config, self.decode_model).run(arrivals)
        decoded = {o.req.rid: o for o in second.requests}
        outcomes = []
        for r in requests:
            p, d, t = done[r.rid], decoded.get(r.rid), transfers.get(r.rid)
            if p.refused or (d is not None and d.refused):
                why = p.refused or f"decode group: {d.refused}"
                outcomes.append(RequestOutcome(r, refused=why))
                continue
            energy = p.energy_pj + (d.energy_pj + t.energy_pj if d is not None else 0.0)
            outcomes.append(RequestOutcome(r, p.start_s, p.first_token_s, d.finish_s if d is not None else p.finish_s,
                                           p.preemptions + (d.preemptions if d is not None else 0), energy,
                                           cache_hit_tokens=p.cache_hit_tokens))
        served = [o for o in outcomes if not o.refused]
        start = min((o.req.arrival_s for o in served), default=0.0)
        end = max((o.finish_s for o in served), default=start)
        span = end - start
        groups = {"prefill": group_figures(first, self.prefill_chips, span, self.prefill_model.static_w),
                  "decode": group_figures(second, self.decode_chips, span, self.decode_model.static_w)}
        idle_pj = sum(g["idle_energy_j"] for g in groups.values()) * 1e12
        sent = list(transfers.values())
        link_pj = sum(t.energy_pj for t in sent)
        steps = tuple(sorted(first.steps + second.steps, key=lambda s: s.start_s))
        extra = {"swapped_bytes": first.extra.get("swapped_bytes", 0) + second.extra.get("swapped_bytes", 0),
                 "groups": groups, "transfers": sent, "link_energy_pj": link_pj}
        return ServeRun(tuple(outcomes), steps, max(span - groups["decode"]["busy_s"], 0.0), idle_pj, end,
                        self.decode_config, extra)


def disaggregation_summary(run: ServeRun, link: Link) -> dict:
    """The summary's `disaggregation` entry: the groups' figures, the link and the transfers (bytes, time on the
    link, and from prefill end to arrival at the decode group, waiting included)."""
    sent: list[Transfer] = run.extra["transfers"]
    on_link = [t.end_s - t.start_s for t in sent]
    waited = [t.end_s - t.ready_s for t in sent]
    pct = lambda xs: {f"p{p}": float(np.percentile(xs, p)) for p in (50, 99)} if xs else {"p50": None, "p99": None}  # noqa: E731
    return {"groups": run.extra["groups"], "link": link.name, "link_bandwidth_gb_s": link.bandwidth_gb_s,
            "link_latency_us": link.latency_us, "kv_transfers": len(sent),
            "kv_transfer_bytes": sum(t.bytes for t in sent), "kv_transfer_s": pct(on_link),
            "kv_ready_after_prefill_s": pct(waited), "link_energy_j": run.extra["link_energy_pj"] * 1e-12}


def decode_config(config: SchedulerConfig, kv_blocks: int) -> SchedulerConfig:
    """The decode group's scheduler: prefilled arrivals, its own cache, no prefix cache (prompts arrive cached)."""
    return replace(config, prefilled=True, kv_blocks=kv_blocks, prefix_hit_rate=0.0)
