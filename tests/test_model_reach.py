"""Model reach (issue 24): MLA decode attention fits a GPU's shared memory; the LLM families run end to end."""
from __future__ import annotations

import json
from dataclasses import replace

from tilesim.arch import load_arch
from tilesim.cli.main import main
from tilesim.compiler.attention import (
    AttentionMapping,
    AttentionWork,
    attention_footprint,
    attention_mapping,
    attention_tile_compute,
)
from tilesim.compiler.fusion import group_ops
from tilesim.workloads import llm

# DeepSeek-V3's absorbed decode, batch 1: 128 heads as query rows, d = 512 latent + 64 rope, V = the latent
# columns of K's buffer (dv = 512, FlashMLA's head_size_v)
MLA_DECODE = AttentionWork(1, 128, 512, 576, 512, "bf16", kv_shared=True)


def test_footprint_counts_a_shared_latent_once():
    h100 = load_arch("h100")             # smem holds every operand, double-buffered
    shared = attention_footprint(MLA_DECODE, 32, 32, h100)["smem"]
    apart = attention_footprint(AttentionWork(1, 128, 512, 576, 512, "bf16"), 32, 32, h100)["smem"]
    # Q 32x576 bf16, K/V 32x576 bf16 once (32x(576+512) apart), scores and O 32x(32+512) fp32; double-buffered
    assert shared == 2 * (32 * 576 * 2 + 32 * 576 * 2 + 32 * (32 + 512) * 4) == 286_720
    assert apart - shared == 2 * 32 * 512 * 2


def test_mla_decode_attention_fits_h100_with_query_blocks_below_the_arrays_rows():
    """Regression: 'no attention block of 32 query rows fits' on h100 (286,720 B > 233,472 B of smem at 32x32)."""
    h100 = load_arch("h100")
    m = attention_mapping(MLA_DECODE, h100, "pipelined")
    assert m.block_q < h100.array.rows
    need = attention_footprint(MLA_DECODE, m.block_q, m.block_kv, h100)
    assert all(need[lv.name] <= lv.capacity_bytes for lv in h100.per_core().onchip)
    # blocks of fewer rows than the array's leave rows idle: with tiles enough for every core either way, 16-row
    # blocks take no less time than 32-row ones
    long = AttentionWork(1, 128, 8192, 576, 512, "bf16", kv_shared=True)
    full, half = (attention_tile_compute(long, AttentionMapping(m.dataflow, bq, 32), h100, "pipelined").sum()
                  for bq in (32, 16))
    assert half >= full


def test_query_blocks_stay_at_least_the_arrays_rows_when_those_fit():
    big = load_arch("h100", ["memory.smem.capacity_bytes=1048576"])
    assert attention_mapping(MLA_DECODE, big, "pipelined").block_q >= big.array.rows


def test_deepseek_family_decodes_on_h100_through_the_cli(tmp_path):
    raw = json.loads((llm.CONFIG_DIR / "deepseek-v3.json").read_text())
    path = tmp_path / "tiny-deepseek.json"
    path.write_text(json.dumps(raw | {"num_hidden_layers": 2, "first_k_dense_replace": 1, "n_routed_experts": 16,
                                      "hidden_size": 1024, "vocab_size": 1000}))
    assert main(["run", "-w", str(path), "-a", "h100", "--phase", "decode", "--context", "64"]) == 0


def test_mla_values_are_the_latent_read_in_place_by_the_fused_kernel():
    """V is the cache's 512 latent columns (not all 576): a slice read in place, no kernel of its own."""
    cut = replace(llm.hf_builtin("deepseek-v3"), layers=1, experts=0, dense_layers=0)
    g = llm.decode_graph(cut, 1, 40, "bf16")
    full = group_ops(g, "full").kernels
    assert [(k.work.d, k.work.dv, k.work.kv_shared) for k in full if isinstance(k.work, AttentionWork)] \
        == [(576, 512, True)]
    assert not any("v_latent" in op for k in full for op in k.ops)
    # unfused too: the .V MatMul reads the latent columns strided (no copy of the cache, as a view in PyTorch)
    assert not any("v_latent" in op for k in group_ops(g, "none").kernels for op in k.ops)
