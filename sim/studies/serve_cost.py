"""The latency and energy of one serving step, from tilesim's own simulations of the model's graphs.

A step runs T new tokens through the model: prefill chunks (n tokens of a sequence whose first c tokens are already
in the KV cache) and one token for each of b decoding sequences (contexts c_1..c_b). Its cost is split the way the
simulator's own kernel spans split a run (a kernel's span is its end minus the previous kernel's end, so the spans
and their energies, static power included, add up to the run):

    step = dense(T) + sum over chunks attn_prefill(n, c) + attn_decode(b, mean c_j)

- dense(T): every kernel but the attention core (scores, softmax, context) of prefill_graph(batch 1, T tokens):
  projections, MLP, norms, LM head with the weights read once for all T tokens (the point of batching).
- attn_prefill(n, c): the attention-core spans of a prompt with as many query-key pairs as the chunk's n (n + c)
  (its queries see the c cached keys too; tilesim's prefill has no causal mask, docs/workloads.md): a prompt of
  S = sqrt(n (n + c)) tokens, interpolated in pairs (S^2) between token grid points. A chunk pays each attention
  kernel's fixed cost once, as a prompt does; its cached keys are read like a prompt's own keys.
- attn_decode(b, c): decode_graph(batch b, context c) less dense(b): what b decoding sequences add to a step beyond
  their tokens' dense work (reading and attending their caches, LM head rows). It is a whole-graph difference, not
  the attention kernels' spans, because the simulator prefetches a decode step's cache under the projections
  before it, so those spans understate it. Affine in c, so a batch at mixed contexts costs the batch at their mean.

Each quantity is simulated on a grid and interpolated linearly between its points: tokens at 1, 4, 16, 64 (memory-
bound, nearly flat), then powers of two up to 2048 (extrapolated beyond, where dense work is compute-bound and
affine in T); decoding batches at powers of four
(their attention and cache reads are close to linear in batch); contexts at 0, 4096 x powers of four and the model's
last position (attention is affine in context: llama2-7b on h100, a decode step at context 1024 interpolated between
0 and 4095 is within 0.3 % of its simulation at batch 1 to 64; benchmarks/bench_serve.py checks random shapes).
Grid points are simulated when first needed and memoised, so a trace costs a few dozen simulations however long it
is. A model of like layers simulates each point through its 2- and 3-layer cuts, extended to all its layers
(serve_layers.py: within 1e-5 of the whole graph, at the same power-capped clock): ~10x less graph to lower and run
for a 32-layer model.
At grid sizes a prefill-only step of one prompt is `tilesim run --phase prefill` and a decode-only step
`tilesim run --phase decode` (exactly for a model simulated whole, within the cuts' 1e-5 otherwise).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tilesim.arch.config import ArchConfig
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions, Schedule, lower
from tilesim.core.energy import static_power_components_mw
from tilesim.core.result import SimResult
from tilesim.core.simulate import kernel_evaluator, simulate, simulate_at_clock
from tilesim.studies.serve_layers import STACK, simulate_extended, stackable, with_layers
from tilesim.studies.serve_store import StepStore, store_key
from tilesim.workloads import llm as wl

ATTENTION_OPS = ("scores", "scale", "softcap", "softmax", "context")
DENSE_GRID_TOP = 2048       # dense(T) beyond: extrapolated from the last two grid points (compute-bound, affine)
CONTEXT_GRID = 4096         # contexts on the grid: 0 and 4096 x powers of 4, capped at the model's last position
BATCH_BASE = 4              # batches on the grid: powers of 4 (attention is close to linear in batch)


def is_attention(kernel_ops: tuple[str, ...]) -> bool:
    """Whether a kernel holds the attention core (ops named layerN.attn.scores/softmax/context/...)."""
    return any(op.split(".attn.", 1)[-1].split(".", 1)[0] in ATTENTION_OPS for op in kernel_ops if ".attn." in op)


@dataclass(frozen=True)
class Cost:
    """Latency and energy (static power over the latency included)."""
    latency_s: float
    energy_pj: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.latency_s + other.latency_s, self.energy_pj + other.energy_pj)

    def scaled(self, k: float) -> Cost:
        """This cost times k."""
        return Cost(self.latency_s * k, self.energy_pj * k)


ZERO = Cost(0.0, 0.0)


def split_cost(r: SimResult) -> tuple[Cost, Cost]:
    """(everything but attention, attention core) of a simulated graph: kernel spans / clock and kernel energies."""
    att = [k for k in r.kernels if is_attention(k.ops)]
    a = Cost(sum(k.cycles for k in att) / r.clock_hz, sum(k.energy_pj for k in att))
    return Cost(r.latency_s - a.latency_s, r.energy_pj - a.energy_pj), a


def powers_grid(value: float, start: int = 1, base: int = 2) -> tuple[int, int]:
    """The grid points around value: start x powers of `base` (value itself, as an int, below `start`)."""
    if value <= start:
        return int(value), int(value)
    lo = start
    while lo * base <= value:
        lo *= base
    return lo, (lo if lo == value else lo * base)


def token_grid(tokens: float) -> tuple[int, int]:
    """The dense grid points around T: 1, 4, 16, 64 (memory-bound: dense(T) is nearly flat there), then powers of
    two (the knee into compute-bound and beyond)."""
    return powers_grid(tokens, 1, BATCH_BASE) if tokens <= 64 else powers_grid(tokens, 64)


def lerp(x: float, x0: int, x1: int, y0: Cost, y1: Cost) -> Cost:
    """Linear interpolation (or extrapolation) of a Cost between two grid points."""
    if x1 == x0:
        return y0
    t = (x - x0) / (x1 - x0)
    return Cost(y0.latency_s + t * (y1.latency_s - y0.latency_s), y0.energy_pj + t * (y1.energy_pj - y0.energy_pj))


class StepCostModel:
    """Step costs of one decoder model on one arch, from memoised grid simulations."""

    def __init__(self, cfg: wl.DecoderConfig, arch: ArchConfig, options: CompileOptions, dtypes: wl.DTypes,
                 stored: bool = False):
        self.cfg, self.arch, self.options, self.dtypes = cfg, arch, options, dtypes
        self.memo: dict = {}
        self.clock_memos: dict[float, dict] = {}        # tile commands at the clocks a power cap tried
        self.evaluate = kernel_evaluator(arch, options.resolved_timing(arch), options.objective, 0.0, self.memo)
        self.prefill_parts: dict[int, tuple[Cost, Cost]] = {}
        self.decode_parts: dict[tuple[int, int], Cost] = {}
        self.simulations = 0
        self.static_w = sum(static_power_components_mw(arch).values()) / 1e3   # the arch's leakage, W
        self.store = StepStore(store_key("serve-step", cfg, arch, options, dtypes)) if stored else None
        self.stored_points = self.load_points() if self.store is not None else 0

    def load_points(self) -> int:
        """Grid points from the on-disk store (serve_store.py); how many."""
        data = self.store.load()
        try:
            for t, (dl, de, al, ae) in data.get("prefill", {}).items():
                self.prefill_parts[int(t)] = (Cost(float(dl), float(de)), Cost(float(al), float(ae)))
            for bc, (lat, e) in data.get("decode", {}).items():
                b, c = bc.split(",")
                self.decode_parts[int(b), int(c)] = Cost(float(lat), float(e))
        except (TypeError, ValueError, AttributeError):
            self.prefill_parts.clear()
            self.decode_parts.clear()
        return len(self.prefill_parts) + len(self.decode_parts)

    def save_points(self) -> bool:
        """Write the grid to the on-disk store if it simulated points the store lacked; whether it wrote."""
        if self.store is None or len(self.prefill_parts) + len(self.decode_parts) == self.stored_points:
            return False
        data = {"prefill": {str(t): [d.latency_s, d.energy_pj, a.latency_s, a.energy_pj]
                            for t, (d, a) in self.prefill_parts.items()},
                "decode": {f"{b},{c}": [v.latency_s, v.energy_pj] for (b, c), v in self.decode_parts.items()}}
        self.stored_points = len(self.prefill_parts) + len(self.decode_parts)
        return self.store.save(data)

    def simulate(self, make: Callable[[wl.DecoderConfig], Graph]) -> SimResult:
        """The model's graph make(cfg) lowered and simulated under the arch's power cap (the kernel evaluator and
        tile commands shared across graphs); a model of like layers through its cuts to STACK layers, extended to
        all of them (serve_layers.py)."""
        self.simulations += 1
        if stackable(self.cfg):
            cuts = tuple(self.lower(make(with_layers(self.cfg, n))) for n in STACK)
            run = simulate_extended(cuts, self.cfg.layers, self.arch, self.run_at)
            if run is not None:
                return run
        return simulate(self.lower(make(self.cfg)), self.arch, flash_share=0.0, memo=self.memo)

    def lower(self, graph: Graph) -> Schedule:
        """A graph lowered for the arch (the kernel evaluator shared across graphs)."""
        return lower(graph, self.arch, self.options, self.evaluate)

    def run_at(self, schedule: Schedule, arch: ArchConfig) -> SimResult:
        """A schedule simulated at `arch` (self.arch at a clock a power cap tries), no cap; tile commands shared
        among runs at one clock (at_clock changes off-chip fields, which build_program's memo may not span)."""
        memo = self.memo if arch is self.arch else self.clock_memos.setdefault(arch.clock_hz, {})
        return simulate_at_clock(schedule, arch, flash_share=0.0, memo=memo)

    def prefill_at(self, tokens: int) -> tuple[Cost, Cost]:
        """(dense, attention) of prefill_graph(1, tokens), simulated once."""
        if tokens not in self.prefill_parts:
            self.prefill_parts[tokens] = split_cost(self.simulate(
                lambda cfg: wl.prefill_graph(cfg, 1, tokens, self.dtypes)))
        return self.prefill_parts[tokens]

    def decode_at(self, batch: int, context: int) -> Cost:
        """attn_decode at a grid point: decode_graph(batch, context) less dense(batch), simulated once."""
        key = (batch, context)
        if key not in self.decode_parts:
            whole = self.simulate(lambda cfg: wl.decode_graph(cfg, batch, context, self.dtypes))
            dense = self.prefill_at(batch)[0]
            self.decode_parts[key] = Cost(whole.latency_s - dense.latency_s, whole.energy_pj - dense.energy_pj)
        return self.decode_parts[key]

    def dense(self, tokens: int) -> Cost:
        """dense(T): interpolated on the token grid; beyond DENSE_GRID_TOP or the model's positions, extrapolated
        from the last two grid points within them (dense work is affine in T once compute-bound)."""
        limit = min(self.cfg.max_positions, DENSE_GRID_TOP)
        lo, hi = token_grid(tokens)
        if hi > limit:
            lo, hi = token_grid(limit // 2)[0], token_grid(limit)[0]
        return lerp(tokens, lo, hi, self.prefill_at(lo)[0], self.prefill_at(hi)[0])

    def attn_prefill(self, tokens: int, context: int) -> Cost:
        """attn_prefill(n, c): the attention of a prompt with as many query-key pairs, S = sqrt(n (n + c)) tokens,
        interpolated in pairs between the prompts on the token grid around S (exact for c = 0 on the grid)."""
        pairs = tokens * (tokens + context)
        lo, hi = token_grid(math.isqrt(pairs))
        if lo * lo < pairs and lo == hi:
            hi = token_grid(lo + 1)[1]
        return lerp(pairs, lo * lo, hi * hi, self.prefill_at(lo)[1], self.prefill_at(hi)[1])

    def context_grid(self, context: float) -> tuple[int, int]:
        """The context grid points around c: 0, 4096, 16384, ... and the model's last position."""
        top = self.cfg.max_positions - 1
        c = min(max(context, 0.0), top)
        if c < CONTEXT_GRID:
            return 0, min(CONTEXT_GRID, top)
        lo, hi = powers_grid(c, CONTEXT_GRID, 4)
        return min(lo, top), min(hi, top)

    def attn_decode(self, batch: int, context: float) -> Cost:
        """attn_decode(b, c): bilinear in (batch at powers of two, context on its grid)."""
        if batch == 0:
            return ZERO
        c0, c1 = self.context_grid(context)
        b0, b1 = powers_grid(batch, 1, BATCH_BASE)

        def at(b: int) -> Cost:
            return lerp(context, c0, c1, self.decode_at(b, c0), self.decode_at(b, c1))
        return lerp(batch, b0, b1, at(b0), at(b1))

    def verify(self, decode_contexts: list[int], k: int) -> Cost:
        """Speculative decoding's verification step: each sequence runs its last token and k draft tokens (k + 1 rows
        of dense work) and attends its cache once for them: attn_decode at context c + k (the cache reads dominate a
        decode step's attention; the k extra query rows share them, as a GQA group's queries do)."""
        b = len(decode_contexts)
        if b == 0:
            return ZERO
        return self.dense(b * (k + 1)) + self.attn_decode(b, sum(decode_contexts) / b + k)

    def step(self, chunks: list[tuple[int, int]], decode_contexts: list[int]) -> Cost:
        """A step: prefill chunks (tokens, cached context) and decoding sequences (their contexts)."""
        tokens = sum(n for n, _ in chunks) + len(decode_contexts)
        if tokens == 0:
            return ZERO
        cost = self.dense(tokens)
        for n, c in chunks:
            cost = cost + self.attn_prefill(n, c)
        if decode_contexts:
            cost = cost + self.attn_decode(len(decode_contexts), sum(decode_contexts) / len(decode_contexts))
        return cost
