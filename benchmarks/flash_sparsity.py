"""Seed 003's Gemma-2B setting: the MLP streamed from an NVMe SSD, embedding and attention resident, with a
low-rank predictor, row-column bundling and a DRAM window (sim/studies/flash_sparsity.py). Prints the table of
docs/sparsity.md.

    python benchmarks/flash_sparsity.py

Numbers from the article (seed 003): 24 ms to load one layer's MLP over the improved (XNVMe) path (63 ms
before), 0.2 ms per layer for the resident embedding and attention work, 18 ms per layer of CUDA API overhead in
the classic path. Assumed (labelled in the table's notes): the GPU (4 GB, 192 GB/s GDDR6, 3e12 fp16 MACs/s, a
GTX 1650-class card), the SSD's 4 KiB random-read latency (80 us) and queue depth (32), and the active shares.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tilesim.arch.energy_model import OFFCHIP_PJ_PER_BIT  # noqa: E402
from tilesim.studies.flash_sparsity import Compute, FlashLink, NeuronStreaming, Predictor, stream  # noqa: E402
from tilesim.workloads.llm import GEMMA_2B  # noqa: E402

LAYER_LOAD_S = 0.024                  # seed 003: one layer's MLP from the SSD over XNVMe
MLP_LAYER_BYTES = 3 * GEMMA_2B.hidden * GEMMA_2B.ffn * 2     # gate, up, down in bf16: 201,326,592 B
LINK = FlashLink(bandwidth_bytes_per_s=MLP_LAYER_BYTES / LAYER_LOAD_S, burst_bytes=4096, read_latency_s=80e-6,
                 queue_depth=32, read_pj_per_byte=OFFCHIP_PJ_PER_BIT["NVMe"] * 8)
GPU = Compute(peak_macs_per_s=3e12, dram_bytes_per_s=192e9, resident_s_per_layer=0.2e-3,
              mac_pj=1.1, dram_pj_per_byte=OFFCHIP_PJ_PER_BIT["GDDR6"] * 8)
HOST_S = 0.018                        # seed 003: CUDA API per layer, classic path
# 4 GB of VRAM less the resident 28% of Gemma-2B's 5.0 GB of bf16 weights (1.4 GB), activations and KV cache:
# 2 GB assumed for the window of recently active neurons
CACHE_LIMIT_BYTES = 2e9

CASES = [   # label, true active share, predictor (rank, recall, precision), bundling, window k
    ("oracle 25%, bundled", 0.25, None, True, 0),
    ("LRP r=128, 25%, unbundled", 0.25, (128, 0.95, 0.8), False, 0),
    ("LRP r=128, 25%, bundled", 0.25, (128, 0.95, 0.8), True, 0),
    ("LRP r=128, 25%, bundled, k=5", 0.25, (128, 0.95, 0.8), True, 5),
    ("LRP r=128, 10%, bundled, k=5", 0.10, (128, 0.95, 0.8), True, 5),
    ("LRP r=128, 50%, bundled, k=5", 0.50, (128, 0.95, 0.8), True, 5),
]


def main() -> int:
    """Print the table: flash MB per token, TPOT and speedup against dense streaming, predictor MACs, cache."""
    print(f"Gemma-2B ({GEMMA_2B.layers} layers, d={GEMMA_2B.hidden}, ffn={GEMMA_2B.ffn}, GeGLU, bf16): MLP "
          f"{MLP_LAYER_BYTES / 1e6:.1f} MB per layer, flash {LINK.bandwidth_bytes_per_s / 1e9:.2f} GB/s "
          f"(24 ms per layer)")
    head = (f"{'scheme':<32}{'pred.':>7}{'hit':>6}{'flash MB/tok':>14}{'TPOT ms':>10}{'dense ms':>10}{'speedup':>9}"
            f"{'TPOT+host':>11}{'LRP MMAC':>10}{'cache MB':>10}{'mJ/tok':>9}")
    print(head)
    for label, active, pred, bundled, window in CASES:
        scheme = NeuronStreaming((active,), Predictor(*pred) if pred else None, bundled, window, CACHE_LIMIT_BYTES)
        r = stream(GEMMA_2B, scheme, LINK, GPU)
        host = stream(GEMMA_2B, scheme, LINK, Compute(**{**GPU.__dict__, "host_s_per_layer": HOST_S}))
        layer = r.layers[0]
        print(f"{label:<32}{layer.predicted_share:>7.3f}{layer.hit_share:>6.2f}{r.flash_bytes_per_token / 1e6:>14.1f}"
              f"{r.tpot_s * 1e3:>10.1f}{r.dense_tpot_s * 1e3:>10.1f}{r.speedup:>9.2f}{host.tpot_s * 1e3:>11.1f}"
              f"{r.predictor_macs_per_token / 1e6:>10.2f}{r.cache_bytes / 1e6:>10.1f}{r.pj_per_token / 1e9:>9.1f}")
    dense = stream(GEMMA_2B, NeuronStreaming((1.0,)), LINK, GPU)
    print(f"dense streaming: {dense.dense_flash_bytes_per_token / 1e9:.3f} GB/token, TPOT "
          f"{dense.dense_tpot_s * 1e3:.1f} ms ({dense.dense_tpot_s * 1e3 + GEMMA_2B.layers * HOST_S * 1e3:.1f} ms "
          f"with the classic path's 18 ms/layer host overhead), {dense.dense_pj_per_token / 1e9:.1f} mJ/token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
