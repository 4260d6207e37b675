"""Decoder LLMs from an HF-style config (Llama, Mistral, Mixtral, Qwen2/3 and MoE, Phi-3, Gemma 1-3, DeepSeek-V2/V3,
GPT-2, OPT, Falcon), in prefill and decode phases.

Sizes follow the models' HF `config.json` files (docs/workloads.md). Graph conventions:
- Token ids (int32) enter an embedding `Gather` that reads only the rows it picks; Gemma scales the embeddings by
  sqrt(hidden); GPT-2 adds learned positions (a second Gather of the position ids).
- Weights, activations and the KV cache have separate data types: `dtypes = (weight, activation, kv)`, or one
  name for all three. Norm scales and biases are stored in the weight type.
- Attention groups the query heads by the kv head they share (GQA/MQA): Q is (B, kv_heads, group*S, head_dim),
  K^T (B, kv_heads, head_dim, T) and V (B, kv_heads, T, head_dim), so the scores MatMul broadcasts nothing and
  K and V are read once per kv head (the packed-GQA layout of FlashDecoding-style kernels). Scores are scaled
  by 1/sqrt(head_dim) with a Mul. Causal masking is not modelled: prefill computes all S x S scores (a masked
  kernel skips about half of them).
- Q, K and V are separate projections (GPT-2's fused c_attn has the same weights and MACs); the K and V
  projections write the KV cache in the kv type: they are graph outputs (`layerN.k`, `layerN.v`).
- The LM head runs on the last position only (what generation needs): prefill gathers the last hidden row,
  then the final norm and the head (a Gemm with the (vocab, hidden) table, transB=1, so tied models reuse the
  embedding table without a transpose). Logits are (batch, vocab).
- Decode is one step for one new token per sequence: the cache of `context` earlier tokens plus the new one is
  read from graph inputs `layerN.k_cache` and `layerN.v_cache` of shape (B, kv_heads, context + 1, head_dim);
  appending the new token is the K/V projection's store (its output `layerN.k` / `layerN.v`).
- Sliding-window layers (Mistral, Phi-3, Gemma-2/3 local layers): decode reads only the last `window` cached
  tokens; prefill attends in chunks of at least 2 x window (window_chunk). Gemma-2 soft-capping is a multiply, tanh
  and multiply on the scores (inside the fused attention kernel) and on the logits.
- MoE layers (Mixtral, Qwen-MoE, DeepSeek): router, the expected touched experts as grouped GEMMs (moe_routing.py),
  shared experts; expert ops are named layerN.mlp.experts*, so a flash `weights: mlp` rule places them too.
- MLA (DeepSeek): the cache is the latent plus one rope key per token; decode uses the absorbed form.
- Falcon: parallel blocks, x + Attn(norm(x)) + MLP(norm(x)) with one shared norm (Falcon-7B) or one per branch
  (new_decoder_architecture); multi-query or grouped K/V; rotary or ALiBi (a per-head slope times the key distance
  added to every score inside the attention kernel: one add per score, no position table).
Not modelled: Gemma's (1 + w) norm offset, RoPE scaling (no cost difference), attention dropout, sampling after
the LM head, DeepSeek-V3's multi-token-prediction module, group-limited routing (a router detail). MLA decode's
fused attention reads its cache once (keys and values are one buffer, as in FlashMLA: AttentionWork.kv_shared).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from math import sqrt
from pathlib import Path
from typing import NamedTuple

from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError, allowed_list, field_error
from tilesim.compiler import Graph, GraphBuilder
from tilesim.workloads import moe_routing

ACTS = ("silu", "gelu_tanh", "gelu", "relu")     # SwiGLU, GeGLU (tanh GELU), plain GELU or ReLU MLP
GATED_ACTS = ("silu", "gelu_tanh")
NORMS = ("rms", "layer")
POSITIONALS = ("rope", "learned", "alibi")
PHASES = ("prefill", "decode")
DEFAULT_SEQ_LEN = 128
DEFAULT_DTYPE = "int8"           # the data type of workloads whose dtype is not given (workloads/__init__.py)


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes and choices of a decoder-only transformer (pre-norm, as in GPT-2 and Llama)."""
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int                   # Q and K per head (MLA: qk_nope_head_dim + qk_rope_head_dim)
    ffn: int                        # the dense MLP's intermediate size
    vocab: int
    act: str = "silu"               # silu: SwiGLU, gelu_tanh: GeGLU (both gated), gelu / relu: plain MLP
    norm: str = "rms"               # rms: RMSNorm (scale), layer: LayerNorm (scale and bias)
    tied_embeddings: bool = False   # the LM head reuses the embedding table
    positional: str = "rope"        # rope: rotary on Q and K, learned: a position table added to the embeddings,
                                    # alibi: a linear bias on the scores (Falcon-RW, BLOOM)
    max_positions: int = 4096
    embed_scale: bool = False       # Gemma multiplies the embeddings by sqrt(hidden)
    biases: bool = False            # biases on every projection and MLP matrix (GPT-2, OPT)
    name: str = "decoder"
    qkv_bias: bool = False          # biases on the Q, K and V projections only (Qwen2)
    qk_norm: bool = False           # RMSNorm over head_dim on every query and key head (Qwen3, Gemma-3)
    sandwich_norm: bool = False     # norms after attention and after the MLP too, 4 per layer (Gemma-2/3)
    windows: tuple[int, ...] = ()   # per layer: sliding-window length, 0 = global attention; () = all global
    attn_softcap: float = 0.0       # scores -> cap * tanh(scores / cap) before the softmax (Gemma-2); 0: none
    final_softcap: float = 0.0      # the same on the logits (Gemma-2); 0: none
    position_offset: int = 0        # extra rows of the learned position table (OPT: 2)
    experts: int = 0                # routed experts per MoE layer (0: every MLP is dense)
    experts_per_token: int = 0      # top-k
    expert_ffn: int = 0             # each routed expert's intermediate size
    shared_ffn: int = 0             # intermediate size of the always-on shared expert(s) together (0: none)
    shared_gate: bool = False       # a sigmoid gate (hidden -> 1) scales the shared expert's output (Qwen2-MoE)
    router_bias: bool = False       # a per-expert bias on the routing scores (DeepSeek-V3's score correction)
    dense_layers: int = 0           # the first layers of an MoE model keep a dense MLP of size ffn (DeepSeek)
    expert_skew: float = 0.0        # routing skew s (moe_routing.py): 0 uniform, > 0 Zipf-like load imbalance
    q_lora_rank: int = 0            # MLA: queries through a rank-r bottleneck (0: a direct projection)
    kv_lora_rank: int = 0           # MLA: keys and values from a cached rank-r latent (0: ordinary attention)
    rope_dim: int = 0               # MLA: per-head rotary dims of Q and K (the decoupled RoPE key is shared)
    v_head_dim: int = 0             # MLA: value dims per head
    parallel_attn: bool = False     # attention and MLP both read the block input: x + Attn(n(x)) + MLP(n'(x))
    shared_norm: bool = False       # parallel blocks: one norm feeds both branches (Falcon-7B, GPT-J)

    def __post_init__(self):
        for field in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_positions"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{self.name}: {field} must be a positive integer, got {value!r}")
        if self.heads % self.kv_heads:
            raise InputError(f"{self.name}: kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        for field, allowed in (("act", ACTS), ("norm", NORMS), ("positional", POSITIONALS)):
            if getattr(self, field) not in allowed:
                raise InputError(f"{self.name}: {field} '{getattr(self, field)}' unknown; allowed: "
                                 f"{allowed_list(allowed)}")
        if self.windows and (len(self.windows) != self.layers or min(self.windows) < 0):
            raise InputError(f"{self.name}: windows must give one window length >= 0 per layer ({self.layers})")
        if self.experts and not (0 < self.experts_per_token <= self.experts and self.expert_ffn > 0
                                 and self.dense_layers <= self.layers and self.gated):
            raise InputError(f"{self.name}: an MoE needs 1 <= experts_per_token <= experts, expert_ffn > 0, "
                             "dense_layers <= layers and a gated activation")
        if (self.kv_lora_rank and not 0 < self.rope_dim < self.head_dim) or (self.kv_lora_rank and self.v_head_dim < 1):
            raise InputError(f"{self.name}: MLA needs 0 < rope_dim < head_dim and v_head_dim > 0")
        if self.shared_norm and not self.parallel_attn:
            raise InputError(f"{self.name}: shared_norm needs parallel_attn (one norm feeding both branches)")
        if self.expert_skew < 0:
            raise InputError(f"{self.name}: expert_skew must be >= 0 (0: uniform routing), got {self.expert_skew:g}")

    @property
    def gated(self) -> bool:
        """True for SwiGLU/GeGLU MLPs (gate and up projections), False for a plain up-act-down MLP."""
        return self.act in GATED_ACTS

    @property
    def norms_per_layer(self) -> int:
        """Norms in one block: 2 (attention, MLP), 4 with sandwich norms, 1 when parallel branches share one."""
        return 4 if self.sandwich_norm else 1 if self.shared_norm else 2

    @property
    def group(self) -> int:
        """Query heads per kv head (1: MHA, heads: MQA)."""
        return self.heads // self.kv_heads

    @property
    def mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3): the cache holds a latent, not per-head K and V."""
        return self.kv_lora_rank > 0

    def window(self, layer: int) -> int:
        """Layer `layer`'s sliding-window length (0: it attends to every earlier token)."""
        return self.windows[layer] if self.windows else 0

    def moe_layer(self, layer: int) -> bool:
        """Whether layer `layer` has routed experts instead of the dense MLP."""
        return self.experts > 0 and layer >= self.dense_layers


# Built-ins: numbers from each model's HF config.json (docs/workloads.md).
GPT2 = DecoderConfig(hidden=768, layers=12, heads=12, kv_heads=12, head_dim=64, ffn=3072, vocab=50257, act="gelu",
                     norm="layer", tied_embeddings=True, positional="learned", max_positions=1024, biases=True,
                     name="gpt2")                                   # openai-community/gpt2
LLAMA2_7B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, ffn=11008, vocab=32000,
                          max_positions=4096, name="llama2-7b")     # meta-llama/Llama-2-7b-hf
LLAMA3_8B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=128256,
                          max_positions=8192, name="llama3-8b")     # meta-llama/Meta-Llama-3-8B
MISTRAL_7B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=32000,
                           max_positions=32768, windows=(4096,) * 32,
                           name="mistral-7b")                       # mistralai/Mistral-7B-v0.1 (sliding_window 4096)
GEMMA_2B = DecoderConfig(hidden=2048, layers=18, heads=8, kv_heads=1, head_dim=256, ffn=16384, vocab=256000,
                         act="gelu_tanh", tied_embeddings=True, max_positions=8192, embed_scale=True,
                         name="gemma-2b")                           # google/gemma-2b
DECODERS: dict[str, DecoderConfig] = {c.name: c for c in (GPT2, LLAMA2_7B, LLAMA3_8B, MISTRAL_7B, GEMMA_2B)}


# ---------------------------------------------------------------- sizes by formula

def param_count(cfg: DecoderConfig) -> int:
    """All parameters, a shared (tied) table once: embeddings, layers (every expert), final norm, LM head."""
    d = cfg.hidden
    norm = d if cfg.norm == "rms" else 2 * d
    layers = sum(_attention_params(cfg) + _mlp_params(cfg, i, active=False) + cfg.norms_per_layer * norm
                 for i in range(cfg.layers))
    embed = cfg.vocab * d + ((cfg.max_positions + cfg.position_offset) * d if cfg.positional == "learned" else 0)
    head = 0 if cfg.tied_embeddings else cfg.vocab * d
    return embed + layers + norm + head


def _attention_params(cfg: DecoderConfig) -> int:
    """One layer's attention: Q, K, V, O matrices and their biases, per-head Q/K norms; MLA's low-rank factors
    (q_a, its norm, q_b; kv_a with the shared rope key, its norm, kv_b) instead of Q, K, V."""
    d, hd = cfg.hidden, cfg.head_dim
    if cfg.mla:
        q_lora = cfg.q_lora_rank
        q = d * q_lora + q_lora + q_lora * cfg.heads * hd if q_lora else d * cfg.heads * hd
        kv = d * (cfg.kv_lora_rank + cfg.rope_dim) + cfg.kv_lora_rank
        kv += cfg.kv_lora_rank * cfg.heads * (hd - cfg.rope_dim + cfg.v_head_dim)
        return q + kv + cfg.heads * cfg.v_head_dim * d
    q, kv = cfg.heads * hd, cfg.kv_heads * hd
    biases = q + 2 * kv + d if cfg.biases else (q + 2 * kv if cfg.qkv_bias else 0)
    return 2 * d * q + 2 * d * kv + biases + (2 * hd if cfg.qk_norm else 0)


def _mlp_params(cfg: DecoderConfig, layer: int, active: bool) -> int:
    """One layer's MLP: the dense one (+ biases), or the router, shared and routed experts (only the top-k an
    average token uses when `active`)."""
    d = cfg.hidden
    if not cfg.moe_layer(layer):
        bias = ((2 * cfg.ffn if cfg.gated else cfg.ffn) + d) if cfg.biases else 0
        return (3 if cfg.gated else 2) * d * cfg.ffn + (0 if active else bias)
    routed = (cfg.experts_per_token if active else cfg.experts) * 3 * d * cfg.expert_ffn
    extra = 0 if active else cfg.experts * cfg.router_bias + d * cfg.shared_gate
    return d * cfg.experts + routed + 3 * d * cfg.shared_ffn + extra


def non_embedding_params(cfg: DecoderConfig) -> int:
    """Weights every token is multiplied by: the layers' matrices (MoE: router, shared and top-k experts) plus the
    LM head (counted also when it is tied to the embedding table); no embedding lookups, norm scales or biases.
    Decode MACs per token = this + attention (for dense, non-MLA models)."""
    d, q, kv = cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    mla_norms = cfg.q_lora_rank + cfg.kv_lora_rank                   # MLA's q_a and kv_a norm scales
    attention = _attention_params(cfg) - mla_norms if cfg.mla else 2 * d * q + 2 * d * kv
    return sum(attention + _mlp_params(cfg, i, active=True) for i in range(cfg.layers)) + cfg.vocab * d


def _nbytes(elements: int, dtype: str) -> int:
    """Bytes of `elements` values of `dtype` (int4 rounds up), as compiler.ir.Tensor counts them."""
    return -(-elements * int(DTYPE_BYTES[dtype] * 2) // 2)


def weight_bytes(cfg: DecoderConfig, weight_dtype: str) -> int:
    """Bytes of all weights in `weight_dtype`: embedding and LM head once each, a tied table once."""
    return _nbytes(param_count(cfg), weight_dtype)


def kv_values_per_token_per_layer(cfg: DecoderConfig) -> int:
    """Cache values one token adds to one layer: K and V of every kv head, or MLA's latent plus its rope key."""
    return cfg.kv_lora_rank + cfg.rope_dim if cfg.mla else 2 * cfg.kv_heads * cfg.head_dim


def kv_cache_bytes_per_token(cfg: DecoderConfig, kv_dtype: str) -> int:
    """KV cache bytes one token adds while every window is still open: layers x (2 x kv_heads x head_dim, or MLA's
    kv_lora_rank + qk_rope_head_dim) values. A sliding-window layer stops growing at its window (kv_cache_bytes)."""
    return _nbytes(cfg.layers * kv_values_per_token_per_layer(cfg), kv_dtype)


def kv_cache_bytes(cfg: DecoderConfig, tokens: int, kv_dtype: str) -> int:
    """KV cache bytes of one sequence holding `tokens` tokens: a sliding-window layer keeps only its last `window`."""
    held = sum(min(tokens, cfg.window(i)) if cfg.window(i) else tokens for i in range(cfg.layers))
    return _nbytes(held * kv_values_per_token_per_layer(cfg), kv_dtype)


@dataclass(frozen=True)
class ExpertLoad:
    """One step's MoE routing in expectation, per MoE layer: experts touched, their weight bytes, tokens each."""
    distinct_experts: float
    expert_read_bytes: int          # routed expert weights read per MoE layer (distinct x one expert's bytes)
    tokens_per_expert: tuple[float, ...]
    moe_layers: int

    @property
    def max_tokens(self) -> float:
        """The most-loaded expert's expected tokens (it bounds a step whose experts run in parallel)."""
        return max(self.tokens_per_expert)


def expert_load(cfg: DecoderConfig, tokens: int, weight_dtype: str) -> ExpertLoad | None:
    """Routing of a step of `tokens` tokens (decode: batch; prefill: batch x seq_len); None for dense models."""
    if not cfg.experts:
        return None
    probs = moe_routing.selection_probs(cfg.experts, cfg.experts_per_token, cfg.expert_skew)
    distinct = moe_routing.expected_distinct_experts(probs, tokens)
    one = _nbytes(3 * cfg.hidden * cfg.expert_ffn, weight_dtype)
    return ExpertLoad(distinct, round(distinct * one), moe_routing.expected_tokens_per_expert(probs, tokens),
                      cfg.layers - cfg.dense_layers)


# ---------------------------------------------------------------- data types

class DTypes(NamedTuple):
    """Data types of weights, activations and the KV cache."""
    weight: str
    activation: str
    kv: str


def resolve_dtypes(dtypes, dtype: str) -> DTypes:
    """DTypes from a (weight, activation, kv) tuple whose None entries take `dtype`, or from one name."""
    if dtypes is None or isinstance(dtypes, str):
        dtypes = (dtypes or dtype,) * 3
    if len(dtypes) != 3:
        raise InputError(f"dtypes: expected (weight, activation, kv), got {tuple(dtypes)!r}")
    out = DTypes(*(d or dtype for d in dtypes))
    for role, value in zip(DTypes._fields, out, strict=False):
        if value not in DTYPE_BYTES:
            raise field_error(f"{role}_dtype", f"unknown '{value}'; allowed: {', '.join(DTYPE_BYTES)}")
    return out


# ---------------------------------------------------------------- graph pieces

def _linear(b: GraphBuilder, x: str, n_out: int, cfg: DecoderConfig, dt: DTypes, name: str,
            out_dtype: str | None = None, bias: bool | None = None) -> str:
    """x @ W with W (in, out) in the weight type (+ bias when `bias`, by default when the model has them on every
    matrix); output in `out_dtype`."""
    w = b.param(f"{name}.w", (b.shape(x)[-1], n_out), dt.weight)
    y = b.add("MatMul", [x, w], name=name, dtype=out_dtype or dt.activation)
    if cfg.biases if bias is None else bias:
        y = b.add("Add", [y, b.param(f"{name}.b", (n_out,), dt.weight)], name=f"{name}.bias")
    return y


def _norm(b: GraphBuilder, x: str, cfg: DecoderConfig, dt: DTypes, name: str, rms: bool = False,
          out_dtype: str | None = None) -> str:
    """RMSNorm (Llama, Gemma: scale only; always when `rms`) or LayerNorm (GPT-2: scale and bias), last axis."""
    d = b.shape(x)[-1]
    if cfg.norm == "rms" or rms:
        scale = b.param(f"{name}.scale", (d,), dt.weight)
        return b.add("RMSNormalization", [x, scale], {"axis": -1, "epsilon": 1e-6}, name=name, dtype=out_dtype)
    params = [b.param(f"{name}.{p}", (d,), dt.weight) for p in ("scale", "bias")]
    return b.add("LayerNormalization", [x, *params], {"axis": -1, "epsilon": 1e-5}, name=name)


def _const(b: GraphBuilder, name: str, dtype: str) -> str:
    """A shape-(1,) constant shared by every op that needs it (not a learned weight)."""
    return name if name in b.tensors else b.param(name, (1,), dtype)


def _permute(b: GraphBuilder, x: str, perm: tuple[int, ...], name: str) -> str:
    """Transpose, or a free Reshape when only unit axes move (decode's S = 1): memory order is unchanged."""
    shape = b.shape(x)
    moved = [a for a in perm if shape[a] != 1]
    if moved == sorted(moved):
        return b.add("Reshape", [x], {"shape": tuple(shape[a] for a in perm)}, name=name)
    return b.add("Transpose", [x], {"perm": perm}, name=name)


def _softcap(b: GraphBuilder, x: str, cap: float, dt: DTypes, name: str) -> str:
    """cap * tanh(x / cap) (Gemma-2's soft-capping of attention scores and logits): a multiply, tanh, multiply."""
    x = b.add("Mul", [x, _const(b, "const.inv_softcap", dt.activation)], {"value": 1 / cap}, name=f"{name}.div")
    x = b.add("Tanh", [x], name=f"{name}.tanh")
    return b.add("Mul", [x, _const(b, "const.softcap", dt.activation)], {"value": cap}, name=name)


def _embed(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, batch: int, seq: int) -> tuple[str, str]:
    """Token embedding Gather (x sqrt(hidden) for Gemma, + learned positions for GPT-2); returns (x, table)."""
    ids = b.input("input_ids", (batch, seq), dtype="int32")
    table = b.param("embed.tokens", (cfg.vocab, cfg.hidden), dt.weight)
    x = b.add("Gather", [table, ids], {"axis": 0}, name="embed", dtype=dt.activation)
    if cfg.embed_scale:   # Gemma: hidden_states * normalizer, normalizer = sqrt(hidden_size) (HF GemmaModel)
        x = b.add("Mul", [x, _const(b, "const.embed_scale", dt.activation)], {"value": sqrt(cfg.hidden)},
                  name="embed.scale")
    if cfg.positional == "learned":   # GPT-2: wte(input_ids) + wpe(position_ids)
        pos_ids = b.input("position_ids", (seq,), dtype="int32")
        rows = cfg.max_positions + cfg.position_offset
        positions = b.param("embed.positions", (rows, cfg.hidden), dt.weight)
        pos = b.add("Gather", [positions, pos_ids], {"axis": 0}, name="embed.position", dtype=dt.activation)
        x = b.add("Add", [x, pos], name="embed.add_position")
    return x, table


def _scores_to_context(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, q: str, kt: str, v: str, p: str) -> str:
    """softmax(Q K^T / sqrt(d) [soft-capped]) V: the chain the fusion pass turns into one attention kernel."""
    scores = b.add("MatMul", [q, kt], name=f"{p}.attn.scores")
    scale = _const(b, "const.inv_sqrt_head_dim", dt.activation)
    scores = b.add("Mul", [scores, scale], {"value": 1 / sqrt(b.shape(q)[-1])}, name=f"{p}.attn.scale")
    if cfg.positional == "alibi":   # slope_h x (key position - query position), made in-kernel: one add per score
        scores = b.add("Add", [scores, _const(b, "const.alibi", dt.activation)], name=f"{p}.attn.alibi")
    if cfg.attn_softcap:
        scores = _softcap(b, scores, cfg.attn_softcap, dt, f"{p}.attn.softcap")
    probs = b.add("Softmax", [scores], {"axis": -1}, name=f"{p}.attn.softmax")
    return b.add("MatMul", [probs, v], name=f"{p}.attn.context", dtype=dt.activation)


def window_chunk(seq: int, window: int) -> int:
    """Prefill query/key chunk of a sliding-window layer: the whole sequence when it is at most 2 x window (or
    there is no window), else the smallest divisor of seq that is >= 2 x window. Chunks attend within themselves:
    2W keys per query, the work of a banded kernel running W-query blocks against the 2W keys covering their
    windows, in the no-causal-mask convention of full layers (S keys per query)."""
    if not window or seq <= 2 * window:
        return seq
    return next(c for c in range(2 * window, seq + 1) if seq % c == 0)


def _attend(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, qkv: tuple[str, str, str], p: str, window: int,
            cache_len: int | None) -> str:
    """Attention of q (B, S, kv, group, hd) over k, v (B, S, kv, hd|vd) (prefill) or over the cache inputs of
    `cache_len` tokens, at most `window` of them (decode); returns the merged heads (B, S, heads x vd)."""
    q, k, v = qkv
    batch, seq, kvh, group, hd = b.shape(q)
    vd = b.shape(v)[-1]
    chunk = seq if cache_len is not None else window_chunk(seq, window)
    if chunk < seq:
        return _attend_chunks(b, cfg, dt, qkv, p, chunk)
    q = _permute(b, q, (0, 2, 3, 1, 4), f"{p}.attn.q_t")                             # (B, kv, group, S, hd)
    q = b.add("Reshape", [q], {"shape": (batch, kvh, group * seq, hd)}, name=f"{p}.attn.q_group")
    if cache_len is None:                                                             # prefill: the S new tokens
        kt = _permute(b, k, (0, 2, 3, 1), f"{p}.attn.k_t")                           # (B, kv, hd, S)
        vv = _permute(b, v, (0, 2, 1, 3), f"{p}.attn.v_t")                           # (B, kv, S, vd)
    else:                                                                             # decode: the cache
        held = min(cache_len, window) if window else cache_len                       # a window keeps its last W
        kc = b.input(f"{p}.k_cache", (batch, kvh, held, hd), dtype=dt.kv)
        vv = b.input(f"{p}.v_cache", (batch, kvh, held, vd), dtype=dt.kv)
        kt = _permute(b, kc, (0, 1, 3, 2), f"{p}.attn.k_cache_t")                    # (B, kv, hd, T)
    ctx = _scores_to_context(b, cfg, dt, q, kt, vv, p)                                # (B, kv, group*S, vd)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, kvh, group, seq, vd)}, name=f"{p}.attn.context_heads")
    ctx = _permute(b, ctx, (0, 3, 1, 2, 4), f"{p}.attn.context_t")                   # (B, S, kv, group, vd)
    return b.add("Reshape", [ctx], {"shape": (batch, seq, kvh * group * vd)}, name=f"{p}.attn.merge_heads")


def _attend_chunks(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, qkv: tuple[str, str, str], p: str,
                   chunk: int) -> str:
    """Sliding-window prefill: the sequence in n = S / chunk chunks, each attending within itself."""
    q, k, v = qkv
    batch, seq, kvh, group, hd = b.shape(q)
    vd, n = b.shape(v)[-1], seq // chunk
    q = b.add("Reshape", [q], {"shape": (batch, n, chunk, kvh, group, hd)}, name=f"{p}.attn.q_chunks")
    q = _permute(b, q, (0, 3, 1, 4, 2, 5), f"{p}.attn.q_t")                          # (B, kv, n, group, C, hd)
    q = b.add("Reshape", [q], {"shape": (batch, kvh, n, group * chunk, hd)}, name=f"{p}.attn.q_group")
    k = b.add("Reshape", [k], {"shape": (batch, n, chunk, kvh, hd)}, name=f"{p}.attn.k_chunks")
    kt = _permute(b, k, (0, 3, 1, 4, 2), f"{p}.attn.k_t")                            # (B, kv, n, hd, C)
    v = b.add("Reshape", [v], {"shape": (batch, n, chunk, kvh, vd)}, name=f"{p}.attn.v_chunks")
    vv = _permute(b, v, (0, 3, 1, 2, 4), f"{p}.attn.v_t")                            # (B, kv, n, C, vd)
    ctx = _scores_to_context(b, cfg, dt, q, kt, vv, p)                                # (B, kv, n, group*C, vd)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, kvh, n, group, chunk, vd)}, name=f"{p}.attn.context_heads")
    ctx = _permute(b, ctx, (0, 2, 4, 1, 3, 5), f"{p}.attn.context_t")                # (B, n, C, kv, group, vd)
    return b.add("Reshape", [ctx], {"shape": (batch, seq, kvh * group * vd)}, name=f"{p}.attn.merge_heads")


def _attention(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, i: int, start: int,
               cache_len: int | None) -> tuple[str, list[str]]:
    """Self-attention of layer i on x (B, S, hidden) whose first token sits at position `start`; K and V come
    from the S new tokens (prefill) or from the cache inputs of `cache_len` tokens (decode). Returns the
    output (B, S, hidden) and the new K and V cache entries (B, S, kv_heads, head_dim)."""
    if cfg.mla:
        return _mla_attention(b, cfg, dt, x, i, start, cache_len)
    p = f"layer{i}"
    batch, seq, _ = b.shape(x)
    kvh, group, hd = cfg.kv_heads, cfg.group, cfg.head_dim
    qkv_bias = cfg.biases or cfg.qkv_bias
    q = _linear(b, x, cfg.heads * hd, cfg, dt, f"{p}.attn.q", bias=qkv_bias)
    k = _linear(b, x, kvh * hd, cfg, dt, f"{p}.attn.k", out_dtype=dt.kv, bias=qkv_bias)
    v = _linear(b, x, kvh * hd, cfg, dt, f"{p}.attn.v", out_dtype=dt.kv, bias=qkv_bias)
    q = b.add("Reshape", [q], {"shape": (batch, seq, kvh, group, hd)}, name=f"{p}.attn.q_heads")
    k = b.add("Reshape", [k], {"shape": (batch, seq, kvh, hd)}, name=f"{p}.attn.k_heads")
    v = b.add("Reshape", [v], {"shape": (batch, seq, kvh, hd)}, name=f"{p}.attn.v_heads")
    if cfg.qk_norm:     # Qwen3, Gemma-3: RMSNorm of every head's query and key over head_dim
        q = _norm(b, q, cfg, dt, f"{p}.attn.q_norm", rms=True)
        k = _norm(b, k, cfg, dt, f"{p}.attn.k_norm", rms=True, out_dtype=dt.kv)
    if cfg.positional == "rope":
        rope = {"head_dim": hd, "position_offset": start}
        q = b.add("RotaryEmbedding", [q], rope, name=f"{p}.attn.q_rope")
        k = b.add("RotaryEmbedding", [k], rope, name=f"{p}.attn.k_rope")
    ctx = _attend(b, cfg, dt, (q, k, v), p, cfg.window(i), cache_len)
    return _linear(b, ctx, cfg.hidden, cfg, dt, f"{p}.attn.o"), [k, v]


def _mla_attention(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, i: int, start: int,
                   cache_len: int | None) -> tuple[str, list[str]]:
    """Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434, section 2.1): the cache holds a normed
    kv_lora_rank latent and one shared rope key per token. Prefill decompresses per-head keys and values from the
    latent (K = [W_UK c, rope key], V = W_UV c). Decode runs the absorbed form: q_nope W_UK per head gives a query
    in latent space, so attention is MQA over the cache with d = kv_lora_rank + rope_dim, and W_UV maps the
    latent context to each head's values. Returns the output and the cache entries (latent, rope key)."""
    p = f"layer{i}"
    batch, seq, _ = b.shape(x)
    h, rank, rope_d, vd = cfg.heads, cfg.kv_lora_rank, cfg.rope_dim, cfg.v_head_dim
    nope = cfg.head_dim - rope_d
    src = x
    if cfg.q_lora_rank:
        src = _linear(b, x, cfg.q_lora_rank, cfg, dt, f"{p}.attn.q_a")
        src = _norm(b, src, cfg, dt, f"{p}.attn.q_a_norm", rms=True)
    q_nope = _linear(b, src, h * nope, cfg, dt, f"{p}.attn.q_nope")                 # q_b's no-rope columns
    q_rope = _linear(b, src, h * rope_d, cfg, dt, f"{p}.attn.q_rope_proj")           # q_b's rope columns
    latent = _linear(b, x, rank, cfg, dt, f"{p}.attn.kv_a")                          # kv_a's latent columns
    latent = _norm(b, latent, cfg, dt, f"{p}.attn.kv_a_norm", rms=True, out_dtype=dt.kv)
    k_rope = _linear(b, x, rope_d, cfg, dt, f"{p}.attn.k_rope_proj", out_dtype=dt.kv)  # kv_a's rope columns
    q_nope = b.add("Reshape", [q_nope], {"shape": (batch, seq, h, nope)}, name=f"{p}.attn.q_nope_heads")
    q_rope = b.add("Reshape", [q_rope], {"shape": (batch, seq, h, rope_d)}, name=f"{p}.attn.q_rope_heads")
    k_rope = b.add("Reshape", [k_rope], {"shape": (batch, seq, 1, rope_d)}, name=f"{p}.attn.k_rope_heads")
    rope = {"head_dim": rope_d, "position_offset": start}
    q_rope = b.add("RotaryEmbedding", [q_rope], rope, name=f"{p}.attn.q_rope")
    k_rope = b.add("RotaryEmbedding", [k_rope], rope, name=f"{p}.attn.k_rope")
    if cache_len is None:
        ctx = _mla_prefill(b, cfg, dt, (q_nope, q_rope, latent, k_rope), p)
    else:
        ctx = _mla_decode(b, cfg, dt, (q_nope, q_rope), p, cache_len)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, seq, h * vd)}, name=f"{p}.attn.merge_heads")
    return _linear(b, ctx, cfg.hidden, cfg, dt, f"{p}.attn.o"), [latent, k_rope]


def _mla_prefill(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, parts: tuple[str, str, str, str], p: str) -> str:
    """Per-head K (B, S, h, nope + rope) and V (B, S, h, vd) decompressed from the latent; MHA over them."""
    q_nope, q_rope, latent, k_rope = parts
    batch, seq, h, rope_d = b.shape(q_rope)
    nope, vd = cfg.head_dim - rope_d, cfg.v_head_dim
    k_nope = _linear(b, latent, h * nope, cfg, dt, f"{p}.attn.k_up", out_dtype=dt.kv)     # kv_b's key columns
    v = _linear(b, latent, h * vd, cfg, dt, f"{p}.attn.v_up", out_dtype=dt.kv)            # kv_b's value columns
    k_nope = b.add("Reshape", [k_nope], {"shape": (batch, seq, h, nope)}, name=f"{p}.attn.k_nope_heads")
    v = b.add("Reshape", [v], {"shape": (batch, seq, h, vd)}, name=f"{p}.attn.v_heads")
    k_rope = b.add("Expand", [k_rope], {"shape": (batch, seq, h, rope_d)}, name=f"{p}.attn.k_rope_heads_all")
    k = b.add("Concat", [k_nope, k_rope], {"axis": -1}, name=f"{p}.attn.k_heads")
    q = b.add("Concat", [q_nope, q_rope], {"axis": -1}, name=f"{p}.attn.q_heads")
    q = b.add("Reshape", [q], {"shape": (batch, seq, h, 1, cfg.head_dim)}, name=f"{p}.attn.q_group_heads")
    ctx = _attend(b, cfg, dt, (q, k, v), p, 0, None)
    return ctx


def _mla_decode(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, parts: tuple[str, str], p: str,
                cache_len: int) -> str:
    """Absorbed decode: per-head q_nope @ W_UK (h, nope, rank); MQA over the cache (B, 1, T, rank + rope) as keys
    and its latent columns as values; the latent context @ W_UV (h, rank, vd) per head."""
    q_nope, q_rope = parts
    batch, seq, h, rope_d = b.shape(q_rope)
    rank, nope, vd = cfg.kv_lora_rank, cfg.head_dim - rope_d, cfg.v_head_dim
    dk = rank + rope_d
    qn = _permute(b, q_nope, (2, 0, 1, 3), f"{p}.attn.q_nope_t")                      # (h, B, S, nope)
    qn = b.add("Reshape", [qn], {"shape": (h, batch * seq, nope)}, name=f"{p}.attn.q_nope_per_head")
    w_uk = b.param(f"{p}.attn.k_up.w", (h, nope, rank), dt.weight)
    q_lat = b.add("MatMul", [qn, w_uk], name=f"{p}.attn.q_absorb")                    # (h, B*S, rank)
    q_lat = b.add("Reshape", [q_lat], {"shape": (h, batch, seq, rank)}, name=f"{p}.attn.q_absorb_heads")
    q_lat = _permute(b, q_lat, (1, 2, 0, 3), f"{p}.attn.q_absorb_t")                  # (B, S, h, rank)
    q = b.add("Concat", [q_lat, q_rope], {"axis": -1}, name=f"{p}.attn.q_heads")      # (B, S, h, dk)
    q = b.add("Reshape", [q], {"shape": (batch, seq, 1, h, dk)}, name=f"{p}.attn.q_group_heads")
    q = _permute(b, q, (0, 2, 3, 1, 4), f"{p}.attn.q_t")                              # (B, 1, h, S, dk)
    q = b.add("Reshape", [q], {"shape": (batch, 1, h * seq, dk)}, name=f"{p}.attn.q_group")
    cache = b.input(f"{p}.kv_cache", (batch, 1, cache_len, dk), dtype=dt.kv)
    kt = _permute(b, cache, (0, 1, 3, 2), f"{p}.attn.k_cache_t")                      # (B, 1, dk, T)
    # V is the latent alone (FlashMLA: head_size_v = kv_lora_rank, the rope key is not a value)
    v = b.add("Slice", [cache], {"starts": (0,), "ends": (rank,), "axes": (3,)}, name=f"{p}.attn.v_latent")
    ctx = _scores_to_context(b, cfg, dt, q, kt, v, p)                                 # (B, 1, h*S, rank)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, h, seq, rank)}, name=f"{p}.attn.context_heads")
    ctx = _permute(b, ctx, (1, 0, 2, 3), f"{p}.attn.context_t")                       # (h, B, S, rank)
    ctx = b.add("Reshape", [ctx], {"shape": (h, batch * seq, rank)}, name=f"{p}.attn.context_per_head")
    w_uv = b.param(f"{p}.attn.v_up.w", (h, rank, vd), dt.weight)
    out = b.add("MatMul", [ctx, w_uv], name=f"{p}.attn.v_absorb")                     # (h, B*S, vd)
    out = b.add("Reshape", [out], {"shape": (h, batch, seq, vd)}, name=f"{p}.attn.v_absorb_heads")
    return _permute(b, out, (1, 2, 0, 3), f"{p}.attn.v_absorb_t")                     # (B, S, h, vd)


def _mlp(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, p: str, ffn: int | None = None,
         part: str = "mlp") -> str:
    """Gated MLP down(act(gate(x)) * up(x)) (SwiGLU: Shazeer 2020, arXiv:2002.05202) or plain down(act(up(x)));
    `ffn` columns (default cfg.ffn), ops named {p}.{part}.*."""
    ffn = ffn or cfg.ffn
    q = f"{p}.{part}"
    if not cfg.gated:   # GPT-2: c_fc, gelu_new (the tanh form), c_proj; OPT: fc1, relu, fc2
        h = _linear(b, x, ffn, cfg, dt, f"{q}.up")
        if cfg.act == "relu":
            h = b.add("Relu", [h], name=f"{q}.relu")
        else:
            h = b.add("Gelu", [h], {"approximate": "tanh"}, name=f"{q}.gelu")
        return _linear(b, h, cfg.hidden, cfg, dt, f"{q}.down")
    gate = _linear(b, x, ffn, cfg, dt, f"{q}.gate")
    if cfg.act == "silu":
        gate = b.add("Silu", [gate], name=f"{q}.silu")
    else:               # Gemma: gelu_pytorch_tanh
        gate = b.add("Gelu", [gate], {"approximate": "tanh"}, name=f"{q}.gelu")
    up = _linear(b, x, ffn, cfg, dt, f"{q}.up")
    h = b.add("Mul", [gate, up], name=f"{q}.gated")
    return _linear(b, h, cfg.hidden, cfg, dt, f"{q}.down")


def _moe(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, p: str) -> str:
    """Mixture of experts (Shazeer et al. 2017; Mixtral, DeepSeekMoE): a router (hidden -> experts, softmax; the
    top-k pick is in its vector work), the expected touched experts as grouped GEMMs of equal load
    (moe_routing.expert_sets: weights read = E[distinct experts] x expert bytes, MACs = tokens x top-k x expert
    MACs), each set's tokens gathered in and its outputs gathered back per token, plus the shared expert(s).
    Experts run one after another on the array, so a step costs the sum over touched experts."""
    batch, seq, d = b.shape(x)
    tokens = batch * seq
    router = _linear(b, x, cfg.experts, cfg, dt, f"{p}.mlp.router", bias=cfg.router_bias)
    b.add("Softmax", [router], {"axis": -1}, name=f"{p}.mlp.router_softmax")
    flat = b.add("Reshape", [x], {"shape": (tokens, d)}, name=f"{p}.mlp.tokens")
    probs = moe_routing.selection_probs(cfg.experts, cfg.experts_per_token, cfg.expert_skew)
    out = None
    for s, es in enumerate(moe_routing.expert_sets(probs, tokens, cfg.expert_ffn)):
        q = f"{p}.mlp.experts{s}"
        rows = b.input(f"{q}.rows", (es.tokens,), dtype="int32")                       # the router's picks
        xs = b.add("Gather", [flat, rows], {"axis": 0}, name=f"{q}.dispatch")           # (m, hidden)
        ys = _mlp(b, cfg, dt, xs, p, es.columns, f"mlp.experts{s}")
        slots = b.input(f"{q}.slots", (batch, seq), dtype="int32")
        y = b.add("Gather", [ys, slots], {"axis": 0}, name=f"{q}.combine")              # (B, S, hidden)
        out = y if out is None else b.add("Add", [out, y], name=f"{q}.sum")
    if cfg.shared_ffn:
        shared = _mlp(b, cfg, dt, x, p, cfg.shared_ffn, "mlp.shared")
        if cfg.shared_gate:     # Qwen2-MoE: sigmoid(x @ w) scales the shared expert
            g = b.add("Sigmoid", [_linear(b, x, 1, cfg, dt, f"{p}.mlp.shared_gate")], name=f"{p}.mlp.shared_sigmoid")
            shared = b.add("Mul", [shared, g], name=f"{p}.mlp.shared_gated")
        out = b.add("Add", [out, shared], name=f"{p}.mlp.shared_sum")
    return out


def _layer(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, i: int, start: int,
           cache_len: int | None) -> tuple[str, list[str]]:
    """Pre-norm block: x + Attn(norm(x)), then + MLP(norm(.)) (Gemma-2/3 also norm each branch's output);
    returns the output and the new cache entries (K and V, or MLA's latent and rope key)."""
    p = f"layer{i}"
    if cfg.parallel_attn:
        return _parallel_layer(b, cfg, dt, x, i, start, cache_len)
    a, new_kv = _attention(b, cfg, dt, _norm(b, x, cfg, dt, f"{p}.attn_norm"), i, start, cache_len)
    if cfg.sandwich_norm:
        a = _norm(b, a, cfg, dt, f"{p}.attn_post_norm")
    x = b.add("Add", [x, a], name=f"{p}.attn.residual")
    h = _norm(b, x, cfg, dt, f"{p}.mlp_norm")
    m = _moe(b, cfg, dt, h, p) if cfg.moe_layer(i) else _mlp(b, cfg, dt, h, p)
    if cfg.sandwich_norm:
        m = _norm(b, m, cfg, dt, f"{p}.mlp_post_norm")
    x = b.add("Add", [x, m], name=f"{p}.mlp.residual")
    names = ("kv_latent", "k_rope") if cfg.mla else ("k", "v")
    # named graph outputs: the cache entries written
    return x, [b.add("Identity", [t], name=f"{p}.{n}") for t, n in zip(new_kv, names, strict=True)]


def _parallel_layer(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, i: int, start: int,
                    cache_len: int | None) -> tuple[str, list[str]]:
    """Parallel block (GPT-J, Falcon): x + Attn(norm(x)) + MLP(norm'(x)), norm' = norm when shared_norm."""
    p = f"layer{i}"
    h = _norm(b, x, cfg, dt, f"{p}.attn_norm")
    a, new_kv = _attention(b, cfg, dt, h, i, start, cache_len)
    hm = h if cfg.shared_norm else _norm(b, x, cfg, dt, f"{p}.mlp_norm")
    m = _moe(b, cfg, dt, hm, p) if cfg.moe_layer(i) else _mlp(b, cfg, dt, hm, p)
    x = b.add("Add", [x, a], name=f"{p}.attn.residual")
    x = b.add("Add", [x, m], name=f"{p}.mlp.residual")
    return x, [b.add("Identity", [t], name=f"{p}.{n}") for t, n in zip(new_kv, ("k", "v"), strict=True)]


def _lm_head(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, table: str) -> str:
    """Last position only: gather its hidden row, final norm, logits (B, vocab) = h @ W^T with W (vocab, hidden)."""
    batch, seq, d = b.shape(x)
    if seq > 1:
        last = b.param("const.last_position", (1,), "int32")
        x = b.add("Gather", [x, last], {"axis": 1}, name="last_position")         # (B, 1, d), B*d read
    x = b.add("Reshape", [x], {"shape": (batch, d)}, name="last_hidden")
    x = _norm(b, x, cfg, dt, "final_norm")
    w = table if cfg.tied_embeddings else b.param("lm_head.w", (cfg.vocab, cfg.hidden), dt.weight)
    logits = b.add("Gemm", [x, w], {"transB": 1}, name="lm_head", dtype=dt.activation)
    return _softcap(b, logits, cfg.final_softcap, dt, "logits_softcap") if cfg.final_softcap else logits


def _decoder(name: str, cfg: DecoderConfig, dt: DTypes, batch: int, seq: int, start: int,
             cache_len: int | None) -> Graph:
    """Embeddings, `cfg.layers` blocks and the LM head; outputs the logits, then every layer's new cache entries."""
    b = GraphBuilder(name, dt.activation)
    x, table = _embed(b, cfg, dt, batch, seq)
    cache = []
    for i in range(cfg.layers):
        x, kv = _layer(b, cfg, dt, x, i, start, cache_len)
        cache += kv
    return b.build([_lm_head(b, cfg, dt, x, table), *cache])


def prefill_graph(cfg: DecoderConfig, batch: int = 1, seq_len: int = DEFAULT_SEQ_LEN,
                  dtypes: DTypes | tuple | str = "bf16") -> Graph:
    """The prompt pass: `seq_len` tokens per sequence attend to each other (full S x S scores, no causal mask),
    every layer writes their K and V to the cache, and the LM head runs on the last position."""
    dt = resolve_dtypes(dtypes, "bf16")
    return _decoder(f"{cfg.name}.prefill", cfg, dt, batch, seq_len, 0, None)


def decode_graph(cfg: DecoderConfig, batch: int = 1, context: int = 1024,
                 dtypes: DTypes | tuple | str = "bf16") -> Graph:
    """One generation step: one new token per sequence at position `context`; attention reads the KV cache inputs
    of context + 1 tokens (the cache including the new token, whose K and V the projections store)."""
    dt = resolve_dtypes(dtypes, "bf16")
    return _decoder(f"{cfg.name}.decode", cfg, dt, batch, 1, context, context + 1)


def sparse_mlp(cfg: DecoderConfig, sparsity: float) -> DecoderConfig:
    """The decoder as a token sees it when a share `sparsity` of MLP neurons is skipped (a ReLU-fied model or a
    predictor, as in LLM-in-a-flash): only the active rows of gate/up and columns of down are fetched and used,
    so MLP compute and weight traffic shrink alike; the predictor's own cost is not counted. MoE models: the same
    share of every routed and shared expert's neurons (each expert is an MLP; the router is not sparsified)."""
    if not 0 <= sparsity < 1:
        raise field_error("mlp_sparsity", f"must be >= 0 and < 1, got {sparsity:g}")
    if not sparsity:
        return cfg
    keep = lambda n: max(1, round(n * (1 - sparsity))) if n else 0     # noqa: E731
    return replace(cfg, ffn=keep(cfg.ffn), expert_ffn=keep(cfg.expert_ffn), shared_ffn=keep(cfg.shared_ffn))


def window_bends(cfg: DecoderConfig) -> tuple[int, ...]:
    """Decode contexts at which a sliding window fills (a step at context c reads min(c + 1, W) cached tokens, so
    its attention stops growing past c = W - 1): where a generation's step cost bends."""
    return tuple(sorted({w - 1 for w in cfg.windows if w}))


def decoder_graph(cfg: DecoderConfig, *, batch: int = 1, phase: str | None = None, seq_len: int | None = None,
                  context: int | None = None, dtypes: DTypes | tuple | str = "bf16") -> Graph:
    """The graph of one phase with command-line checks: prefill (default) takes --seq-len, decode --context."""
    phase = phase or ("decode" if context is not None else "prefill")
    if phase not in PHASES:
        raise field_error("phase", f"got '{phase}'; a single graph is one of {', '.join(PHASES)} "
                         "(generate runs a prefill and decode steps)")
    if phase == "prefill":
        if context is not None:
            raise field_error("context", "applies to --phase decode; prefill processes --seq-len tokens")
        seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
        if seq_len > cfg.max_positions:
            raise field_error("seq_len", f"{cfg.name} has {cfg.max_positions} positions, got {seq_len}")
        return prefill_graph(cfg, batch, seq_len, dtypes)
    if seq_len is not None:
        raise field_error("seq_len", "decode takes --context (tokens already in the KV cache), not --seq-len")
    if context is None:
        raise field_error("phase decode", "needs --context (tokens already in the KV cache)")
    if context + 1 > cfg.max_positions:
        raise field_error("context", f"{cfg.name} has {cfg.max_positions} positions; a decode step at context "
                         f"{context} needs {context + 1}")
    return decode_graph(cfg, batch, context, dtypes)


# ---------------------------------------------------------------- HF config.json

# model_type -> DecoderConfig defaults of the family (HF's *Config classes' defaults where the file omits a field).
_ROPE = {"act": "silu", "norm": "rms", "positional": "rope", "tied_embeddings": False}
_GEMMA = {"act": "gelu_tanh", "norm": "rms", "positional": "rope", "tied_embeddings": True, "embed_scale": True}
HF_FAMILIES: dict[str, dict] = {
    "llama": _ROPE | {"max_positions": 2048},
    "mistral": _ROPE | {"max_positions": 131072},
    "mixtral": _ROPE | {"max_positions": 131072},
    "qwen2": _ROPE | {"max_positions": 32768, "qkv_bias": True},
    "qwen2_moe": _ROPE | {"max_positions": 32768, "qkv_bias": True, "shared_gate": True},
    "qwen3": _ROPE | {"max_positions": 32768, "qk_norm": True},
    "qwen3_moe": _ROPE | {"max_positions": 32768, "qk_norm": True},
    "phi3": _ROPE | {"max_positions": 4096},
    "gemma": _GEMMA | {"max_positions": 8192},
    "gemma2": _GEMMA | {"max_positions": 8192, "sandwich_norm": True},
    "gemma3_text": _GEMMA | {"max_positions": 131072, "sandwich_norm": True, "qk_norm": True},
    "deepseek_v2": _ROPE | {"max_positions": 2048},
    "deepseek_v3": _ROPE | {"max_positions": 4096},
    "gpt2": {"act": "gelu", "norm": "layer", "positional": "learned", "tied_embeddings": True, "biases": True,
             "max_positions": 1024},
    "falcon": {"act": "gelu", "norm": "layer", "positional": "rope", "tied_embeddings": True,
               "max_positions": 2048},
    "opt": {"act": "relu", "norm": "layer", "positional": "learned", "tied_embeddings": True, "biases": True,
            "max_positions": 2048, "position_offset": 2},     # OPTLearnedPositionalEmbedding: offset 2
}
HF_ACTS = {"silu": "silu", "swish": "silu", "gelu": "gelu_tanh", "gelu_new": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
# Fields whose other values change the cost in ways tilesim does not model: field -> the value it supports.
HF_FAMILY_FIELDS = {"falcon": ("alibi",)}      # fields of HF_UNMODELLED that a family reads itself
HF_UNMODELLED = {"mlp_bias": False, "attention_bias": False, "partial_rotary_factor": 1.0, "alibi": False,
                 "is_encoder_decoder": False, "add_cross_attention": False, "quantization_config": None,
                 "do_layer_norm_before": True, "moe_layer_freq": 1, "decoder_sparse_step": 1, "mlp_only_layers": [],
                 "enable_bias": True}


MAX_HF_INT = 2**31 - 1      # any size field of a config.json (the largest real ones, vocabularies, are ~2**18)
MAX_LAYERS = 1024           # decoder layers per model (the largest published have ~130); a run builds each
MAX_JSON_BYTES = 1 << 20    # a config.json is a few KiB


def _short(value) -> str:
    """repr(value) for messages, cut to 60 characters (a huge integer by its size)."""
    text = f"an integer of {value.bit_length()} bits" if isinstance(value, int) and value.bit_length() > 64 \
        else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hf_count(raw: dict, source: str, name: str) -> int:
    """An optional count field (absent or null: 0): an integer between 0 and MAX_HF_INT."""
    value = raw.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HF_INT:
        raise InputError(f"{source}: {name} must be an integer between 0 and {MAX_HF_INT:,} or null, got "
                         f"{_short(value)}")
    return value


def _hf_text(raw: dict, source: str, name: str) -> str | None:
    """An optional string field (absent or null: None)."""
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{source}: {name} must be a string, got {_short(value)}")
    return value


def _hf_field(raw: dict, source: str, names: tuple[str, ...], default=None, required: bool = True):
    """The first of `names` present (and not null) in `raw`, else `default`; InputError if required and missing."""
    for n in names:
        if raw.get(n) is not None:
            value = raw[n]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{source}: {n} must be a positive integer, got {_short(value)}")
            if value > MAX_HF_INT:
                raise InputError(f"{source}: {n} must be at most {MAX_HF_INT:,}, got {_short(value)}")
            return value
    if required:
        alt = f" (or '{names[1]}')" if len(names) > 1 else ""
        raise InputError(f"{source}: missing field '{names[0]}'{alt}; expected an HF-style config.json")
    return default


def _hf_float(raw: dict, source: str, name: str) -> float:
    """A non-negative number field (null or absent: 0)."""
    value = raw.get(name) or 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_HF_INT:
        raise InputError(f"{source}: {name} must be a number between 0 and {MAX_HF_INT:,} or null, got "
                         f"{_short(value)}")
    return float(value)


def config_from_hf(raw: dict, source: str = "config.json") -> DecoderConfig:
    """A DecoderConfig from an HF `config.json` dict: Llama-style keys (llama, mistral, mixtral, qwen2/3 and their
    MoE, phi3, gemma 1-3, deepseek v2/v3), GPT-2's n_embd/n_layer/... or OPT's ffn_dim."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a JSON object (an HF-style config.json)")
    model_type = _hf_text(raw, source, "model_type") or ("gpt2" if "n_embd" in raw else "llama")
    if model_type == "gemma3" and isinstance(raw.get("text_config"), dict):     # multimodal wrapper: text decoder
        return replace(config_from_hf({"model_type": "gemma3_text"} | raw["text_config"], source),
                       name=_hf_name(raw, source))
    if model_type not in HF_FAMILIES:
        raise InputError(f"{source}: model_type '{model_type}' is not supported; supported: "
                         f"{allowed_list(HF_FAMILIES)}")
    _hf_check_unmodelled(raw, source, model_type)
    fields = dict(HF_FAMILIES[model_type])
    hidden = _hf_field(raw, source, ("hidden_size", "n_embd"))
    layers = _hf_field(raw, source, ("num_hidden_layers", "n_layer"))
    if layers > MAX_LAYERS:
        raise InputError(f"{source}: {layers:,} layers, more than the {MAX_LAYERS:,} tilesim builds (the largest "
                         "published decoders have about 130)")
    heads = _hf_field(raw, source, ("num_attention_heads", "n_head"))
    kv_heads = _hf_field(raw, source, ("num_key_value_heads",), heads, required=False)
    head_dim = _hf_field(raw, source, ("head_dim",), None, required=False)
    if model_type.startswith("deepseek"):
        fields |= _hf_mla(raw, source)
        head_dim, kv_heads = fields.pop("head_dim"), heads
    if model_type == "falcon":
        fields |= _hf_falcon(raw, source, heads)
        kv_heads = fields.pop("kv_heads")
    if head_dim is None:
        if hidden % heads:
            raise InputError(f"{source}: num_attention_heads ({heads}) must divide hidden_size ({hidden}) when "
                             "head_dim is absent")
        head_dim = hidden // heads
    if heads % kv_heads:
        raise InputError(f"{source}: num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads})")
    fields["ffn"] = _hf_ffn(raw, source, model_type, hidden)
    fields["max_positions"] = _hf_field(raw, source, ("max_position_embeddings", "n_positions"),
                                        fields["max_positions"], required=False)
    if model_type == "opt":
        fields["act"] = _hf_opt_act(raw, source, hidden)
    elif model_type not in ("gpt2", "falcon"):
        fields["act"] = _hf_act(raw, source, fields["act"])
    tied = raw.get("tie_word_embeddings", fields["tied_embeddings"])
    if not isinstance(tied, bool):
        raise InputError(f"{source}: tie_word_embeddings must be true or false, got {tied!r}")
    fields["tied_embeddings"] = tied
    fields |= _hf_moe(raw, source, model_type, fields["ffn"])
    fields["windows"] = _hf_windows(raw, source, model_type, layers)
    if model_type == "gemma2":
        fields |= {"attn_softcap": _hf_float(raw, source, "attn_logit_softcapping"),
                   "final_softcap": _hf_float(raw, source, "final_logit_softcapping")}
    return DecoderConfig(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                         vocab=_hf_field(raw, source, ("vocab_size",)), name=_hf_name(raw, source), **fields)


def _hf_name(raw: dict, source: str) -> str:
    """The model's name: the last part of _name_or_path, else the file's stem."""
    return Path(str(raw.get("_name_or_path") or "")).name or Path(source).stem


def _hf_check_unmodelled(raw: dict, source: str, model_type: str) -> None:
    """InputError naming the first field whose value changes the cost in a way tilesim does not model (fields a
    family's own reader handles, HF_FAMILY_FIELDS, excepted)."""
    for field, supported in HF_UNMODELLED.items():
        if field in HF_FAMILY_FIELDS.get(model_type, ()):
            continue
        value = raw.get(field, supported)
        if value != supported and not (supported == [] and value is None):
            raise InputError(f"{source}: {field} = {json.dumps(value)} changes the cost in a way tilesim does not "
                             f"model (supported: {json.dumps(supported)})")


def _hf_ffn(raw: dict, source: str, model_type: str, hidden: int) -> int:
    """The dense MLP's intermediate size (GPT-2: n_inner or 4 x hidden; OPT: ffn_dim)."""
    if model_type == "gpt2":
        return _hf_field(raw, source, ("n_inner",), 4 * hidden, required=False)
    if model_type == "falcon":
        return _hf_field(raw, source, ("ffn_hidden_size",), 4 * hidden, required=False)
    if model_type == "opt":
        return _hf_field(raw, source, ("ffn_dim",))
    if model_type in ("qwen3_moe",) or (model_type.startswith("deepseek") and raw.get("n_routed_experts")
                                        and not raw.get("first_k_dense_replace")):
        return _hf_field(raw, source, ("intermediate_size",), 1, required=False)   # unused: every layer is MoE
    return _hf_field(raw, source, ("intermediate_size",))


def _hf_moe(raw: dict, source: str, model_type: str, ffn: int) -> dict:
    """MoE fields: routed experts, top-k, expert FFN, shared experts, leading dense layers; {} for dense models."""
    if model_type == "mixtral":
        experts = _hf_field(raw, source, ("num_local_experts",), 8, required=False)
        return {"experts": experts, "experts_per_token": _hf_field(raw, source, ("num_experts_per_tok",), 2,
                                                                   required=False), "expert_ffn": ffn}
    if model_type in ("qwen2_moe", "qwen3_moe"):
        out = {"experts": _hf_field(raw, source, ("num_experts",)),
               "experts_per_token": _hf_field(raw, source, ("num_experts_per_tok",)),
               "expert_ffn": _hf_field(raw, source, ("moe_intermediate_size",))}
        if model_type == "qwen2_moe":
            out["shared_ffn"] = _hf_field(raw, source, ("shared_expert_intermediate_size",))
        return out
    if model_type.startswith("deepseek") and raw.get("n_routed_experts"):
        expert_ffn = _hf_field(raw, source, ("moe_intermediate_size",))
        return {"experts": _hf_field(raw, source, ("n_routed_experts",)),
                "experts_per_token": _hf_field(raw, source, ("num_experts_per_tok",)), "expert_ffn": expert_ffn,
                "shared_ffn": expert_ffn * _hf_count(raw, source, "n_shared_experts"),
                "dense_layers": _hf_count(raw, source, "first_k_dense_replace"),
                "router_bias": raw.get("topk_method") == "noaux_tc"}    # V3: e_score_correction_bias per expert
    return {}


def _hf_falcon(raw: dict, source: str, heads: int) -> dict:
    """Falcon (HF FalconConfig): K/V heads (multi_query: 1; new_decoder_architecture: num_kv_heads), parallel
    attention and MLP with one shared norm or one per branch (num_ln_in_parallel_attn), biases, ALiBi or rotary,
    and the plain MLP's activation."""
    for field, value in (("apply_residual_connection_post_layernorm", False),):
        if raw.get(field, value) != value:
            raise InputError(f"{source}: {field} = {json.dumps(raw[field])} changes the cost in a way tilesim does "
                             f"not model (supported: {json.dumps(value)})")
    new_arch = bool(raw.get("new_decoder_architecture"))
    if new_arch:
        kv_heads = _hf_field(raw, source, ("num_kv_heads",), heads, required=False)
    else:
        kv_heads = 1 if raw.get("multi_query", True) else heads
    parallel = new_arch or bool(raw.get("parallel_attn", True))
    norms = raw.get("num_ln_in_parallel_attn") or (2 if new_arch else 1)
    if norms not in (1, 2):
        raise InputError(f"{source}: num_ln_in_parallel_attn must be 1 or 2, got {norms!r}")
    act = raw.get("activation", "gelu")
    if act not in ("gelu", "relu"):
        raise InputError(f"{source}: activation '{act}' is not supported; supported: gelu, relu")
    return {"kv_heads": kv_heads, "parallel_attn": parallel, "shared_norm": parallel and norms == 1,
            "biases": bool(raw.get("bias", False)), "positional": "alibi" if raw.get("alibi") else "rope",
            "act": act}


def _hf_mla(raw: dict, source: str) -> dict:
    """DeepSeek's multi-head latent attention sizes (head_dim = qk_nope_head_dim + qk_rope_head_dim)."""
    rope = _hf_field(raw, source, ("qk_rope_head_dim",))
    return {"q_lora_rank": _hf_count(raw, source, "q_lora_rank"),
            "kv_lora_rank": _hf_field(raw, source, ("kv_lora_rank",)),
            "rope_dim": rope, "v_head_dim": _hf_field(raw, source, ("v_head_dim",)),
            "head_dim": _hf_field(raw, source, ("qk_nope_head_dim",)) + rope}


def _hf_windows(raw: dict, source: str, model_type: str, layers: int) -> tuple[int, ...]:
    """Per-layer sliding windows: layer_types when given; Mistral/Mixtral/Phi-3 window every layer; Qwen2/3 the
    layers from max_window_layers on when use_sliding_window; Gemma-2 the even layers; Gemma-3 all but every
    sliding_window_pattern-th. () when no layer has a window."""
    if model_type in ("gemma2", "gemma3_text"):
        window = _hf_field(raw, source, ("sliding_window",), 4096, required=False)
    else:
        window = _hf_field(raw, source, ("sliding_window",), 0, required=False)
    types = raw.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != layers or not all(t in ("sliding_attention",
                                                                                   "full_attention") for t in types):
            raise InputError(f"{source}: layer_types must list 'sliding_attention' or 'full_attention' for each of "
                             f"the {layers} layers")
        sliding = [t == "sliding_attention" for t in types]
    elif model_type in ("mistral", "mixtral", "phi3"):
        sliding = [True] * layers
    elif model_type.startswith("qwen"):
        first = _hf_count(raw, source, "max_window_layers")
        sliding = [bool(raw.get("use_sliding_window")) and i >= first for i in range(layers)]
    elif model_type == "gemma2":
        sliding = [i % 2 == 0 for i in range(layers)]       # HF Gemma2DecoderLayer: is_sliding = not layer_idx % 2
    elif model_type == "gemma3_text":
        pattern = _hf_field(raw, source, ("sliding_window_pattern",), 6, required=False)
        sliding = [(i + 1) % pattern != 0 for i in range(layers)]
    else:
        sliding = [False] * layers
    if not window or not any(sliding):
        return ()
    return tuple(window if s else 0 for s in sliding)


def _hf_opt_act(raw: dict, source: str, hidden: int) -> str:
    """OPT's plain MLP activation (relu or gelu); its projected embeddings (word_embed_proj_dim) are refused."""
    proj = raw.get("word_embed_proj_dim", hidden)
    if proj != hidden:
        raise InputError(f"{source}: word_embed_proj_dim = {proj} (!= hidden_size {hidden}) adds projections "
                         "tilesim does not model")
    act = _hf_text(raw, source, "activation_function") or "relu"
    if act not in ("relu", "gelu"):
        raise InputError(f"{source}: activation_function '{act}' is not supported; supported: relu, gelu")
    return act


def _hf_act(raw: dict, source: str, default: str) -> str:
    """The gated MLP's activation from hidden_activation (Gemma) or hidden_act; any GELU becomes the tanh form."""
    key = "hidden_activation" if raw.get("hidden_activation") else "hidden_act"
    value = _hf_text(raw, source, key)
    if value is None:
        return default
    if value not in HF_ACTS:
        raise InputError(f"{source}: {key} '{value}' is not supported; supported: {allowed_list(HF_ACTS)}")
    return HF_ACTS[value]


def read_hf_config(path: str) -> DecoderConfig:
    """The DecoderConfig of an HF config.json file (one-line errors for unreadable or invalid files)."""
    try:
        if Path(path).stat().st_size > MAX_JSON_BYTES:
            raise field_error("workload", f"'{path}' has more than the {MAX_JSON_BYTES:,} bytes a config.json may "
                                          "have")
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise field_error("workload", f"file '{path}' not found") from None
    except RecursionError:
        raise field_error("workload", f"cannot read '{path}' as JSON: nested too deeply") from None
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:     # ValueError: JSONDecodeError, integers > 4300 digits
        raise field_error("workload", f"cannot read '{path}' as JSON: {str(e).splitlines()[0]}") from None
    return config_from_hf(raw, Path(path).name)


CONFIG_DIR = Path(__file__).parent / "configs"
# Built-ins kept as the models' HF config.json files (workloads/configs/NAME.json), with the published parameter
# totals their counts are checked against (tests/test_llm_families.py), from each model card:
HF_BUILTINS = {
    "qwen2.5-7b": ("Qwen2.5-7B (Qwen/Qwen2.5-7B), 28 layers, d=3584, GQA 28/4 heads, QKV biases", 7.61e9),
    "llama3.1-70b": ("Llama-3.1-70B (meta-llama/Llama-3.1-70B), 80 layers, d=8192, GQA 64/8 heads", 70.6e9),
    "phi3-mini": ("Phi-3-mini-4k (microsoft/Phi-3-mini-4k-instruct), 32 layers, d=3072, MHA, window 2047", 3.82e9),
    "gemma2-9b": ("Gemma-2-9B (google/gemma-2-9b), 42 layers, d=3584, GQA 16/8, local 4096 / global layers, "
                  "soft-capping, tied", 9.24e9),
    "mixtral-8x7b": ("Mixtral-8x7B (mistralai/Mixtral-8x7B-v0.1), 32 layers, d=4096, MoE 8 experts top-2",
                     46.7e9),
    "qwen3-30b-a3b": ("Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B), 48 layers, d=2048, MoE 128 experts top-8, QK norm",
                      30.5e9),
    "deepseek-v3": ("DeepSeek-V3 (deepseek-ai/DeepSeek-V3), 61 layers, d=7168, MLA (latent 512 + rope 64), MoE 256 "
                    "experts top-8 + 1 shared, 3 dense layers; MTP module not included", 671e9),
    # "7B" on the model card; 6.92e9 is transformers' FalconForCausalLM(config) count (tied head once; the
    # checkpoint files store the head a second time: 7.22e9)
    "falcon-7b": ("Falcon-7B (tiiuae/falcon-7b), 32 layers, d=4544, multi-query 71/1 heads, parallel attention and "
                  "MLP with one norm, rotary, GELU, tied", 6.92e9),
}


def hf_builtin(name: str) -> DecoderConfig:
    """The DecoderConfig of built-in `name` from its config file in workloads/configs."""
    raw = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    return replace(config_from_hf(raw, f"{name}.json"), name=name)


def load_hf_config(path: str, *, batch: int = 1, seq_len: int | None = None, dtype: str | None = None,
                   dims: dict | None = None, phase: str | None = None, context: int | None = None,
                   dtypes=None) -> Graph:
    """FILE_LOADERS entry for `.json`: an HF config.json file becomes a decoder graph of the chosen phase."""
    if dims:
        raise field_error("dims", f"only ONNX models have symbolic dimensions; '{path}' is an HF config")
    cfg = read_hf_config(path)
    return decoder_graph(cfg, batch=batch, phase=phase, seq_len=seq_len, context=context,
                         dtypes=resolve_dtypes(dtypes, dtype or DEFAULT_DTYPE))
