"""Streaming a decoder's MLP from flash with predicted activation sparsity (seed 003; Alizadeh et al., "LLM in a
flash", 2023): a low-rank predictor picks the neurons a token will use, only their weights are read from flash,
bundled per neuron, and a DRAM cache keeps the neurons of the last k tokens. docs/sparsity.md has the formulas
and the Gemma-2B setting of seed 003.

Per layer and token, for an MLP of d = hidden and f = ffn neurons, m matrices (gate, up, down: 3 when gated) in
b-byte weights, with a true active share a of the f neurons (the sparsity profile):
  predictor      rank r: d*r + r*f MACs, its (d*r + r*f) * b weight bytes read from DRAM; time = max(MACs / peak,
                 bytes / DRAM bandwidth)
  predicted      p = min(1, a * recall / precision) of the neurons (recall: share of the truly active ones found;
                 precision: share of the predicted ones truly active); misses (1 - recall) cost accuracy, not bytes
  DRAM cache     a neuron predicted now is in DRAM if it was predicted in one of the last k tokens; tokens taken as
                 independent (each neuron predicted with probability p): hit share h = 1 - (1 - p)**k, so
                 f * p * (1 - h) neurons are read from flash and f * h neurons stay in DRAM (a lower bound on hits:
                 real activations are correlated from token to token); with a DRAM budget holding a share s of
                 the MLP weights, h = min(1 - (1 - p)**k, s) (what does not fit is read again)
  flash reads    bundled: one contiguous read per neuron of its m rows/columns, m*d*b bytes rounded up to whole
                 bursts; unbundled: m reads of d*b bytes each rounded up. time = max(bytes / bandwidth,
                 reads * latency / queue depth) (bandwidth-bound or IOPS-bound, Little's law)
  MLP compute    the predicted neurons' weights read from DRAM: f * p * m * d * b / DRAM bandwidth (decode is
                 memory-bound), or their MACs / peak when slower
  TPOT           sum over layers of the resident part's time + host overhead + predictor + flash + MLP, in series
                 (a layer's reads wait for its prediction); dense streaming reads every neuron (p = 1, no
                 predictor, no cache) with the same formula, its reads sequential (one read per layer, no IOPS
                 bound).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from tilesim.arch.config import ArchConfig
from tilesim.arch.dtypes import DTYPE_BYTES
from tilesim.arch.errors import InputError, field_error
from tilesim.workloads.llm import DecoderConfig


@dataclass(frozen=True)
class FlashLink:
    """The path weights stream over from flash: bandwidth, burst, latency of one read and reads in flight."""
    bandwidth_bytes_per_s: float
    burst_bytes: int = 4096
    read_latency_s: float = 0.0
    queue_depth: int = 1
    read_pj_per_byte: float = 0.0


@dataclass(frozen=True)
class Compute:
    """What a token costs besides flash: peak MACs and DRAM bandwidth for the predictor and the MLP, the resident
    part's time per layer (embedding share, attention) and a host overhead per layer."""
    peak_macs_per_s: float
    dram_bytes_per_s: float
    resident_s_per_layer: float = 0.0
    host_s_per_layer: float = 0.0
    mac_pj: float = 0.0
    dram_pj_per_byte: float = 0.0


@dataclass(frozen=True)
class Predictor:
    """A low-rank predictor of active MLP neurons (d -> rank -> ffn) and its quality."""
    rank: int
    recall: float = 1.0
    precision: float = 1.0


@dataclass(frozen=True)
class NeuronStreaming:
    """The scheme: true active share per layer (one value: every layer), predictor (None: the active set is known
    exactly at no cost), row-column bundling, and a DRAM window over the last k tokens (0: no cache)."""
    active_share: tuple[float, ...]
    predictor: Predictor | None = None
    bundling: bool = True
    window_tokens: int = 0
    cache_limit_bytes: float | None = None    # DRAM the window may hold over all layers (None: no limit)


@dataclass(frozen=True)
class LayerStream:
    """One layer's share of a token: predicted, hit in DRAM and read from flash; flash reads, bytes and time."""
    predicted_share: float
    hit_share: float
    flash_reads: float
    flash_bytes: float
    flash_s: float
    predictor_macs: int
    predictor_s: float
    mlp_s: float
    cache_bytes: float


@dataclass(frozen=True)
class StreamingResult:
    """Per token: flash bytes and TPOT with the scheme and with dense streaming, energy, the DRAM the cache needs."""
    layers: tuple[LayerStream, ...]
    flash_bytes_per_token: float
    dense_flash_bytes_per_token: float
    tpot_s: float
    dense_tpot_s: float
    predictor_macs_per_token: int
    cache_bytes: float
    pj_per_token: float           # flash reads, predictor MACs and weights, the MLP's DRAM reads
    dense_pj_per_token: float

    @property
    def speedup(self) -> float:
        """Dense streaming TPOT over the scheme's."""
        return self.dense_tpot_s / self.tpot_s


def neuron_read(cfg: DecoderConfig, weight_bytes: float, bundling: bool, burst: int) -> tuple[int, int]:
    """(reads, bytes moved) to fetch one MLP neuron: its m rows/columns of `hidden` weights, bundled in one
    contiguous read or m separate ones, each rounded up to whole bursts."""
    m = 3 if cfg.gated else 2
    column = ceil(cfg.hidden * weight_bytes)
    if bundling:
        return 1, -(-m * column // burst) * burst
    return m, m * (-(-column // burst) * burst)


def check(cfg: DecoderConfig, scheme: NeuronStreaming, link: FlashLink) -> tuple[float, ...]:
    """The per-layer active shares; InputError naming the field for anything out of range."""
    shares = scheme.active_share * cfg.layers if len(scheme.active_share) == 1 else scheme.active_share
    if len(shares) != cfg.layers:
        raise field_error("active_share", f"give one share or one per layer ({cfg.layers}), got {len(shares)}")
    if not all(0 < a <= 1 for a in shares):
        raise field_error("active_share", "each share must be > 0 and <= 1")
    p = scheme.predictor
    if p is not None and not (p.rank >= 1 and 0 < p.recall <= 1 and 0 < p.precision <= 1):
        raise field_error("predictor", "rank must be >= 1, recall and precision > 0 and <= 1")
    if scheme.window_tokens < 0:
        raise field_error("window_tokens", f"must be >= 0, got {scheme.window_tokens}")
    if scheme.cache_limit_bytes is not None and not scheme.cache_limit_bytes >= 0:
        raise field_error("cache_limit_bytes", f"must be >= 0, got {scheme.cache_limit_bytes}")
    if not (link.bandwidth_bytes_per_s > 0 and link.burst_bytes >= 1 and link.queue_depth >= 1):
        raise field_error("flash", "bandwidth must be > 0, burst_bytes and queue_depth >= 1")
    return tuple(shares)


def layer_stream(cfg: DecoderConfig, active: float, scheme: NeuronStreaming, link: FlashLink, compute: Compute,
                 weight_bytes: float) -> LayerStream:
    """One layer of one token under the scheme (module docstring)."""
    d, f, m = cfg.hidden, cfg.ffn, 3 if cfg.gated else 2
    pred = scheme.predictor
    p = min(1.0, active * pred.recall / pred.precision) if pred else active
    hit = 1 - (1 - p) ** scheme.window_tokens
    if scheme.cache_limit_bytes is not None:
        hit = min(hit, scheme.cache_limit_bytes / (cfg.layers * f * m * d * weight_bytes))
    miss = 1 - hit
    reads_per, bytes_per = neuron_read(cfg, weight_bytes, scheme.bundling, link.burst_bytes)
    neurons = f * p * miss
    flash_bytes = neurons * bytes_per
    reads = neurons * reads_per
    flash_s = max(flash_bytes / link.bandwidth_bytes_per_s, reads * link.read_latency_s / link.queue_depth)
    macs = d * pred.rank + pred.rank * f if pred else 0
    pred_s = max(macs / compute.peak_macs_per_s, macs * weight_bytes / compute.dram_bytes_per_s) if pred else 0.0
    mlp_bytes = f * p * m * d * weight_bytes
    mlp_s = max(mlp_bytes / compute.dram_bytes_per_s, f * p * m * d / compute.peak_macs_per_s)
    return LayerStream(p, 1 - miss, reads, flash_bytes, flash_s, macs, pred_s, mlp_s,
                       f * (1 - miss) * m * d * weight_bytes)


def dense_layer(cfg: DecoderConfig, link: FlashLink, compute: Compute, weight_bytes: float) -> LayerStream:
    """Dense streaming: every neuron's weights read sequentially (whole bursts, no per-read latency bound)."""
    d, f, m = cfg.hidden, cfg.ffn, 3 if cfg.gated else 2
    total = -(-ceil(f * m * d * weight_bytes) // link.burst_bytes) * link.burst_bytes
    mlp_s = max(f * m * d * weight_bytes / compute.dram_bytes_per_s, f * m * d / compute.peak_macs_per_s)
    return LayerStream(1.0, 0.0, 1, total, total / link.bandwidth_bytes_per_s, 0, 0.0, mlp_s, 0.0)


def token_s(layer: LayerStream, compute: Compute) -> float:
    """A layer's time in a token: resident part, host overhead, predictor, flash reads and MLP, in series."""
    return compute.resident_s_per_layer + compute.host_s_per_layer + layer.predictor_s + layer.flash_s + layer.mlp_s


def layer_pj(cfg: DecoderConfig, layer: LayerStream, link: FlashLink, compute: Compute, weight_bytes: float) -> float:
    """Energy of a layer's flash reads, predictor (MACs and weights from DRAM) and MLP weight reads from DRAM."""
    m = 3 if cfg.gated else 2
    mlp_bytes = cfg.ffn * layer.predicted_share * m * cfg.hidden * weight_bytes
    return (layer.flash_bytes * link.read_pj_per_byte
            + layer.predictor_macs * (compute.mac_pj + weight_bytes * compute.dram_pj_per_byte)
            + mlp_bytes * compute.dram_pj_per_byte + cfg.ffn * layer.predicted_share * m * cfg.hidden * compute.mac_pj)


def stream(cfg: DecoderConfig, scheme: NeuronStreaming, link: FlashLink, compute: Compute,
           weight_dtype: str = "bf16") -> StreamingResult:
    """Flash bytes per token and TPOT of the scheme and of dense streaming (every layer's MLP in flash)."""
    if weight_dtype not in DTYPE_BYTES:
        raise field_error("weight_dtype", f"unknown '{weight_dtype}'; allowed: {', '.join(DTYPE_BYTES)}")
    if cfg.moe_layer(0) or cfg.experts:
        raise InputError([("workload", f"{cfg.name}: a mixture of experts; this model streams dense MLPs only")])
    b = DTYPE_BYTES[weight_dtype]
    shares = check(cfg, scheme, link)
    layers = tuple(layer_stream(cfg, a, scheme, link, compute, b) for a in shares)
    dense = dense_layer(cfg, link, compute, b)
    return StreamingResult(
        layers=layers,
        flash_bytes_per_token=sum(x.flash_bytes for x in layers),
        dense_flash_bytes_per_token=dense.flash_bytes * cfg.layers,
        tpot_s=sum(token_s(x, compute) for x in layers),
        dense_tpot_s=token_s(dense, compute) * cfg.layers,
        predictor_macs_per_token=sum(x.predictor_macs for x in layers),
        cache_bytes=sum(x.cache_bytes for x in layers),
        pj_per_token=sum(layer_pj(cfg, x, link, compute, b) for x in layers),
        dense_pj_per_token=layer_pj(cfg, dense, link, compute, b) * cfg.layers)


def link_from_arch(arch: ArchConfig, queue_depth: int = 1) -> FlashLink:
    """The arch's flash level as a FlashLink (bandwidth, burst, latency per transfer, read energy)."""
    flash = arch.flash
    if flash is None:
        raise field_error("arch", f"'{arch.name}' has no flash level (memory[0] of kind flash)")
    action = arch.energy.actions.get(f"{flash.name}.read_byte")
    return FlashLink(flash.bandwidth_bytes_per_cycle * arch.clock_hz, flash.burst_bytes,
                     flash.latency_cycles / arch.clock_hz, queue_depth, action.pj if action else 0.0)


def compute_from_arch(arch: ArchConfig, resident_s_per_layer: float = 0.0, host_s_per_layer: float = 0.0) -> Compute:
    """Peak MACs/s and DRAM bandwidth of the arch (with its MAC and DRAM read energy when the table has them)."""
    actions = arch.energy.actions
    mac = actions.get(f"mac.{arch.array.dtype}")
    dram = actions.get(f"{arch.offchip.name}.read_byte")
    return Compute(arch.peak_macs_per_cycle * arch.clock_hz, arch.offchip.bandwidth_bytes_per_cycle * arch.clock_hz,
                   resident_s_per_layer, host_s_per_layer, mac.pj if mac else 0.0, dram.pj if dram else 0.0)


__all__ = ["Compute", "FlashLink", "LayerStream", "NeuronStreaming", "Predictor", "StreamingResult",
           "compute_from_arch", "dense_layer", "layer_stream", "link_from_arch", "neuron_read", "stream"]
