"""Decoder LLMs (GPT-2, Llama-2/3, Mistral, Gemma) from a config, in prefill and decode phases.

Sizes follow the models' HF `config.json` files (DESIGN.md section 10). Graph conventions:
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
Not modelled: Mistral's 4096-token sliding window (attention reads the whole context), Gemma's (1 + w) norm
offset and logit soft-capping (no cost difference), attention dropout, sampling after the LM head.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from math import sqrt
from pathlib import Path
from typing import NamedTuple

from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError, allowed_list
from tilesim.compiler import Graph, GraphBuilder

ACTS = ("silu", "gelu_tanh", "gelu")       # SwiGLU, GeGLU (tanh GELU), plain GELU MLP
NORMS = ("rms", "layer")
POSITIONALS = ("rope", "learned")
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
    head_dim: int
    ffn: int
    vocab: int
    act: str = "silu"               # silu: SwiGLU, gelu_tanh: GeGLU (both gated), gelu: plain GELU MLP
    norm: str = "rms"               # rms: RMSNorm (scale), layer: LayerNorm (scale and bias)
    tied_embeddings: bool = False   # the LM head reuses the embedding table
    positional: str = "rope"        # rope: rotary on Q and K, learned: a position table added to the embeddings
    max_positions: int = 4096
    embed_scale: bool = False       # Gemma multiplies the embeddings by sqrt(hidden)
    biases: bool = False            # biases on every projection and MLP matrix (GPT-2)
    name: str = "decoder"

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

    @property
    def gated(self) -> bool:
        """True for SwiGLU/GeGLU MLPs (gate and up projections), False for a plain up-act-down MLP."""
        return self.act != "gelu"

    @property
    def group(self) -> int:
        """Query heads per kv head (1: MHA, heads: MQA)."""
        return self.heads // self.kv_heads


# Built-ins: numbers from each model's HF config.json (DESIGN.md section 10).
GPT2 = DecoderConfig(hidden=768, layers=12, heads=12, kv_heads=12, head_dim=64, ffn=3072, vocab=50257, act="gelu",
                     norm="layer", tied_embeddings=True, positional="learned", max_positions=1024, biases=True,
                     name="gpt2")                                   # openai-community/gpt2
LLAMA2_7B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, ffn=11008, vocab=32000,
                          max_positions=4096, name="llama2-7b")     # meta-llama/Llama-2-7b-hf
LLAMA3_8B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=128256,
                          max_positions=8192, name="llama3-8b")     # meta-llama/Meta-Llama-3-8B
MISTRAL_7B = DecoderConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=32000,
                           max_positions=32768, name="mistral-7b")  # mistralai/Mistral-7B-v0.1
GEMMA_2B = DecoderConfig(hidden=2048, layers=18, heads=8, kv_heads=1, head_dim=256, ffn=16384, vocab=256000,
                         act="gelu_tanh", tied_embeddings=True, max_positions=8192, embed_scale=True,
                         name="gemma-2b")                           # google/gemma-2b
DECODERS: dict[str, DecoderConfig] = {c.name: c for c in (GPT2, LLAMA2_7B, LLAMA3_8B, MISTRAL_7B, GEMMA_2B)}


# ---------------------------------------------------------------- sizes by formula

def param_count(cfg: DecoderConfig) -> int:
    """All parameters, a shared (tied) table once: embeddings, layers, final norm, LM head."""
    d, q, kv = cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    norm = d if cfg.norm == "rms" else 2 * d
    attn_bias = q + 2 * kv + d if cfg.biases else 0
    mlp_bias = ((2 * cfg.ffn if cfg.gated else cfg.ffn) + d) if cfg.biases else 0
    per_layer = _layer_matrix_params(cfg) + attn_bias + mlp_bias + 2 * norm
    embed = cfg.vocab * d + (cfg.max_positions * d if cfg.positional == "learned" else 0)
    head = 0 if cfg.tied_embeddings else cfg.vocab * d
    return embed + cfg.layers * per_layer + norm + head


def _layer_matrix_params(cfg: DecoderConfig) -> int:
    """Weights of one layer's matrices: Q, K, V, O projections and the MLP."""
    d, q, kv = cfg.hidden, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    return 2 * d * q + 2 * d * kv + (3 if cfg.gated else 2) * d * cfg.ffn


def non_embedding_params(cfg: DecoderConfig) -> int:
    """Weights every token is multiplied by: the layers' matrices plus the LM head (counted also when it is tied to
    the embedding table); no embedding lookups, norm scales or biases. Decode MACs per token = this + attention."""
    return cfg.layers * _layer_matrix_params(cfg) + cfg.vocab * cfg.hidden


def _nbytes(elements: int, dtype: str) -> int:
    """Bytes of `elements` values of `dtype` (int4 rounds up), as compiler.ir.Tensor counts them."""
    return -(-elements * int(DTYPE_BYTES[dtype] * 2) // 2)


def weight_bytes(cfg: DecoderConfig, weight_dtype: str) -> int:
    """Bytes of all weights in `weight_dtype`: embedding and LM head once each, a tied table once."""
    return _nbytes(param_count(cfg), weight_dtype)


def kv_cache_bytes_per_token(cfg: DecoderConfig, kv_dtype: str) -> int:
    """KV cache bytes one token adds: 2 (K and V) x layers x kv_heads x head_dim values."""
    return _nbytes(2 * cfg.layers * cfg.kv_heads * cfg.head_dim, kv_dtype)


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
            raise InputError(f"--{role}-dtype: unknown '{value}'; allowed: {', '.join(DTYPE_BYTES)}")
    return out


# ---------------------------------------------------------------- graph pieces

def _linear(b: GraphBuilder, x: str, n_out: int, cfg: DecoderConfig, dt: DTypes, name: str,
            out_dtype: str | None = None) -> str:
    """x @ W with W (in, out) in the weight type (+ bias when the model has them); output in `out_dtype`."""
    w = b.param(f"{name}.w", (b.shape(x)[-1], n_out), dt.weight)
    y = b.add("MatMul", [x, w], name=name, dtype=out_dtype or dt.activation)
    if cfg.biases:
        y = b.add("Add", [y, b.param(f"{name}.b", (n_out,), dt.weight)], name=f"{name}.bias")
    return y


def _norm(b: GraphBuilder, x: str, cfg: DecoderConfig, dt: DTypes, name: str) -> str:
    """RMSNorm (Llama, Gemma: scale only) or LayerNorm (GPT-2: scale and bias) over the last axis."""
    d = b.shape(x)[-1]
    if cfg.norm == "rms":
        scale = b.param(f"{name}.scale", (d,), dt.weight)
        return b.add("RMSNormalization", [x, scale], {"axis": -1, "epsilon": 1e-6}, name=name)
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
        positions = b.param("embed.positions", (cfg.max_positions, cfg.hidden), dt.weight)
        pos = b.add("Gather", [positions, pos_ids], {"axis": 0}, name="embed.position", dtype=dt.activation)
        x = b.add("Add", [x, pos], name="embed.add_position")
    return x, table


def _attention(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, p: str, start: int,
               cache_len: int | None) -> tuple[str, list[str]]:
    """Self-attention of layer `p` on x (B, S, hidden) whose first token sits at position `start`; K and V come
    from the S new tokens (prefill) or from the cache inputs of `cache_len` tokens (decode). Returns the
    output (B, S, hidden) and the new K and V cache entries (B, S, kv_heads, head_dim)."""
    batch, seq, _ = b.shape(x)
    kvh, group, hd = cfg.kv_heads, cfg.group, cfg.head_dim
    q = _linear(b, x, cfg.heads * hd, cfg, dt, f"{p}.attn.q")
    k = _linear(b, x, kvh * hd, cfg, dt, f"{p}.attn.k", out_dtype=dt.kv)
    v = _linear(b, x, kvh * hd, cfg, dt, f"{p}.attn.v", out_dtype=dt.kv)
    q = b.add("Reshape", [q], {"shape": (batch, seq, kvh, group, hd)}, name=f"{p}.attn.q_heads")
    k = b.add("Reshape", [k], {"shape": (batch, seq, kvh, hd)}, name=f"{p}.attn.k_heads")
    v = b.add("Reshape", [v], {"shape": (batch, seq, kvh, hd)}, name=f"{p}.attn.v_heads")
    if cfg.positional == "rope":
        rope = {"head_dim": hd, "position_offset": start}
        q = b.add("RotaryEmbedding", [q], rope, name=f"{p}.attn.q_rope")
        k = b.add("RotaryEmbedding", [k], rope, name=f"{p}.attn.k_rope")
    new_kv = [k, v]
    q = _permute(b, q, (0, 2, 3, 1, 4), f"{p}.attn.q_t")                             # (B, kv, group, S, hd)
    q = b.add("Reshape", [q], {"shape": (batch, kvh, group * seq, hd)}, name=f"{p}.attn.q_group")
    if cache_len is None:                                                             # prefill: the S new tokens
        kt = _permute(b, k, (0, 2, 3, 1), f"{p}.attn.k_t")                           # (B, kv, hd, S)
        vv = _permute(b, v, (0, 2, 1, 3), f"{p}.attn.v_t")                           # (B, kv, S, hd)
    else:                                                                             # decode: the whole cache
        kc = b.input(f"{p}.k_cache", (batch, kvh, cache_len, hd), dtype=dt.kv)
        vv = b.input(f"{p}.v_cache", (batch, kvh, cache_len, hd), dtype=dt.kv)
        kt = _permute(b, kc, (0, 1, 3, 2), f"{p}.attn.k_cache_t")                    # (B, kv, hd, T)
    scores = b.add("MatMul", [q, kt], name=f"{p}.attn.scores")                       # (B, kv, group*S, T)
    scale = _const(b, "const.inv_sqrt_head_dim", dt.activation)
    scores = b.add("Mul", [scores, scale], {"value": 1 / sqrt(hd)}, name=f"{p}.attn.scale")
    probs = b.add("Softmax", [scores], {"axis": -1}, name=f"{p}.attn.softmax")
    ctx = b.add("MatMul", [probs, vv], name=f"{p}.attn.context", dtype=dt.activation)  # (B, kv, group*S, hd)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, kvh, group, seq, hd)}, name=f"{p}.attn.context_heads")
    ctx = _permute(b, ctx, (0, 3, 1, 2, 4), f"{p}.attn.context_t")                   # (B, S, kv, group, hd)
    ctx = b.add("Reshape", [ctx], {"shape": (batch, seq, cfg.heads * hd)}, name=f"{p}.attn.merge_heads")
    return _linear(b, ctx, cfg.hidden, cfg, dt, f"{p}.attn.o"), new_kv


def _mlp(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, p: str) -> str:
    """Gated MLP down(act(gate(x)) * up(x)) (SwiGLU: Shazeer 2020, arXiv:2002.05202) or plain down(gelu(up(x)))."""
    if not cfg.gated:   # GPT-2: c_fc, gelu_new (the tanh form), c_proj
        h = _linear(b, x, cfg.ffn, cfg, dt, f"{p}.mlp.up")
        h = b.add("Gelu", [h], {"approximate": "tanh"}, name=f"{p}.mlp.gelu")
        return _linear(b, h, cfg.hidden, cfg, dt, f"{p}.mlp.down")
    gate = _linear(b, x, cfg.ffn, cfg, dt, f"{p}.mlp.gate")
    if cfg.act == "silu":
        gate = b.add("Silu", [gate], name=f"{p}.mlp.silu")
    else:               # Gemma: gelu_pytorch_tanh
        gate = b.add("Gelu", [gate], {"approximate": "tanh"}, name=f"{p}.mlp.gelu")
    up = _linear(b, x, cfg.ffn, cfg, dt, f"{p}.mlp.up")
    h = b.add("Mul", [gate, up], name=f"{p}.mlp.gated")
    return _linear(b, h, cfg.hidden, cfg, dt, f"{p}.mlp.down")


def _layer(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, i: int, start: int,
           cache_len: int | None) -> tuple[str, list[str]]:
    """Pre-norm block: x + Attn(norm(x)), then + MLP(norm(.)); returns the output and the new K, V entries."""
    p = f"layer{i}"
    a, new_kv = _attention(b, cfg, dt, _norm(b, x, cfg, dt, f"{p}.attn_norm"), p, start, cache_len)
    x = b.add("Add", [x, a], name=f"{p}.attn.residual")
    m = _mlp(b, cfg, dt, _norm(b, x, cfg, dt, f"{p}.mlp_norm"), p)
    x = b.add("Add", [x, m], name=f"{p}.mlp.residual")
    k = b.add("Identity", [new_kv[0]], name=f"{p}.k")        # named graph outputs: the cache entries written
    v = b.add("Identity", [new_kv[1]], name=f"{p}.v")
    return x, [k, v]


def _lm_head(b: GraphBuilder, cfg: DecoderConfig, dt: DTypes, x: str, table: str) -> str:
    """Last position only: gather its hidden row, final norm, logits (B, vocab) = h @ W^T with W (vocab, hidden)."""
    batch, seq, d = b.shape(x)
    if seq > 1:
        last = b.param("const.last_position", (1,), "int32")
        x = b.add("Gather", [x, last], {"axis": 1}, name="last_position")         # (B, 1, d), B*d read
    x = b.add("Reshape", [x], {"shape": (batch, d)}, name="last_hidden")
    x = _norm(b, x, cfg, dt, "final_norm")
    w = table if cfg.tied_embeddings else b.param("lm_head.w", (cfg.vocab, cfg.hidden), dt.weight)
    return b.add("Gemm", [x, w], {"transB": 1}, name="lm_head", dtype=dt.activation)


def _decoder(name: str, cfg: DecoderConfig, dt: DTypes, batch: int, seq: int, start: int,
             cache_len: int | None) -> Graph:
    """Embeddings, `cfg.layers` blocks and the LM head; outputs the logits, then every layer's new K and V."""
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
    so MLP compute and weight traffic shrink alike; the predictor's own cost is not counted."""
    if not 0 <= sparsity < 1:
        raise InputError(f"--mlp-sparsity: must be >= 0 and < 1, got {sparsity:g}")
    return replace(cfg, ffn=max(1, round(cfg.ffn * (1 - sparsity))))


def decoder_graph(cfg: DecoderConfig, *, batch: int = 1, phase: str | None = None, seq_len: int | None = None,
                  context: int | None = None, dtypes: DTypes | tuple | str = "bf16") -> Graph:
    """The graph of one phase with command-line checks: prefill (default) takes --seq-len, decode --context."""
    phase = phase or ("decode" if context is not None else "prefill")
    if phase not in PHASES:
        raise InputError(f"--phase: got '{phase}'; a single graph is one of {', '.join(PHASES)} "
                         "(generate runs a prefill and decode steps)")
    if phase == "prefill":
        if context is not None:
            raise InputError("--context: applies to --phase decode; prefill processes --seq-len tokens")
        seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
        if seq_len > cfg.max_positions:
            raise InputError(f"--seq-len: {cfg.name} has {cfg.max_positions} positions, got {seq_len}")
        return prefill_graph(cfg, batch, seq_len, dtypes)
    if seq_len is not None:
        raise InputError("--seq-len: decode takes --context (tokens already in the KV cache), not --seq-len")
    if context is None:
        raise InputError("--phase decode: needs --context (tokens already in the KV cache)")
    if context + 1 > cfg.max_positions:
        raise InputError(f"--context: {cfg.name} has {cfg.max_positions} positions; a decode step at context "
                         f"{context} needs {context + 1}")
    return decode_graph(cfg, batch, context, dtypes)


# ---------------------------------------------------------------- HF config.json

# model_type -> (act, norm, positional, tied default, embed_scale, biases, max_positions default): HF's
# LlamaConfig, MistralConfig, GemmaConfig and GPT2Config defaults.
HF_FAMILIES = {
    "llama": ("silu", "rms", "rope", False, False, False, 2048),
    "mistral": ("silu", "rms", "rope", False, False, False, 131072),
    "gemma": ("gelu_tanh", "rms", "rope", True, True, False, 8192),
    "gpt2": ("gelu", "layer", "learned", True, False, True, 1024),
}
HF_ACTS = {"silu": "silu", "swish": "silu", "gelu": "gelu_tanh", "gelu_new": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}


def _hf_field(raw: dict, source: str, names: tuple[str, ...], default=None, required: bool = True):
    """The first of `names` present (and not null) in `raw`, else `default`; InputError if required and missing."""
    for n in names:
        if raw.get(n) is not None:
            value = raw[n]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{source}: {n} must be a positive integer, got {value!r}")
            return value
    if required:
        alt = f" (or '{names[1]}')" if len(names) > 1 else ""
        raise InputError(f"{source}: missing field '{names[0]}'{alt}; expected an HF-style config.json")
    return default


def config_from_hf(raw: dict, source: str = "config.json") -> DecoderConfig:
    """A DecoderConfig from an HF `config.json` dict (Llama/Mistral/Gemma keys or GPT-2's n_embd/n_layer/...)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a JSON object (an HF-style config.json)")
    model_type = raw.get("model_type") or ("gpt2" if "n_embd" in raw else "llama")
    if model_type not in HF_FAMILIES:
        raise InputError(f"{source}: model_type '{model_type}' is not supported; supported: "
                         f"{allowed_list(HF_FAMILIES)}")
    act, norm, positional, tied, embed_scale, biases, max_pos = HF_FAMILIES[model_type]
    hidden = _hf_field(raw, source, ("hidden_size", "n_embd"))
    layers = _hf_field(raw, source, ("num_hidden_layers", "n_layer"))
    heads = _hf_field(raw, source, ("num_attention_heads", "n_head"))
    kv_heads = _hf_field(raw, source, ("num_key_value_heads",), heads, required=False)
    head_dim = _hf_field(raw, source, ("head_dim",), None, required=False)
    if head_dim is None:
        if hidden % heads:
            raise InputError(f"{source}: num_attention_heads ({heads}) must divide hidden_size ({hidden}) when "
                             "head_dim is absent")
        head_dim = hidden // heads
    if heads % kv_heads:
        raise InputError(f"{source}: num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads})")
    ffn = (_hf_field(raw, source, ("n_inner",), 4 * hidden, required=False) if model_type == "gpt2"
           else _hf_field(raw, source, ("intermediate_size",)))
    vocab = _hf_field(raw, source, ("vocab_size",))
    max_pos = _hf_field(raw, source, ("max_position_embeddings", "n_positions"), max_pos, required=False)
    if model_type != "gpt2":
        act = _hf_act(raw, source, act)
    tied = raw.get("tie_word_embeddings", tied)
    if not isinstance(tied, bool):
        raise InputError(f"{source}: tie_word_embeddings must be true or false, got {tied!r}")
    name = Path(str(raw.get("_name_or_path") or "")).name or Path(source).stem
    return DecoderConfig(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim, ffn=ffn,
                         vocab=vocab, act=act, norm=norm, tied_embeddings=tied, positional=positional,
                         max_positions=max_pos, embed_scale=embed_scale, biases=biases, name=name)


def _hf_act(raw: dict, source: str, default: str) -> str:
    """The gated MLP's activation from hidden_activation (Gemma) or hidden_act; any GELU becomes the tanh form."""
    key = "hidden_activation" if raw.get("hidden_activation") else "hidden_act"
    value = raw.get(key)
    if value is None:
        return default
    if value not in HF_ACTS:
        raise InputError(f"{source}: {key} '{value}' is not supported; supported: {allowed_list(HF_ACTS)}")
    return HF_ACTS[value]


def read_hf_config(path: str) -> DecoderConfig:
    """The DecoderConfig of an HF config.json file (one-line errors for unreadable or invalid files)."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"--workload: file '{path}' not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--workload: cannot read '{path}' as JSON: {str(e).splitlines()[0]}") from None
    return config_from_hf(raw, Path(path).name)


def load_hf_config(path: str, *, batch: int = 1, seq_len: int | None = None, dtype: str | None = None,
                   dims: dict | None = None, phase: str | None = None, context: int | None = None,
                   dtypes=None) -> Graph:
    """FILE_LOADERS entry for `.json`: an HF config.json file becomes a decoder graph of the chosen phase."""
    if dims:
        raise InputError(f"--dim: only ONNX models have symbolic dimensions; '{path}' is an HF config")
    cfg = read_hf_config(path)
    return decoder_graph(cfg, batch=batch, phase=phase, seq_len=seq_len, context=context,
                         dtypes=resolve_dtypes(dtypes, dtype or DEFAULT_DTYPE))
