"""Transformer encoders: BERT-base (post-LN) and ViT-B/16 (pre-LN), sharing EncoderConfig and the attention block."""
from __future__ import annotations

from dataclasses import dataclass

from tilesim.arch.errors import field_error
from tilesim.compiler import Graph, GraphBuilder


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of a post-LN transformer encoder (docs/workloads.md)."""
    layers: int
    d_model: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int = 512
    type_vocab: int = 2   # segment (token type) embeddings; 0 for models without them

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.heads


BERT_BASE = EncoderConfig(layers=12, d_model=768, heads=12, ffn=3072, vocab=30522)
# ViT-B/16 (Dosovitskiy et al., ICLR 2021; HF google/vit-base-patch16-224): 14x14 patches + class token, no vocabulary
VIT_B16 = EncoderConfig(layers=12, d_model=768, heads=12, ffn=3072, vocab=0, max_positions=197, type_vocab=0)
VIT_PATCH, VIT_IMAGE, VIT_CLASSES = 16, 224, 1000


def _layernorm(b: GraphBuilder, x: str, name: str, epsilon: float = 1e-12) -> str:
    """LayerNormalization over the last axis with scale and bias parameters (BERT's epsilon by default)."""
    d = b.shape(x)[-1]
    params = [b.param(f"{name}.{p}", (d,)) for p in ("scale", "bias")]
    return b.add("LayerNormalization", [x, *params], {"axis": -1, "epsilon": epsilon}, name=name)


def _embeddings(b: GraphBuilder, cfg: EncoderConfig, batch: int, seq_len: int) -> str:
    """Word embedding Gather, + token type 0 row, + positions 0..S-1 (Slice of the table), LayerNorm."""
    ids = b.input("input_ids", (batch, seq_len), dtype="int32")
    table = b.param("embeddings.word.w", (cfg.vocab, cfg.d_model))
    x = b.add("Gather", [table, ids], {"axis": 0}, name="embeddings.word")
    if cfg.type_vocab:  # every token in segment 0: the type embedding is one broadcast row
        types = b.param("embeddings.token_type.w", (cfg.type_vocab, cfg.d_model))
        row = b.add("Slice", [types], {"starts": [0], "ends": [1], "axes": [0]}, name="embeddings.token_type")
        x = b.add("Add", [x, row], name="embeddings.add_token_type")
    positions = b.param("embeddings.position.w", (cfg.max_positions, cfg.d_model))
    pos = b.add("Slice", [positions], {"starts": [0], "ends": [seq_len], "axes": [0]}, name="embeddings.position")
    x = b.add("Add", [x, pos], name="embeddings.add_position")
    return _layernorm(b, x, "embeddings.ln")


def _attention(b: GraphBuilder, cfg: EncoderConfig, x: str, p: str) -> str:
    """Multi-head self-attention: Q, K, V projections, softmax(QK^T * scale) V, output projection."""
    batch, seq, d = b.shape(x)
    heads, hd = cfg.heads, cfg.head_dim
    split = {"shape": (batch, seq, heads, hd)}

    def heads_of(name: str, perm: tuple[int, ...]) -> str:
        y = b.linear(x, d, name=f"{p}.{name}")
        y = b.add("Reshape", [y], split, name=f"{p}.{name}_heads")
        return b.add("Transpose", [y], {"perm": perm}, name=f"{p}.{name}_t")

    q = heads_of("q", (0, 2, 1, 3))    # (B, H, S, hd)
    k = heads_of("k", (0, 2, 3, 1))    # (B, H, hd, S): K already transposed for QK^T
    v = heads_of("v", (0, 2, 1, 3))    # (B, H, S, hd)
    ctx = _scaled_dot_product(b, q, k, v, f"{p}.")                               # (B, H, S, hd)
    ctx = b.add("Transpose", [ctx], {"perm": (0, 2, 1, 3)}, name=f"{p}.context_t")
    ctx = b.add("Reshape", [ctx], {"shape": (batch, seq, d)}, name=f"{p}.merge_heads")
    return b.linear(ctx, d, name=f"{p}.out")


def _scaled_dot_product(b: GraphBuilder, q: str, kt: str, v: str, prefix: str) -> str:
    """softmax(Q K^T * scale) V for Q (.., S, d), K^T (.., d, T), V (.., T, dv): ops prefix + scores, scale,
    softmax, context; the scale is a constant 1/sqrt(d), not a learned weight."""
    scores = b.add("MatMul", [q, kt], name=f"{prefix}scores")                   # (.., S, T)
    scores = b.add("Mul", [scores, b.param(f"{prefix}inv_sqrt_dk", (1,))], name=f"{prefix}scale")
    probs = b.add("Softmax", [scores], {"axis": -1}, name=f"{prefix}softmax")
    return b.add("MatMul", [probs, v], name=f"{prefix}context")


def _encoder_layer(b: GraphBuilder, cfg: EncoderConfig, x: str, p: str) -> str:
    """Post-LN block: LN(x + Attn(x)), then LN(h + FFN(h)) with a Gelu FFN."""
    h = b.add("Add", [x, _attention(b, cfg, x, f"{p}.attn")], name=f"{p}.attn.residual")
    h = _layernorm(b, h, f"{p}.attn.ln")
    y = b.linear(h, cfg.ffn, name=f"{p}.ffn.up")
    y = b.add("Gelu", [y], {"approximate": "none"}, name=f"{p}.ffn.gelu")   # BERT uses the exact erf form
    y = b.linear(y, cfg.d_model, name=f"{p}.ffn.down")
    y = b.add("Add", [h, y], name=f"{p}.ffn.residual")
    return _layernorm(b, y, f"{p}.ffn.ln")


def encoder(name: str, cfg: EncoderConfig, batch: int, seq_len: int, dtype: str) -> Graph:
    """Embeddings and `cfg.layers` encoder layers; the output is the last hidden state (B, S, d_model)."""
    if seq_len > cfg.max_positions:
        raise field_error("seq_len", f"{name} has {cfg.max_positions} position embeddings, got {seq_len}")
    b = GraphBuilder(name, dtype)
    x = _embeddings(b, cfg, batch, seq_len)
    for i in range(cfg.layers):
        x = _encoder_layer(b, cfg, x, f"encoder.{i}")
    return b.build(x)


def bert_base(batch: int = 1, seq_len: int = 128, dtype: str = "int8") -> Graph:
    """BERT-base encoder (HF BertModel without the pooler and any task head; no attention mask).

    Outputs the last hidden state (batch, seq_len, 768). Parameters: 23,837,184 in the embeddings (word
    30522x768, position 512x768, token type 2x768, LayerNorm) + 12 x 7,087,872 in the layers = 108,891,648,
    i.e. HF's 109,482,240 minus the 590,592 of the pooler.
    """
    return encoder("bert-base", BERT_BASE, batch, seq_len, dtype)


def _pre_ln_layer(b: GraphBuilder, cfg: EncoderConfig, x: str, p: str) -> str:
    """Pre-LN block (ViT): h = x + Attn(LN(x)), then h + FFN(LN(h)) with an exact-GELU FFN."""
    a = _attention(b, cfg, _layernorm(b, x, f"{p}.attn.ln", 1e-6), f"{p}.attn")
    h = b.add("Add", [x, a], name=f"{p}.attn.residual")
    y = b.linear(_layernorm(b, h, f"{p}.ffn.ln", 1e-6), cfg.ffn, name=f"{p}.ffn.up")
    y = b.add("Gelu", [y], {"approximate": "none"}, name=f"{p}.ffn.gelu")
    y = b.linear(y, cfg.d_model, name=f"{p}.ffn.down")
    return b.add("Add", [h, y], name=f"{p}.ffn.residual")


def _patch_embeddings(b: GraphBuilder, cfg: EncoderConfig, batch: int) -> str:
    """16x16 stride-16 Conv on the 224x224 image -> 196 patch tokens, class token prepended, + position table."""
    d, side = cfg.d_model, VIT_IMAGE // VIT_PATCH
    img = b.input("pixel_values", (batch, 3, VIT_IMAGE, VIT_IMAGE))
    x = b.conv(img, d, VIT_PATCH, stride=VIT_PATCH, bias=True, name="embeddings.patch")       # (B, d, 14, 14)
    x = b.add("Reshape", [x], {"shape": (batch, d, side * side)}, name="embeddings.flatten")
    x = b.add("Transpose", [x], {"perm": (0, 2, 1)}, name="embeddings.tokens")             # (B, 196, d)
    cls = b.add("Expand", [b.param("embeddings.cls_token", (1, 1, d))], {"shape": (batch, 1, d)},
                name="embeddings.cls")
    x = b.add("Concat", [cls, x], {"axis": 1}, name="embeddings.concat")                   # (B, 197, d)
    positions = b.param("embeddings.position.w", (1, cfg.max_positions, d))
    return b.add("Add", [x, positions], name="embeddings.add_position")


def vit_b16(batch: int = 1, dtype: str = "int8") -> Graph:
    """ViT-B/16 image classifier at 224x224 (HF ViTForImageClassification, ImageNet-1k head); logits (B, 1000).

    197 tokens (196 patches + class token), 12 pre-LN layers, d=768, 12 heads, exact-GELU FFN 3072. Parameters:
    590,592 patch embedding + 768 class token + 151,296 positions + 12 x 7,087,872 layers + 1,536 final LN
    + 769,000 head = 86,567,656 (timm vit_base_patch16_224). The final LN and head run on the class token only
    (per-row ops: the same result as HF's LN over all tokens)."""
    cfg = VIT_B16
    b = GraphBuilder("vit-b16", dtype)
    x = _patch_embeddings(b, cfg, batch)
    for i in range(cfg.layers):
        x = _pre_ln_layer(b, cfg, x, f"encoder.{i}")
    cls = b.add("Gather", [x, b.param("const.class_token", (1,), "int32")], {"axis": 1}, name="class_token")
    cls = b.add("Reshape", [cls], {"shape": (batch, cfg.d_model)}, name="class_hidden")
    return b.build(b.linear(_layernorm(b, cls, "final_ln", 1e-6), VIT_CLASSES, name="head"))


def attention(batch: int = 1, seq_len: int = 2048, dtype: str = "int8", heads: int = 32,
              head_dim: int = 128) -> Graph:
    """softmax(Q K^T * scale) V over batch x heads of seq_len x head_dim, Q, K and V given (no projections): the
    fused-vs-unfused attention microbenchmark (PyTorch's scaled_dot_product_attention against its four-op chain,
    as benchmarks/hardware/measure_h100.py times it). MACs: 2 * batch * heads * seq_len^2 * head_dim."""
    b = GraphBuilder(f"attention_S{seq_len}", dtype)
    q = b.input("q", (batch, heads, seq_len, head_dim))
    kt = b.input("kt", (batch, heads, head_dim, seq_len))
    v = b.input("v", (batch, heads, seq_len, head_dim))
    return b.build(_scaled_dot_product(b, q, kt, v, ""))
