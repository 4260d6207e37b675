"""Serving schedulers over a request stream: static batching, continuous batching and chunked prefill, with a paged KV
cache (admission control, preemption by recompute).

Time advances step by step; each step's latency and energy come from a StepCostModel (serve_cost.py). Token
bookkeeping: a sequence's prefill (its prompt, or after a preemption its prompt and the tokens generated so far)
ends with a new token; each decode step feeds the last token at context = tokens in the cache and yields the next.
A request of O output tokens is one prefill and O - 1 decode steps (`tilesim run --phase generate --gen-tokens
O-1`). The KV cache is paged (vLLM's PagedAttention): a sequence holds ceil(cached tokens / block size) blocks.

- static: FCFS batches of up to max_batch requests whose whole KV (prompt + output) fits; the batch's prompts are
  padded to its longest and prefilled in one step, then it decodes at its full size (finished rows padded) and its
  longest context until every request is done; arrivals wait for the next batch.
- continuous (Orca / vLLM iteration-level): a step prefills waiting prompts (FCFS, whole, while the batch stays
  <= max_batch, the step's tokens <= max_tokens and their prompt blocks are free) if any can start, else it decodes
  every running sequence; when a decoding sequence needs a block and none is free, the latest-started sequence is
  preempted: its blocks are freed and it waits at the queue's head to recompute its prefill (vLLM's recompute).
- chunked (Sarathi-Serve / vLLM chunked prefill): a step decodes every running sequence first, then fills the rest
  of its max_tokens budget with prefill chunks: unfinished prompts first, then new requests (FCFS) whose blocks fit.

Swap preemption (preemption="swap"): the victim's cache is copied to a slower tier (host memory over a link of
swap_bytes_per_s) instead of dropped, and copied back when it is readmitted, after which it decodes on; each copy
stalls the step it happens in for bytes / bandwidth (vLLM's swap space), with static power over the stall.

Prefilled arrivals (prefilled=True: the decode group of a disaggregated deployment, serve_disagg.py): each request
arrives with its prompt's KV cache and its first token; it is admitted as a swapped-in sequence is (its blocks and
the next token's must be free), without a copy (the transfer is the caller's), and decodes its other O - 1 tokens.
A `handoff` (the prefill group of a disaggregated deployment) says when a finished sequence's blocks may be freed
(when its cache has been sent); until then they stay taken, and a step that cannot start for want of them waits.

Prefix caching (continuous and chunked; vLLM's automatic prefix caching at block granularity): the first request of
a prefix id to prefill its shared prefix leaves those whole blocks in the cache; later requests of the id start
their prefill after them and share the blocks (counted once). Blocks of a prefix no running request uses stay
cached until blocks run short, then go least recently used first. With `prefix_hit_rate` instead (requests without
a prefix id), that share of every prompt (whole blocks) is found already computed: its prefill is skipped, its
blocks are still the sequence's own (no sharing is counted). A prefill always computes the prompt's last token.

Speculative decoding (continuous only; spec_k > 0 and a draft model's step costs): every prefill step is followed
by the draft's prefill of the same tokens; a decode step becomes a round: spec_k draft decode steps propose spec_k
tokens per sequence, one target step verifies them (StepCostModel.verify); each draft token is accepted with
probability `acceptance`, independently, until the first rejection, and the target adds one token of its own, so a
round yields 1 to spec_k + 1 tokens per sequence (spec_k + 1 at acceptance 1), never more than it still needs.
"""
from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tilesim.studies.serve_cost import Cost, StepCostModel
from tilesim.studies.serve_trace import Request

POLICIES = ("static", "continuous", "chunked")


@dataclass(frozen=True)
class SchedulerConfig:
    """A scheduler and its limits; kv_blocks: the cache's capacity in blocks of block_size tokens."""
    policy: str
    max_batch: int
    max_tokens: int
    block_size: int
    kv_blocks: int
    spec_k: int = 0              # speculative decoding: draft tokens per round (0: off)
    acceptance: float = 1.0      # per draft token
    seed: int = 0                # of the acceptance draws
    prefix_hit_rate: float = 0.0  # share of each prompt found in resident prefixes (without prefix ids)
    preemption: str = "recompute"  # or swap
    swap_bytes_per_s: float = 64e9   # the slower tier's link (PCIe 5.0 x16, one direction)
    kv_bytes_per_token: int = 0      # what a swap copies per cached token
    prefilled: bool = False          # a disaggregated decode group: requests arrive with their prompt's KV cache and
                                     # first token (serve_disagg.py), admitted like a swap-in without the copy


@dataclass
class Seq:
    """A request while it is served (mutable state of the scheduler)."""
    req: Request
    cached: int = 0              # tokens whose K and V are in the cache
    target: int = 0              # tokens the current prefill must cache
    generated: int = 0
    blocks: int = 0
    start_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    energy_pj: float = 0.0
    shared_blocks: int = 0       # blocks of a cached prefix it uses (owned by the prefix cache)
    swapped: int = 0             # tokens of its cache held in the slower tier (swap preemption)
    cache_hit_tokens: int = 0    # prompt tokens found in the prefix cache, over its admissions

    @property
    def prefilling(self) -> bool:
        """Whether its prefill is not done."""
        return self.cached < self.target


@dataclass
class PrefixEntry:
    """A cached prefix: its tokens and blocks, the running sequences using it, when it was last used."""
    tokens: int
    blocks: int
    refs: int = 0
    used_s: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    """One step: when, how long, what ran, and the cache and queue around it."""
    start_s: float
    latency_s: float
    energy_pj: float
    sequences: int               # sequences in the step (static: padded rows included)
    prefill_tokens: int
    decode_tokens: int           # tokens the decoding sequences yielded (speculative: accepted + 1 each)
    kv_blocks_used: int          # after the step
    in_system: int               # requests arrived and not finished, at the step's start
    waiting: int                 # of those, not holding cache blocks


@dataclass(frozen=True)
class RequestOutcome:
    """A served (or refused) request."""
    req: Request
    start_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    energy_pj: float = 0.0
    refused: str = ""            # why it was not served ("" when served)
    cache_hit_tokens: int = 0


@dataclass(frozen=True)
class ServeRun:
    """What a scheduler did with a stream: every request, every step, idle time."""
    requests: tuple[RequestOutcome, ...]
    steps: tuple[StepRecord, ...]
    idle_s: float
    idle_energy_pj: float
    end_s: float
    config: SchedulerConfig
    extra: dict = field(default_factory=dict)


def blocks_for(tokens: int, block_size: int) -> int:
    """Cache blocks holding `tokens` tokens: ceil(tokens / block_size)."""
    return -(-tokens // block_size)


def refusal(req: Request, cfg: SchedulerConfig, max_positions: int) -> str:
    """Why a request can never be served ("" if it can)."""
    need = req.prompt_tokens + req.output_tokens - 1 + cfg.spec_k   # cached by the last step (+ its drafts)
    if req.prompt_tokens + req.output_tokens > max_positions:
        return (f"prompt {req.prompt_tokens} + output {req.output_tokens} tokens exceed the model's "
                f"{max_positions} positions")
    if blocks_for(need, cfg.block_size) > cfg.kv_blocks:
        return f"its KV cache ({need} tokens) exceeds the cache ({cfg.kv_blocks * cfg.block_size} tokens)"
    if cfg.policy == "continuous" and req.prompt_tokens > cfg.max_tokens and not cfg.prefilled:
        return f"prompt {req.prompt_tokens} tokens exceeds max_tokens {cfg.max_tokens} per step (use chunked)"
    return ""


class Scheduler:
    """The event loop shared by the policies: arrivals, steps, block accounting, per-request results."""

    def __init__(self, cfg: SchedulerConfig, model: StepCostModel, draft: StepCostModel | None = None,
                 handoff: Callable[[Seq], float] | None = None):
        self.cfg, self.model, self.draft = cfg, model, draft
        self.handoff = handoff                   # a finished sequence -> when its blocks may be freed (its cache sent)
        self.holding: list[tuple[float, int, Seq]] = []     # finished sequences whose blocks are held, by release
        self.rng = np.random.default_rng(cfg.seed)
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []
        self.free = cfg.kv_blocks
        self.now = 0.0
        self.steps: list[StepRecord] = []
        self.batch: list[Seq] = []               # static: the current batch
        self.prefixes: dict[str, PrefixEntry] = {}
        self.stall_s = 0.0                        # swap copies to charge to the next step
        self.swapped_bytes = 0

    # ---- cache blocks
    def grow(self, s: Seq, tokens: int, shared: int = 0) -> bool:
        """Give s the blocks to cache `tokens` tokens in all (`shared` of them from the prefix cache), evicting
        unused prefixes if needed; False (nothing taken) if too few can be freed."""
        need = blocks_for(tokens, self.cfg.block_size) - s.blocks - max(shared, s.shared_blocks)
        if need > self.free and not self.evict(need):
            return False
        if need > 0:
            self.free -= need
            s.blocks += need
        return True

    def evict(self, need: int) -> bool:
        """Drop unused cached prefixes, least recently used first, until `need` blocks are free."""
        idle = sorted((e.used_s, pid) for pid, e in self.prefixes.items() if e.refs == 0)
        for _, pid in idle:
            if self.free >= need:
                break
            self.free += self.prefixes.pop(pid).blocks
        return self.free >= need

    def release_held(self) -> None:
        """Free the blocks of finished sequences whose hold has ended."""
        while self.holding and self.holding[0][0] <= self.now:
            self.release(heapq.heappop(self.holding)[2])

    def release(self, s: Seq) -> None:
        """Free all of s's blocks and its hold on a cached prefix."""
        self.free += s.blocks
        s.blocks = 0
        if s.shared_blocks:
            entry = self.prefixes[s.req.prefix_id]
            entry.refs, entry.used_s = entry.refs - 1, self.now
            s.shared_blocks = 0

    def prefix_len(self, s: Seq) -> int:
        """Prompt tokens s may find in a prefix cache: whole blocks, leaving the prompt's last token to compute."""
        r, b = s.req, self.cfg.block_size
        share = r.prefix_tokens if r.prefix_id is not None else int(self.cfg.prefix_hit_rate * r.prompt_tokens)
        return min(share, r.prompt_tokens - 1) // b * b

    def cached_prefix(self, s: Seq) -> tuple[int, int]:
        """(tokens found in the prefix cache, blocks of them held by the cache) for s's admission now."""
        if self.cfg.policy == "static":
            return 0, 0
        if s.req.prefix_id is None:
            return self.prefix_len(s), 0                # found computed; the blocks are its own
        entry = self.prefixes.get(s.req.prefix_id)
        return (entry.tokens, entry.blocks) if entry is not None else (0, 0)

    def share_prefix(self, s: Seq) -> None:
        """After a prefill chunk: the first sequence past its id's prefix hands those blocks to the cache."""
        pid = s.req.prefix_id
        if pid is None or pid in self.prefixes or s.shared_blocks or self.cfg.policy == "static":
            return
        tokens = self.prefix_len(s)
        if tokens and s.cached >= tokens:
            blocks = tokens // self.cfg.block_size
            self.prefixes[pid] = PrefixEntry(tokens, blocks, 1, self.now)
            s.blocks -= blocks
            s.shared_blocks = blocks

    def preempt(self, s: Seq) -> None:
        """Drop s's cache (recompute: it prefills again) or copy it to the slower tier (swap); it waits at the head
        of the queue."""
        self.release(s)
        self.running.remove(s)
        if self.cfg.preemption == "swap" and not s.prefilling:
            s.swapped = s.cached
            self.copy(s.cached)
        s.cached, s.preemptions = 0, s.preemptions + 1
        self.waiting.appendleft(s)

    def copy(self, tokens: int) -> None:
        """A swap copy of `tokens` tokens' cache over the slower tier's link, charged to the next step."""
        moved = tokens * self.cfg.kv_bytes_per_token
        self.swapped_bytes += moved
        self.stall_s += moved / self.cfg.swap_bytes_per_s

    def swap_in(self, s: Seq) -> bool:
        """Bring a swapped sequence's cache back if its blocks (and the next token's) are free; it decodes on."""
        if not self.grow(s, s.swapped + self.cfg.spec_k + 1):
            return False
        s.cached = s.target = s.swapped
        if s.preemptions:                        # not a prefilled arrival's cache: it came over the groups' link
            self.copy(s.swapped)
        s.swapped = 0
        s.start_s = self.now if s.start_s is None else s.start_s
        self.running.append(s)
        return True

    def admit(self, s: Seq) -> bool:
        """Start (or restart) s's prefill if the blocks of its whole prefill are free (a cached prefix's shared)."""
        target = s.req.prompt_tokens + max(s.generated, 0)
        hit, shared = self.cached_prefix(s)
        if not self.grow(s, target, shared):
            return False
        if shared:
            entry = self.prefixes[s.req.prefix_id]
            entry.refs, entry.used_s = entry.refs + 1, self.now
            s.shared_blocks = shared
        s.target, s.cached = target, hit
        s.cache_hit_tokens += hit
        s.start_s = self.now if s.start_s is None else s.start_s
        self.running.append(s)
        return True

    # ---- the policies: each returns (prefill chunks [(seq, tokens)], decoding seqs)
    def plan_continuous(self) -> tuple[list[tuple[Seq, int]], list[Seq]]:
        """Prefill waiting prompts if any can start, else decode everything running."""
        chunks, tokens = [], 0
        while self.waiting and len(self.running) < self.cfg.max_batch:
            s = self.waiting[0]
            if s.swapped:
                if not self.swap_in(s):
                    break
                self.waiting.popleft()
                continue
            need = s.req.prompt_tokens + s.generated - self.cached_prefix(s)[0]
            if (chunks and tokens + need > self.cfg.max_tokens) or not self.admit(s):   # a recompute may exceed
                break
            self.waiting.popleft()
            chunks.append((s, need))
            tokens += need
        if chunks:
            return chunks, []
        return [], self.decoders()

    def decoders(self) -> list[Seq]:
        """Every running sequence past its prefill, each with a block for its next token; preempts the
        latest-started ones (LIFO) while blocks run short."""
        out = [s for s in self.running if not s.prefilling]
        ahead = self.cfg.spec_k + 1              # cache entries a step writes per sequence
        i = 0
        while i < len(out):
            s = out[i]
            if self.grow(s, s.cached + ahead):
                i += 1
                continue
            victim = self.running[-1]
            self.preempt(victim)
            if victim in out:
                out.remove(victim)
        return out

    def plan_chunked(self) -> tuple[list[tuple[Seq, int]], list[Seq]]:
        """Decode everything running, then prefill chunks up to the step's token budget."""
        decode = self.decoders()
        budget = self.cfg.max_tokens - len(decode)
        chunks = []
        for s in self.running:
            if budget > 0 and s.prefilling:
                n = min(s.target - s.cached, budget)
                chunks.append((s, n))
                budget -= n
        while budget > 0 and self.waiting and len(self.running) < self.cfg.max_batch:
            s = self.waiting[0]
            if s.swapped:                        # decodes from the next step on
                if not self.swap_in(s):
                    break
                self.waiting.popleft()
                continue
            if not self.admit(s):
                break
            self.waiting.popleft()
            n = min(s.target - s.cached, budget)
            chunks.append((s, n))
            budget -= n
        if not chunks and not decode:            # only swap-ins happened: they decode now
            decode = self.decoders()
        return chunks, decode

    def plan_static(self) -> tuple[list[tuple[Seq, int]], list[Seq]]:
        """A new batch when the last is done (prefill padded to its longest prompt), else a decode step of it."""
        if not self.batch:
            while self.waiting and len(self.batch) < self.cfg.max_batch:
                s = self.waiting[0]
                whole = s.req.prompt_tokens + s.req.output_tokens - 1
                if not self.grow(s, whole):
                    break
                self.waiting.popleft()
                s.target, s.start_s = s.req.prompt_tokens, self.now
                self.batch.append(s)
                self.running.append(s)
            return [(s, s.target) for s in self.batch], []
        return [], [s for s in self.batch if s.finish_s is None]

    # ---- the loop
    def run(self, requests: list[Request]) -> ServeRun:
        """Serve the requests (sorted by arrival); refused ones are reported with their reason."""
        outcomes: dict[int, RequestOutcome] = {}
        seqs: list[Seq] = []
        for r in requests:
            positions = min(m.cfg.max_positions for m in (self.model, self.draft) if m is not None)
            why = refusal(r, self.cfg, positions)
            if why:
                outcomes[r.rid] = RequestOutcome(r, refused=why)
            elif self.cfg.prefilled:                 # its prompt cached, its first token out: it decodes on
                seqs.append(Seq(r, swapped=r.prompt_tokens, generated=1))
            else:
                seqs.append(Seq(r))
        plan = {"static": self.plan_static, "continuous": self.plan_continuous, "chunked": self.plan_chunked}[
            self.cfg.policy]
        nxt, done, idle = 0, 0, 0.0
        self.now = seqs[0].req.arrival_s if seqs else 0.0          # the run starts at the first arrival
        while done < len(seqs):
            while nxt < len(seqs) and seqs[nxt].req.arrival_s <= self.now:
                self.waiting.append(seqs[nxt])
                nxt += 1
            self.release_held()
            if not self.waiting and not self.running:
                idle += seqs[nxt].req.arrival_s - self.now
                self.now = seqs[nxt].req.arrival_s
                continue
            arrived = nxt
            in_system, queued = arrived - done, len(self.waiting)
            chunks, decode = plan()
            if not chunks and not decode and self.holding:      # blocks held by sends: wait for one (or an arrival)
                until = min(self.holding[0][0], seqs[nxt].req.arrival_s if nxt < len(seqs) else np.inf)
                idle += until - self.now
                self.now = until
                continue
            if not chunks and not decode:
                raise RuntimeError("serve: a step with nothing to run")    # refusal() rules this out
            finished = self.step(chunks, decode, in_system, queued)
            done += finished
        for s in seqs:
            outcomes[s.req.rid] = RequestOutcome(s.req, s.start_s, s.first_token_s, s.finish_s, s.preemptions,
                                                 s.energy_pj, cache_hit_tokens=s.cache_hit_tokens)
        idle_pj = idle * self.model.static_w * 1e12
        return ServeRun(tuple(outcomes[r.rid] for r in requests), tuple(self.steps), idle, idle_pj, self.now,
                        self.cfg, {"swapped_bytes": self.swapped_bytes})

    def step(self, chunks: list[tuple[Seq, int]], decode: list[Seq], in_system: int, queued: int) -> int:
        """Run one step: cost it, advance time, update every sequence; returns how many requests finished."""
        static = self.cfg.policy == "static"
        if static and decode:                    # the whole batch decodes, padded, at its longest context
            cost = self.model.step([], [max(s.cached for s in decode)] * len(self.batch))
        elif static:                             # prompts padded to the longest
            cost = self.model.step([(max(n for _, n in chunks), 0)] * len(chunks), [])
        elif self.draft is not None:
            cost = self.speculative_cost(chunks, decode)
        else:
            cost = self.model.step([(n, s.cached) for s, n in chunks], [s.cached for s in decode])
        if self.stall_s:                         # swap copies stall the step, static power burning
            cost = cost + Cost(self.stall_s, self.stall_s * self.model.static_w * 1e12)
            self.stall_s = 0.0
        self.now += cost.latency_s
        share = self.energy_shares(chunks, decode, cost)
        finished, yielded = 0, 0
        for s, n in chunks:
            s.cached += n
            s.energy_pj += share[id(s)]
            self.share_prefix(s)
            if not s.prefilling:
                finished += self.emit(s)
        for s in decode:
            made = self.accepted(s) if self.draft is not None else 1
            yielded += made
            s.cached += made
            s.energy_pj += share[id(s)]
            finished += self.emit(s, made)
        if static and all(s.finish_s is not None for s in self.batch):
            for s in self.batch:
                self.release(s)
                self.running.remove(s)
            self.batch = []
        sequences = len(self.batch) if static and self.batch else len(chunks) + len(decode)
        self.steps.append(StepRecord(self.now - cost.latency_s, cost.latency_s, cost.energy_pj, sequences,
                                     sum(n for _, n in chunks), yielded, self.cfg.kv_blocks - self.free,
                                     in_system, queued))
        return finished

    @staticmethod
    def energy_shares(chunks: list[tuple[Seq, int]], decode: list[Seq], cost: Cost) -> dict[int, float]:
        """A step's energy split over its sequences by the tokens each ran."""
        tokens = {id(s): n for s, n in chunks} | {id(s): 1 for s in decode}
        total = sum(tokens.values())
        return {k: cost.energy_pj * v / total for k, v in tokens.items()}

    def speculative_cost(self, chunks: list[tuple[Seq, int]], decode: list[Seq]) -> Cost:
        """A prefill step on the target and then on the draft, or a round: spec_k draft steps and a verification."""
        if chunks:
            shape = [(n, s.cached) for s, n in chunks]
            return self.model.step(shape, []) + self.draft.step(shape, [])
        cost = self.model.verify([s.cached for s in decode], self.cfg.spec_k)
        for i in range(self.cfg.spec_k):
            cost = cost + self.draft.step([], [s.cached + i for s in decode])
        return cost

    def accepted(self, s: Seq) -> int:
        """Tokens a round yields for s: draft tokens accepted before the first rejection, plus the target's own,
        at most what s still needs."""
        k, p = self.cfg.spec_k, self.cfg.acceptance
        drafts = k if p >= 1 else min(k, int(self.rng.geometric(1 - p)) - 1)
        return min(drafts + 1, s.req.output_tokens - s.generated)

    def emit(self, s: Seq, tokens: int = 1) -> int:
        """s yields `tokens` tokens at `now`; returns 1 if it is done (its blocks are freed, unless static)."""
        s.generated += tokens
        if s.first_token_s is None:
            s.first_token_s = self.now
        if s.generated < s.req.output_tokens:
            return 0
        s.finish_s = self.now
        if self.cfg.policy != "static":
            self.running.remove(s)
            until = self.handoff(s) if self.handoff is not None else self.now
            if until > self.now:
                heapq.heappush(self.holding, (until, s.req.rid, s))
            else:
                self.release(s)
        return 1
