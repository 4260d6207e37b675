"""Decoder LLM inference on a system of chips: tensor, pipeline, expert and data parallelism (docs/scale-out.md).

Each chip runs the single-chip LLM simulation (sim/studies/llm.py run_llm) of its shard: the model config with
heads/tp, kv_heads/tp (replicated when tp > kv_heads), ffn/tp, vocab/tp, experts/ep and layers/pp, as Megatron-LM
splits it (Shoeybi et al. 2019: QKV and the MLP's first matrices column-parallel, the output and down projections
row-parallel, so each transformer block ends in one all-reduce of its output in the forward pass; with sequence
parallelism, Korthikanti et al. 2022, a reduce-scatter and an all-gather instead). Around the chips' simulated time:

- Tensor parallel: 2 collectives of tokens x hidden per layer (attention and MLP blocks), one more after the
  vocab-parallel embedding, and an all-gather of the logits after the vocab-parallel LM head.
- Expert parallel: attention runs data-parallel over the ep chips (each has batch/ep sequences) and each chip holds
  experts/ep experts; every MoE layer dispatches and combines tokens with a direct all-to-all of tokens x top-k x
  hidden (each of the tp ranks sends 1/tp of it). Load imbalance: chip c holds experts c E/ep .. and serves
  Q_c = sum of their selection probabilities q_e (workloads/moe_routing.py; Zipf-like under the model's
  expert_skew); the busiest chip sets the time, so each stage simulates that chip, whose tokens/ep own tokens
  pick round(ep max_c Q_c) of its local experts (uniform: k, capped at experts/ep). The all-to-all volume stays
  the mean one (its total bytes are exact; the busiest receiver's extra time is not modelled).
- Pipeline parallel: p stages of layers/pp layers (the first holds the embedding, the last the LM head), m
  micro-batches of batch/m sequences, v virtual stages (Megatron's interleaved schedule: chip s holds layer chunks
  s, s+p, ...). Forward-only, a stage's time t_s per micro-batch:
      prefill   T = sum_s t_s / v + (m v - 1) max_s t_s / v + (p v - 1) t_p2p      uniform: (m v + p - 1) t / v
      bubble    1 - m mean_s t_s / T                                             uniform: (p - 1) / (m v + p - 1)
      decode    TPOT = max(m max_s t_s, sum_s t_s + p v t_p2p)   (a token passes every chunk, then returns)
  GPipe and 1F1B order forward and backward passes differently; forward-only inference runs them identically, so
  they differ here only in the activations a training step would stash (training_stash).
- Data parallel: dp independent replicas of the whole layout (the batch is per replica); no communication.
- Overlap: none by default. Tensor- and expert-parallel collectives sit between dependent kernels on the critical
  path. With overlap_comm and sequence parallelism, a block's all-gather runs while its column-parallel GEMMs
  (QKV; up/gate) stream their weights and its reduce-scatter while the row-parallel one (output; down) computes
  chunk by chunk (Megatron-LM --tp-comm-overlap through Transformer Engine's userbuffers; Wang et al., ASPLOS 2023,
  decomposition of dependent communication): per block hidden = min(AG + RS, the block's tp GEMMs' time), the
  rest stays on the critical path. A plain all-reduce's output feeds the residual add and the next norm, so it
  overlaps nothing in inference and overlap_comm leaves it as is. Pipeline sends overlap the next micro-batch's
  compute except the p v - 1 sends on the first micro-batch's path (counted above).
- Energy: every chip's simulated energy (dynamic + its static power while busy), the static power of every chip of
  the system while idle (bubbles, communication, unused chips), and link energy (bytes x hops x pJ/bit).
Chips are numbered tp fastest, then ep, pp, dp (a tp group is contiguous: one node, one torus row).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from tilesim.arch.dtypes import tensor_bytes
from tilesim.arch.errors import InputError
from tilesim.arch.system import SystemConfig, load_system, system_preset_names
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import CompileOptions
from tilesim.core.collectives import NONE, CommCost, collective
from tilesim.core.energy import static_power_mw
from tilesim.core.result import SimResult
from tilesim.studies.llm import LLMResult, run_llm
from tilesim.studies.options import LLMOptions, OptionError, SystemOptions, WorkloadOptions
from tilesim.studies.runs import check_decoder, decoder
from tilesim.workloads import llm as wl
from tilesim.workloads import moe_routing

EMBED_OPS = frozenset({"embed", "embed.scale", "embed.position", "embed.add_position"})
HEAD_OPS = frozenset({"last_position", "last_hidden", "final_norm", "lm_head", "logits_softcap"})
GIB = 2**30


# ---------------------------------------------------------------- pipeline schedules (closed forms)

def bubble_fraction(p: int, m: int, v: int = 1) -> float:
    """Idle share of a uniform forward pipeline: (p - 1) / (m v + p - 1) (Narayanan et al. 2021 with v chunks)."""
    return (p - 1) / (m * v + p - 1)


def pipeline_time(stage_s: tuple[float, ...], m: int, v: int, p2p_s: float) -> float:
    """Forward time of m micro-batches through stages of times stage_s (per micro-batch), v chunks per stage:
    sum t_s / v + (m v - 1) max t_s / v + (p v - 1) t_p2p."""
    p = len(stage_s)
    return sum(stage_s) / v + (m * v - 1) * max(stage_s) / v + (p * v - 1) * p2p_s


def decode_round_time(stage_s: tuple[float, ...], m: int, v: int, p2p_s: float) -> float:
    """Time for every one of m micro-batches to produce one token: the busiest stage's m steps, or one token's trip
    through all p v chunks and back, whichever is longer."""
    return max(m * max(stage_s), sum(stage_s) + len(stage_s) * v * p2p_s) if len(stage_s) > 1 else m * stage_s[0]


def training_stash(schedule: str, p: int, m: int, v: int) -> float:
    """Micro-batches of a stage's activations the first stage holds at its peak in a training step, in units of one
    micro-batch through the whole stage: GPipe m (all forwards before any backward); 1F1B min(m, p) (PipeDream-
    Flush); interleaved (Megatron-LM schedules.py: warm-up (p - 1) 2 + (v - 1) p chunks, plus one) / v."""
    if schedule == "gpipe":
        return float(m)
    if schedule == "1f1b":
        return float(min(m, p))
    return min(m * v, 2 * (p - 1) + (v - 1) * p + 1) / v


def layer_activation_bytes(tokens: int, hidden: int, heads: int, seq: int, tp: int, sp: bool,
                           act_bytes: float) -> float:
    """Training activations a layer stores per micro-batch (Korthikanti et al. 2022, 16-bit, scaled to act_bytes):
    s b h (10 + 24/t + 5 a s/(h t)), with sequence parallelism s b h (34 + 5 a s / h) / t."""
    per = (34 + 5 * heads * seq / hidden) / tp if sp else 10 + 24 / tp + 5 * heads * seq / (hidden * tp)
    return tokens * hidden * per * act_bytes / 2


# ---------------------------------------------------------------- the shard a chip runs

@dataclass(frozen=True)
class Stage:
    """One pipeline stage's shard: its config (the model's layers it holds, split by tp and ep) and which ends
    of the model it holds."""
    index: int
    config: wl.DecoderConfig
    first: bool
    last: bool


def check_layout(cfg: wl.DecoderConfig, o: SystemOptions, batch: int, system: SystemConfig) -> None:
    """The parallel layout must divide the model and the batch and fit the system; one line naming the option."""
    if o.chips > system.chips:
        raise OptionError(("tp", "pp", "ep", "dp"), f"tp x pp x ep x dp = {o.chips} chips, the system "
                                                    f"'{system.name}' has {system.chips}")
    for name, size, what in (("tp", cfg.heads, "heads"), ("tp", cfg.ffn, "ffn (intermediate size)"),
                             ("tp", cfg.expert_ffn or o.tp, "expert_ffn"), ("tp", cfg.shared_ffn or o.tp,
                                                                            "shared_ffn")):
        if size % o.tp:
            raise OptionError(name, f"{cfg.name} has {what} {size}, not divisible by tp {o.tp}")
    if cfg.kv_heads % o.tp and o.tp % cfg.kv_heads:
        raise OptionError("tp", f"{cfg.name} has {cfg.kv_heads} kv heads: tp {o.tp} must divide them or be a "
                                "multiple of them (kv heads replicated)")
    if cfg.layers % (o.pp * o.virtual_stages):
        raise OptionError("pp", f"{cfg.name} has {cfg.layers} layers, not divisible by pp x virtual stages = "
                                f"{o.pp * o.virtual_stages}")
    if o.ep > 1 and (not cfg.experts or cfg.experts % o.ep):
        raise OptionError("ep", f"{cfg.name} has {cfg.experts} routed experts; ep {o.ep} must divide them"
                          if cfg.experts else f"{cfg.name} has no routed experts (ep applies to MoE models)")
    if batch % (o.ep * o.micro_batches):
        raise OptionError("micro_batches", f"the batch ({batch}) must split into ep x micro-batches = "
                                           f"{o.ep * o.micro_batches} equal parts")
    if o.virtual_stages > 1 and (o.pp < 2 or o.micro_batches % o.pp):
        raise OptionError("virtual_stages", f"the interleaved schedule needs pp >= 2 and micro-batches "
                                            f"({o.micro_batches}) a multiple of pp ({o.pp})")


def ep_loads(cfg: wl.DecoderConfig, ep: int) -> tuple[float, ...]:
    """Expected (token, expert) pairs per token that each of the ep chips serves: chip c holds experts
    c E/ep .. (c+1) E/ep - 1 and serves Q_c = sum of their q_e (workloads/moe_routing.py selection_probs; the
    model's expert_skew s ranks experts by popularity, so chip 0 holds the most popular). Uniform: k/ep each."""
    q = moe_routing.selection_probs(cfg.experts, cfg.experts_per_token, cfg.expert_skew)
    n = cfg.experts // ep
    return tuple(sum(q[c * n:(c + 1) * n]) for c in range(ep))


def busiest_top_k(cfg: wl.DecoderConfig, ep: int) -> int:
    """Top-k of the busiest ep chip's shard: its T/ep own tokens stand for the T tokens routed to it, so each
    picks ep x max_c Q_c of the chip's E/ep experts (rounded; at most E/ep). Uniform routing: k (capped at E/ep);
    skewed routing: more, and that chip's expert work and touched weights set the stage's time."""
    return max(1, min(cfg.experts // ep, round(ep * max(ep_loads(cfg, ep)))))


def shard(cfg: wl.DecoderConfig, o: SystemOptions) -> tuple[Stage, ...]:
    """The pipeline stages' shards (each of layers/pp layers: chunks s, s+p, ... under v virtual stages)."""
    per_chunk = cfg.layers // (o.pp * o.virtual_stages)
    tp, ep = o.tp, o.ep
    split = {"heads": cfg.heads // tp, "kv_heads": max(1, cfg.kv_heads // tp), "ffn": cfg.ffn // tp,
             "vocab": math.ceil(cfg.vocab / tp), "expert_ffn": cfg.expert_ffn // tp,
             "shared_ffn": cfg.shared_ffn // tp}
    if cfg.experts:
        split |= {"experts": cfg.experts // ep, "experts_per_token": busiest_top_k(cfg, ep)}
    stages = []
    for s in range(o.pp):
        layers = [c * o.pp * per_chunk + s * per_chunk + i for c in range(o.virtual_stages) for i in range(per_chunk)]
        windows = tuple(cfg.windows[i] for i in layers) if cfg.windows else ()
        dense = sum(1 for i in layers if i < cfg.dense_layers)   # ascending: an MoE model's dense layers come first
        c = replace(cfg, layers=len(layers), windows=windows, dense_layers=dense, **split)
        stages.append(Stage(s, c, s == 0, s == o.pp - 1))
    return tuple(stages)


def end_weight_bytes(cfg: wl.DecoderConfig, wdtype: str) -> tuple[int, int]:
    """(embedding, LM head) weight bytes of a shard: the token (and position) tables; the final norm and an untied
    head table."""
    embed = tensor_bytes(cfg.vocab * cfg.hidden, wdtype)
    if cfg.positional == "learned":
        embed += tensor_bytes((cfg.max_positions + cfg.position_offset) * cfg.hidden, wdtype)
    final_norm = tensor_bytes(cfg.hidden * (1 if cfg.norm == "rms" else 2), wdtype)
    return embed, final_norm + (0 if cfg.tied_embeddings else tensor_bytes(cfg.vocab * cfg.hidden, wdtype))


def stage_weight_bytes(stage: Stage, wdtype: str) -> int:
    """Weights a stage's chip holds: its layers, the embedding on the first stage, the LM head on the last (a tied
    table on both ends, as Megatron keeps a copy on the last stage)."""
    total = wl.weight_bytes(stage.config, wdtype)
    embed, head = end_weight_bytes(stage.config, wdtype)
    if not stage.first:
        total -= embed if not (stage.last and stage.config.tied_embeddings) else 0
    if not stage.last:
        total -= head
    return total


SCORE_OPS = (".attn.scores", ".attn.scale", ".attn.softcap", ".attn.softmax")   # workloads/llm.py's attention chain


def activation_bytes(graph: Graph, fused_attention: bool = True) -> int:
    """The largest working set of live activations of one op (inputs and outputs that are neither weights nor the
    KV cache): the activation memory a chip needs for one micro-batch. Under a fused (flash) attention kernel the
    score and probability matrices live on chip block by block and are not counted."""
    scores = {t for op in graph.ops if fused_attention and op.name.endswith(SCORE_OPS) for t in op.outputs}
    best = 0
    for op in graph.ops:
        names = [n for n in (*op.inputs, *op.outputs) if "cache" not in n and n not in scores]
        best = max(best, sum(graph.tensors[n].nbytes for n in names if not graph.tensors[n].is_param))
    return best


def trimmed(sim: SimResult, stage: Stage) -> tuple[float, float]:
    """(latency s, energy pJ) of a stage's simulation without the kernels of the ends it does not hold: every
    stage graph has the embedding and the LM head; the first stage keeps the embedding, the last the head."""
    drop = (frozenset() if stage.first else EMBED_OPS) | (frozenset() if stage.last else HEAD_OPS)
    gone = [k for k in sim.kernels if k.ops and set(k.ops) <= drop]
    return (sim.latency_s - sum(k.cycles for k in gone) / sim.clock_hz,
            sim.energy_pj - sum(k.energy_pj for k in gone))


# ---------------------------------------------------------------- communication of one micro-batch on one stage

def chip_id(o: SystemOptions, tp: int = 0, ep: int = 0, pp: int = 0, dp: int = 0) -> int:
    """A chip's number: tp fastest, then ep, pp, dp."""
    return tp + o.tp * (ep + o.ep * (pp + o.pp * dp))


def block_comm(system: SystemConfig, o: SystemOptions, stage: Stage, sequences: int, seq: int, hidden: int,
               act: str, first_chip: int = 0) -> CommCost:
    """The collective(s) ending one tensor-parallel block (attention or MLP) of a micro-batch: an all-reduce of
    tokens x hidden, or with sequence parallelism a reduce-scatter and an all-gather."""
    tp_group = tuple(first_chip + chip_id(o, tp=r, pp=stage.index) for r in range(o.tp))
    one = tensor_bytes(sequences * seq * hidden, act)
    if o.sequence_parallel:
        return collective(system, "reduce_scatter", tp_group, one, o.collective_algorithm).then(
            collective(system, "all_gather", tp_group, one, o.collective_algorithm))
    return collective(system, "all_reduce", tp_group, one, o.collective_algorithm)


def stage_comm(system: SystemConfig, o: SystemOptions, stage: Stage, cfg: wl.DecoderConfig, sequences: int,
               seq: int, act: str, tokens: int | None = None, first_chip: int = 0) -> dict[str, CommCost]:
    """Collectives of one micro-batch (`sequences` x `seq` tokens, or `tokens` in all when given: a serving step's
    mixed prefill and decode tokens) on one stage, by kind: tp (per-block all-reduces, or reduce-scatter +
    all-gather, the embedding's all-reduce, the logits' all-gather) and ep (dispatch and combine all-to-alls);
    the layout's chips numbered from first_chip."""
    tp_group = tuple(first_chip + chip_id(o, tp=r, pp=stage.index) for r in range(o.tp))
    ep_group = tuple(first_chip + chip_id(o, ep=r, pp=stage.index) for r in range(o.ep))
    tokens = sequences * seq if tokens is None else tokens
    one = tensor_bytes(tokens * cfg.hidden, act)
    tp_cost = block_comm(system, o, stage, 1, tokens, cfg.hidden, act, first_chip).times(2 * stage.config.layers)
    if stage.first:                     # vocab-parallel embedding: partial rows summed
        tp_cost = tp_cost.then(collective(system, "all_reduce", tp_group, one, o.collective_algorithm))
    if stage.last:                      # vocab-parallel LM head on the last position: logits gathered
        tp_cost = tp_cost.then(collective(system, "all_gather", tp_group,
                                          tensor_bytes(sequences * cfg.vocab, act), o.collective_algorithm))
    moe_layers = sum(1 for i in range(stage.config.layers) if stage.config.moe_layer(i))
    ep_cost = NONE
    if o.ep > 1 and moe_layers:         # each ep chip's own tokens out to their experts and back
        routed = tensor_bytes(tokens * cfg.experts_per_token * cfg.hidden, act) / o.tp
        ep_cost = collective(system, "all_to_all", ep_group, routed).times(2 * moe_layers)
    return {"tp": tp_cost, "ep": ep_cost}


def p2p_cost(system: SystemConfig, o: SystemOptions, sequences: int, seq: int, hidden: int, act: str) -> CommCost:
    """One stage boundary: each tp rank sends its 1/tp of the micro-batch's hidden states to the next stage
    (Megatron's scatter-gather), the tp ranks in parallel; the worst pair of neighbouring stages."""
    if o.pp == 1:
        return NONE
    n = tensor_bytes(sequences * seq * hidden, act) / o.tp
    pairs = [(chip_id(o, pp=s), chip_id(o, pp=(s + 1) % o.pp)) for s in range(o.pp)]
    return max((collective(system, "p2p", pair, n) for pair in pairs), key=lambda c: c.time_s)


# ---------------------------------------------------------------- a run

@dataclass(frozen=True)
class StageRun:
    """One pipeline stage's chip: its simulated run of one micro-batch and the communication around it."""
    stage: Stage
    llm: LLMResult                 # one micro-batch (batch / (ep m) sequences) on one chip, ends untrimmed
    weight_bytes: int
    kv_bytes: int                  # every micro-batch's cache at the end of the run
    activation_bytes: int          # one micro-batch's largest working set, plus the received stage input
    prefill_s: float               # per micro-batch, without the ends the stage does not hold
    prefill_pj: float
    decode_s: float                # mean decode step per micro-batch
    decode_pj: float
    prefill_comm: dict[str, CommCost]
    decode_comm: dict[str, CommCost]
    prefill_hidden_s: float = 0.0  # tp communication hidden behind GEMMs per micro-batch (overlap_comm)
    decode_hidden_s: float = 0.0

    @property
    def memory_bytes(self) -> int:
        """What the chip must hold: weights, KV cache, activations."""
        return self.weight_bytes + self.kv_bytes + self.activation_bytes


@dataclass(frozen=True)
class PhaseCost:
    """One phase of the system run: wall time, energy by part, tokens, and communication."""
    time_s: float                  # prefill: TTFT of the batch; decode: all steps
    tokens: int                    # over every replica
    compute_pj: float              # chips' simulated energy (dynamic + static while busy)
    idle_static_pj: float | None   # static power of every chip while not computing (None: the chip preset gives
                                   # no static power, so it is not modelled; counted as 0 in energy_pj)
    link_pj: float
    comm_s: float                  # per chip on the critical path (tp and ep collectives, pipeline sends)
    link_bytes: float              # carried over links, every hop, whole system
    bubble: float                  # pipeline idle share
    p2p_s: float = 0.0             # one stage-to-stage send of a micro-batch (the worst pair)

    @property
    def energy_pj(self) -> float:
        """All of it."""
        return self.compute_pj + (self.idle_static_pj or 0.0) + self.link_pj


@dataclass(frozen=True)
class SystemResult:
    """A decoder LLM run on a system: per stage (chip) and per system figures (docs/scale-out.md)."""
    model: str
    system: SystemConfig
    options: SystemOptions
    phase: str
    batch: int                     # per replica
    prompt_len: int
    decode_steps: int
    stages: tuple[StageRun, ...]
    prefill: PhaseCost | None
    decode: PhaseCost | None
    tpot_s: float
    static_w: float | None         # one chip's static power (None: not modelled, chip_static_w)

    @property
    def ttft_s(self) -> float:
        """Time to first token of the whole batch (0 without a prefill)."""
        return self.prefill.time_s if self.prefill else 0.0

    @property
    def latency_s(self) -> float:
        """The whole run."""
        return sum(p.time_s for p in self.phases)

    @property
    def phases(self) -> tuple[PhaseCost, ...]:
        """The phases run."""
        return tuple(p for p in (self.prefill, self.decode) if p)

    @property
    def energy_pj(self) -> float:
        """Every chip and link over the run."""
        return sum(p.energy_pj for p in self.phases)

    @property
    def tokens(self) -> int:
        """Prompt tokens in prefill and generated tokens, over all replicas."""
        return sum(p.tokens for p in self.phases)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of the system while decoding (prompt tokens/s without decode)."""
        main = self.decode or self.prefill
        return main.tokens / main.time_s if main and main.time_s else 0.0

    def to_dict(self) -> dict:
        """The JSON mapping `tilesim run --system ... -f json` prints (system_dict)."""
        return system_dict(self)


def _trimmed_decode(r: LLMResult, stage: Stage) -> tuple[float, float]:
    """Mean (latency s, energy pJ) of a decode step, trimmed like the prefill (trapezoid over the spans)."""
    t = e = 0.0
    for span in r.decode:
        (t0, e0), (t1, e1) = trimmed(span.start, stage), trimmed(span.end, stage)
        t += span.steps * (t0 + t1) / 2
        e += span.steps * (e0 + e1) / 2
    steps = r.decode_steps
    return (t / steps, e / steps) if steps else (0.0, 0.0)


GraphFor = Callable[[str, int], Graph]
ATTN_GEMMS = (".attn.q", ".attn.k", ".attn.v", ".attn.qkv", ".attn.o")       # workloads/llm.py op names
MLP_GEMMS = (".up", ".gate", ".gate_up", ".down")


def block_gemm_s(sim: SimResult) -> tuple[float, float]:
    """(attention, MLP) seconds of a simulation's tensor-parallel GEMM kernels: a kernel counts when one of its ops
    is a block's projection (QKV and output; up, gate and down, routed experts included)."""
    attn = mlp = 0.0
    for k in sim.kernels:
        if any(op.endswith(ATTN_GEMMS) and ".attn." in op for op in k.ops):
            attn += k.cycles / sim.clock_hz
        elif any(op.endswith(MLP_GEMMS) and ".mlp" in op for op in k.ops):
            mlp += k.cycles / sim.clock_hz
    return attn, mlp


def hidden_comm_s(o: SystemOptions, per_block_s: float, layers: int, attn_s: float, mlp_s: float) -> float:
    """TP communication hidden behind GEMMs in one pass of a stage: with overlap_comm and sequence parallelism,
    min(layers x per_block_s, attn_s) + min(layers x per_block_s, mlp_s) (each block's all-gather + reduce-scatter
    against its own GEMMs, layers alike); 0 otherwise (an all-reduce feeds the next op: nothing to overlap)."""
    if not (o.overlap_comm and o.sequence_parallel and o.tp > 1):
        return 0.0
    return min(layers * per_block_s, attn_s) + min(layers * per_block_s, mlp_s)


def decode_gemm_s(r: LLMResult) -> tuple[float, float]:
    """Mean (attention, MLP) GEMM seconds of a decode step (trapezoid over the spans, as _trimmed_decode)."""
    a = m = 0.0
    for span in r.decode:
        (a0, m0), (a1, m1) = block_gemm_s(span.start), block_gemm_s(span.end)
        a += span.steps * (a0 + a1) / 2
        m += span.steps * (m0 + m1) / 2
    return (a / r.decode_steps, m / r.decode_steps) if r.decode_steps else (0.0, 0.0)


def run_system(cfg: wl.DecoderConfig, system: SystemConfig, o: SystemOptions, options: CompileOptions,
               phase: str, batch: int, prompt: int, gen_tokens: int, types: wl.DTypes,
               mlp_sparsity: float = 0.0) -> SystemResult:
    """Simulate each pipeline stage's chip on its shard (run_llm) and assemble the system's times and energy."""
    check_layout(cfg, o, batch, system)
    chip = system.chip
    m = o.micro_batches
    seqs = batch // (o.ep * m)                    # sequences of one micro-batch on one chip
    held = prompt + (gen_tokens if phase == "generate" else 1 if phase == "decode" else 0)
    steps = gen_tokens if phase == "generate" else 1 if phase == "decode" else 0
    graphs: dict = {}
    runs: dict = {}
    stage_runs = []
    for stage in shard(cfg, o):
        active = wl.sparse_mlp(stage.config, mlp_sparsity)

        def graph_for(kind: str, size: int, active=active) -> Graph:
            key = (active, kind, size)
            if key not in graphs:
                sizes = {"seq_len": size} if kind == "prefill" else {"context": size}
                graphs[key] = wl.decoder_graph(active, batch=seqs, phase=kind, dtypes=types, **sizes)
            return graphs[key]

        weights = stage_weight_bytes(stage, types.weight)
        kv_per_token = wl.kv_cache_bytes_per_token(stage.config, types.kv)
        kv = m * seqs * held * kv_per_token
        first = graph_for("prefill", prompt) if phase != "decode" else graph_for("decode", prompt)
        boundary = tensor_bytes(seqs * (prompt if phase != "decode" else 1) * cfg.hidden, types.activation) \
            if o.pp > 1 else 0
        act = activation_bytes(first, options.fusion in ("full", "attention")) + boundary
        if weights + kv + act > chip.offchip.capacity_bytes:
            gib = [x / GIB for x in (weights + kv + act, weights, kv, act, chip.offchip.capacity_bytes)]
            raise OptionError(("tp", "pp", "ep"), f"stage {stage.index} needs {gib[0]:.2f} GiB per chip (weights "
                                                  f"{gib[1]:.2f} + KV cache {gib[2]:.2f} + activations {gib[3]:.2f}),"
                                                  f" more than the {gib[4]:.2f} GiB of {chip.offchip.name} on "
                                                  f"{chip.name}; use more chips ({{tp}}, {{pp}}, {{ep}}), a smaller "
                                                  "batch or context, or narrower data types")
        if stage.config not in runs:
            runs[stage.config] = run_llm(graph_for, chip, options, phase, seqs, prompt, gen_tokens, weights,
                                         kv_per_token * m)
        r = runs[stage.config]
        pre = trimmed(r.prefill, stage) if r.prefill else (0.0, 0.0)
        dec = _trimmed_decode(r, stage)
        block = [block_comm(system, o, stage, seqs, n, cfg.hidden, types.activation).time_s for n in (prompt, 1)]
        layers = stage.config.layers
        stage_runs.append(StageRun(
            stage, r, weights, kv, act, pre[0], pre[1], dec[0], dec[1],
            stage_comm(system, o, stage, cfg, seqs, prompt, types.activation) if r.prefill else {},
            stage_comm(system, o, stage, cfg, seqs, 1, types.activation) if r.decode else {},
            hidden_comm_s(o, block[0], layers, *block_gemm_s(r.prefill)) if r.prefill else 0.0,
            hidden_comm_s(o, block[1], layers, *decode_gemm_s(r)) if r.decode else 0.0))
    stages = tuple(stage_runs)
    static_w = chip_static_w(chip)
    prefill = decode = None
    tpot = 0.0
    if phase != "decode":
        p2p = p2p_cost(system, o, seqs, prompt, cfg.hidden, types.activation)
        prefill = _phase(system, o, stages, "prefill", p2p, 1, batch * prompt * o.dp, static_w)
    if steps:
        p2p = p2p_cost(system, o, seqs, 1, cfg.hidden, types.activation)
        decode = _phase(system, o, stages, "decode", p2p, steps, batch * steps * o.dp, static_w)
        tpot = decode.time_s / steps
    return SystemResult(cfg.name, system, o, phase, batch, prompt, steps, stages, prefill, decode, tpot, static_w)


def chip_static_w(chip) -> float | None:
    """A chip's static power in watts from its preset (core/energy.py static_power_mw: energy.static_mw and the
    static components), or None when the preset gives no static figure (not modelled, not invented: tpu-v4,
    edge-npu). The one place system runs read static power."""
    mw = static_power_mw(chip)
    return mw * 1e-3 if mw > 0 else None


def _phase(system: SystemConfig, o: SystemOptions, stages: tuple[StageRun, ...], kind: str, p2p: CommCost,
           steps: int, tokens: int, static_w: float | None) -> PhaseCost:
    """Times and energy of the prefill (steps = 1) or of `steps` decode rounds, from the stages' per-micro-batch
    compute and communication (no overlap: each stage's collectives add to its time)."""
    m, v = o.micro_batches, o.virtual_stages
    compute = [s.prefill_s if kind == "prefill" else s.decode_s for s in stages]
    comms = [s.prefill_comm if kind == "prefill" else s.decode_comm for s in stages]
    hidden = [s.prefill_hidden_s if kind == "prefill" else s.decode_hidden_s for s in stages]
    stage_s = tuple(c + sum(x.time_s for x in cm.values()) - h
                    for c, cm, h in zip(compute, comms, hidden, strict=True))
    if kind == "prefill":
        per_round = pipeline_time(stage_s, m, v, p2p.time_s)
    else:
        per_round = decode_round_time(stage_s, m, v, p2p.time_s)
    wall = per_round * steps
    groups = o.ep * o.dp                             # tp groups per stage (each runs its collectives)
    chips_per_stage = o.tp * o.ep * o.dp
    compute_pj = sum(m * steps * chips_per_stage * (s.prefill_pj if kind == "prefill" else s.decode_pj)
                     for s in stages)
    busy = sum(m * steps * chips_per_stage * c for c in compute)          # chip-seconds computing
    idle_pj = None if static_w is None else max(static_w * (system.chips * wall - busy) * 1e12, 0.0)
    crossings = o.pp * v - 1 + (1 if kind == "decode" and o.pp > 1 else 0)
    link_pj = link_bytes = 0.0
    for cm in comms:
        tp_cost, ep_cost = cm.get("tp", NONE), cm.get("ep", NONE)
        link_pj += m * steps * (groups * tp_cost.energy_pj + o.tp * o.dp * ep_cost.energy_pj)
        link_bytes += m * steps * (groups * tp_cost.link_bytes + o.tp * o.dp * ep_cost.link_bytes)
    sends = m * steps * crossings * o.tp * o.ep * o.dp
    link_pj += sends * p2p.energy_pj
    link_bytes += sends * p2p.link_bytes
    comm_s = max(sum(x.time_s for x in cm.values()) - h for cm, h in zip(comms, hidden, strict=True)) * m * steps + \
        (o.pp * v - 1) * p2p.time_s * steps
    bubble = 1 - m * steps * sum(stage_s) / len(stage_s) / wall if wall else 0.0
    return PhaseCost(wall, tokens, compute_pj, idle_pj, link_pj, min(comm_s, wall), link_bytes,
                     max(bubble, 0.0), p2p.time_s)


def directed_links(system: SystemConfig) -> int:
    """Directed chip-to-chip links of the system at the `link` bandwidth: a switch port per chip (and a network
    port per chip, hierarchical), two per ring neighbour, two per torus dimension per chip."""
    if system.topology == "switch":
        return system.chips
    if system.topology == "hierarchical":
        return 2 * system.chips
    dims = system.dims if system.dims else (system.chips,)
    return sum(2 * system.chips for d in dims if d > 1)


def link_utilization(r: SystemResult, phase: PhaseCost) -> float:
    """Bytes the links carried over what they could carry in the phase (mean over the system's directed links,
    at the `link` bandwidth)."""
    cap = directed_links(r.system) * r.system.link.bytes_per_s * phase.time_s
    return min(phase.link_bytes / cap, 1.0) if cap else 0.0


def system_run(workload: WorkloadOptions, llm: LLMOptions, options: CompileOptions, so: SystemOptions,
               overrides: tuple[str, ...] = (), system: SystemConfig | None = None) -> SystemResult:
    """A system run from options (the CLI and the Python API): the decoder LLM, the system (its chip with the
    --set overrides; or `system`, loaded already) and the layout."""
    if so.system is None:
        raise OptionError(("tp", "pp", "ep", "dp"), "parallelism needs a system: give {system} (a preset such as "
                                                    f"{', '.join(system_preset_names())}, or a system YAML)")
    cfg = decoder(workload, llm)
    if cfg is None:
        raise OptionError("system", f"system runs take decoder LLMs (llama2-7b, llama3.1-70b, ...), not "
                                    f"'{workload.workload}'")
    system = system or load_system(so.system, overrides)
    dtype = system.chip.array.dtype
    prompt = check_decoder(cfg, workload, llm, dtype)
    types = wl.resolve_dtypes(workload.dtypes, workload.graph_dtype(dtype) or dtype)
    return run_system(cfg, system, so, options, llm.run_phase, workload.batch, prompt, llm.gen_tokens, types,
                      llm.mlp_sparsity)


def training_activation_peak_bytes(r: SystemResult, act_bytes: float = 2.0) -> float:
    """Activations the first stage's chip would stash at its peak if the same layout and micro-batches ran a
    training step under the chosen schedule: training_stash x its layers x layer_activation_bytes (16-bit by
    default). Not part of the inference run's memory (forward-only inference stashes nothing)."""
    o, first = r.options, r.stages[0].stage.config
    seqs = r.batch // (o.ep * o.micro_batches)
    per_layer = layer_activation_bytes(seqs * r.prompt_len, first.hidden, first.heads * o.tp, r.prompt_len, o.tp,
                                       o.sequence_parallel, act_bytes)
    return training_stash(o.pipeline_schedule, o.pp, o.micro_batches, o.virtual_stages) * first.layers * per_layer



# ---------------------------------------------------------------- the JSON mapping

def _comm_dict(c: CommCost) -> dict:
    """One collective's figures."""
    return {"time_s": c.time_s, "sent_bytes": c.sent_bytes, "link_bytes": c.link_bytes, "energy_pj": c.energy_pj,
            "steps": c.steps}


def _phase_dict(r: SystemResult, p: PhaseCost) -> dict:
    """A phase's system figures."""
    return {"time_s": p.time_s, "tokens": p.tokens, "energy_pj": p.energy_pj, "j_per_token": p.energy_pj * 1e-12 /
            p.tokens if p.tokens else 0.0, "compute_pj": p.compute_pj, "idle_static_pj": p.idle_static_pj,
            "link_pj": p.link_pj, "comm_s": p.comm_s, "comm_share": p.comm_s / p.time_s if p.time_s else 0.0,
            "link_bytes": p.link_bytes, "link_utilization": link_utilization(r, p), "bubble": p.bubble}


def _stage_dict(s: StageRun) -> dict:
    """A stage chip's figures (every tp and ep rank of the stage is alike)."""
    return {"stage": s.stage.index, "layers": s.stage.config.layers, "heads": s.stage.config.heads,
            "kv_heads": s.stage.config.kv_heads, "ffn": s.stage.config.ffn, "experts": s.stage.config.experts,
            "weight_bytes": s.weight_bytes, "kv_cache_bytes": s.kv_bytes, "activation_bytes": s.activation_bytes,
            "memory_bytes": s.memory_bytes, "prefill_s": s.prefill_s, "prefill_pj": s.prefill_pj,
            "decode_step_s": s.decode_s, "decode_step_pj": s.decode_pj, "prefill_hidden_comm_s": s.prefill_hidden_s,
            "decode_hidden_comm_s": s.decode_hidden_s,
            "prefill_comm": {k: _comm_dict(c) for k, c in s.prefill_comm.items()},
            "decode_comm": {k: _comm_dict(c) for k, c in s.decode_comm.items()}}


def system_dict(r: SystemResult) -> dict:
    """JSON mapping of a system run: the layout, per-system phases and per-stage chips."""
    o, sysm = r.options, r.system
    return {
        "workload": r.model, "system": sysm.name, "chip": sysm.chip.name, "chips": sysm.chips,
        "topology": sysm.topology, "link": sysm.link.name, "network": sysm.network.name if sysm.network else None,
        "tp": o.tp, "pp": o.pp, "ep": o.ep, "dp": o.dp, "micro_batches": o.micro_batches,
        "virtual_stages": o.virtual_stages, "pipeline_schedule": o.pipeline_schedule,
        "sequence_parallel": o.sequence_parallel, "collective_algorithm": o.collective_algorithm,
        "overlap_comm": o.overlap_comm,
        "chips_used": o.chips, "phase": r.phase, "batch": r.batch, "prompt_len": r.prompt_len,
        "gen_tokens": r.decode_steps, "ttft_s": r.ttft_s, "tpot_s": r.tpot_s, "tokens_per_s": r.tokens_per_s,
        "latency_s": r.latency_s, "energy_pj": r.energy_pj, "tokens": r.tokens,
        "j_per_token": r.energy_pj * 1e-12 / r.tokens if r.tokens else 0.0, "chip_static_w": r.static_w,
        "static_power": "modelled" if r.static_w is not None else "not modelled",
        "max_memory_bytes": max(s.memory_bytes for s in r.stages),
        "training_stash_microbatches": training_stash(o.pipeline_schedule, o.pp, o.micro_batches, o.virtual_stages),
        "training_activation_peak_bytes": training_activation_peak_bytes(r),
        "chip_memory_bytes": sysm.chip.offchip.capacity_bytes,
        "prefill": _phase_dict(r, r.prefill) if r.prefill else None,
        "decode": _phase_dict(r, r.decode) if r.decode else None,
        "stages": [_stage_dict(s) for s in r.stages],
    }

# ---------------------------------------------------------------- layouts side by side

LAYOUT_AXES = tuple(f.name for f in fields(SystemOptions))


@dataclass(frozen=True)
class LayoutPoint:
    """One layout of a grid: its settings, and the run or why it could not run (does not divide, does not fit)."""
    point: tuple[tuple[str, Any], ...]
    result: SystemResult | None
    reason: str = ""


def layout_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of layout axes (SystemOptions fields: system, tp, pp, ep, dp, micro_batches, ...)."""
    for key in grid:
        if key not in LAYOUT_AXES:
            raise OptionError("grid", f"'{key}' is not a layout axis; allowed: {', '.join(LAYOUT_AXES)}")
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def run_layouts(workload: WorkloadOptions, llm: LLMOptions, options: CompileOptions, base: SystemOptions,
                points: list[dict[str, Any]], overrides: tuple[str, ...] = ()) -> list[LayoutPoint]:
    """Each layout run on its system (`base` with the point's values); a layout that does not divide the model or
    fit its chips is kept with the one-line reason."""
    out = []
    for point in points:
        try:
            out.append(LayoutPoint(tuple(point.items()), system_run(workload, llm, options, replace(base, **point),
                                                                    overrides)))
        except InputError as e:
            out.append(LayoutPoint(tuple(point.items()), None, str(e)))
    return out
