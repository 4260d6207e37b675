"""Decoder LLMs: weight and KV cache bytes, decode MACs, GQA traffic, fusion, HF config.json, load_workload checks."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.compiler.attention import AttentionWork, attention_traffic
from tilesim.compiler.fusion import group_ops
from tilesim.compiler.lowering import graph_macs
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.studies.llm import place_weights, run_llm
from tilesim.workloads import llm, load_workload

KIB = 1024
# Parameter counts of the HF checkpoints (model.num_parameters(), tied tables once)
HF_PARAMS = {"gpt2": 124_439_808, "llama2-7b": 6_738_415_616, "llama3-8b": 8_030_261_248,
             "mistral-7b": 7_241_732_096, "gemma-2b": 2_506_172_416}


def param_bytes(graph) -> int:
    """Bytes of a graph's learned parameters (shape-(1,) constants left out), each tensor once."""
    return sum(t.nbytes for t in graph.tensors.values() if t.is_param and not t.name.startswith("const."))


def context_for(cfg, wanted: int = 1024) -> int:
    """`wanted`, or the longest context the model's positions allow (GPT-2: 1023)."""
    return min(wanted, cfg.max_positions - 1)


# ---------------------------------------------------------------- sizes

def test_llama2_7b_weight_bytes_are_13_5_gb_in_bf16():
    assert llm.param_count(llm.LLAMA2_7B) == 6_738_415_616
    assert llm.weight_bytes(llm.LLAMA2_7B, "bf16") == 6_738_415_616 * 2          # 13.48 GB
    assert llm.weight_bytes(llm.LLAMA2_7B, "int4") == 6_738_415_616 // 2


@pytest.mark.parametrize("name", sorted(llm.DECODERS))
def test_param_counts_match_hf_and_the_graph_counts_each_table_once(name):
    cfg = llm.DECODERS[name]
    assert llm.param_count(cfg) == HF_PARAMS[name]
    g = llm.decode_graph(cfg, 1, 8, ("int8", "bf16", "bf16"))
    assert param_bytes(g) == llm.weight_bytes(cfg, "int8") == HF_PARAMS[name]


@pytest.mark.parametrize("name, per_token", [("llama2-7b", 512 * KIB), ("llama3-8b", 128 * KIB),
                                             ("mistral-7b", 128 * KIB), ("gemma-2b", 18 * KIB),
                                             ("gpt2", 36 * KIB)])
def test_kv_cache_bytes_per_token(name, per_token):
    cfg = llm.DECODERS[name]
    assert llm.kv_cache_bytes_per_token(cfg, "bf16") == per_token
    assert llm.kv_cache_bytes_per_token(cfg, "fp8") == per_token // 2
    g = llm.decode_graph(cfg, 1, 99, ("bf16", "bf16", "bf16"))     # the cache inputs hold 100 tokens
    cache = sum(t.nbytes for t in g.tensors.values() if t.name.endswith(("k_cache", "v_cache")))
    assert cache == 100 * per_token


@pytest.mark.parametrize("name", sorted(llm.DECODERS))
def test_decode_macs_are_the_non_embedding_params_plus_attention(name):
    # LM head included: for tied models (GPT-2, Gemma) it is the embedding table used as a matmul weight
    cfg = llm.DECODERS[name]
    ctx = context_for(cfg)
    attention = 2 * cfg.layers * cfg.heads * cfg.head_dim * (ctx + 1)
    assert graph_macs(llm.decode_graph(cfg, 1, ctx)) == llm.non_embedding_params(cfg) + attention
    assert graph_macs(llm.decode_graph(cfg, 3, ctx)) == 3 * (llm.non_embedding_params(cfg) + attention)


def test_non_embedding_params_of_llama2_7b():
    # 32 layers x (4 x 4096^2 + 3 x 4096 x 11008) + LM head 32000 x 4096
    assert llm.non_embedding_params(llm.LLAMA2_7B) == 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 32000 * 4096


# ---------------------------------------------------------------- attention: fusion and GQA traffic

@pytest.mark.parametrize("name", sorted(llm.DECODERS))
def test_full_fusion_makes_one_attention_kernel_per_layer(name):
    cfg = llm.DECODERS[name]
    for g in (llm.prefill_graph(cfg, 1, 32), llm.decode_graph(cfg, 2, 40)):
        attention = [k for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
        assert [k[0] for k in attention] == [f"layer{i}.attn.scores" for i in range(cfg.layers)]
        assert all([o.split(".")[-1] for o in k[1]] == ["scores", "scale", "softmax", "context"] for k in attention)


def decode_attention_reads(cfg, context: int, kv_dtype: str = "bf16") -> list[int]:
    """DRAM bytes read by each fused attention kernel of a decode step on tpu-v4."""
    arch = load_arch("tpu-v4")
    schedule = lower(llm.decode_graph(cfg, 1, context, ("bf16", "bf16", kv_dtype)), arch,
                     CompileOptions(fusion="full"))
    result = simulate(schedule, arch)
    return [r.dram_read_bytes for r, k in zip(result.kernels, schedule.kernels, strict=False)
            if isinstance(k.work, AttentionWork)]


@pytest.mark.parametrize("kv_dtype, size", [("bf16", 2), ("fp8", 1)])
def test_gqa_divides_decode_kv_traffic_by_heads_over_kv_heads(kv_dtype, size):
    gqa = replace(llm.LLAMA3_8B, layers=2)                 # Llama-3-like: 32 query heads share 8 kv heads
    mha = replace(gqa, kv_heads=gqa.heads)                 # Llama-2-like: same shapes, 32 kv heads
    ctx = 511
    q_and_scale = gqa.heads * gqa.head_dim * 2 + 2         # Q (bf16) and the scale constant, at most
    reads = {}
    for cfg in (gqa, mha):
        kv = cfg.kv_heads * (ctx + 1) * cfg.head_dim * 2 * size    # K and V of every kv head, read once
        reads[cfg.kv_heads] = decode_attention_reads(cfg, ctx, kv_dtype)
        assert all(kv <= r <= kv + q_and_scale for r in reads[cfg.kv_heads])
    assert reads[32][0] / reads[8][0] == pytest.approx(gqa.heads / gqa.kv_heads, rel=1e-3)


def test_prefill_packs_a_groups_queries_so_kv_streams_once_per_kv_head():
    arch = load_arch("tpu-v4")
    gqa = replace(llm.LLAMA3_8B, layers=1)
    mha = replace(gqa, kv_heads=gqa.heads)
    kv_bytes = {}
    for cfg in (gqa, mha):
        schedule = lower(llm.prefill_graph(cfg, 1, 64), arch, CompileOptions(fusion="full"))
        (kernel,) = [k for k in schedule.kernels if isinstance(k.work, AttentionWork)]
        assert (kernel.work.g, kernel.work.sq, kernel.work.skv) == (cfg.kv_heads, cfg.group * 64, 64)
        kv_bytes[cfg.kv_heads] = attention_traffic(kernel.work, kernel.mapping.block_q)[1]
    assert kv_bytes[32] == 4 * kv_bytes[8] == 4 * 8 * 64 * 128 * 2 * 2


# ---------------------------------------------------------------- every built-in runs

@pytest.mark.parametrize("name", sorted(llm.DECODERS))
def test_prefill_of_every_builtin_simulates_on_tpu_v4(name):
    cfg = llm.DECODERS[name]
    arch = load_arch("tpu-v4")
    g = load_workload(name, seq_len=64, dtype="bf16")
    assert g.tensors[g.outputs[0]].shape == (1, cfg.vocab)                    # logits of the last position
    result = simulate(lower(g, arch), arch)
    assert result.macs == graph_macs(g) and result.latency_s > 0
    gathered = cfg.vocab * cfg.hidden * 2 * (not cfg.tied_embeddings)        # embedding rows only: 64 tokens
    if cfg.positional == "learned":
        gathered += cfg.max_positions * cfg.hidden * 2
    assert result.dram_read_bytes >= llm.weight_bytes(cfg, "bf16") - gathered


def test_kv_cache_is_written_and_read_in_its_own_dtype():
    g = load_workload("llama3-8b", context=16, dtypes=("int4", "bf16", "fp8"))
    t = g.tensors
    assert t["layer0.k_cache"].dtype == t["layer31.v_cache"].dtype == "fp8"
    assert t["layer0.k_cache"].shape == (1, 8, 17, 128)
    assert all(t[o].dtype == "fp8" and t[o].shape == (1, 1, 8, 128) for o in g.outputs[1:])
    assert len(g.outputs) == 1 + 2 * 32
    assert t["layer0.attn.q.w"].dtype == "int4" and t["layer0.attn.q.out"].dtype == "bf16"
    assert param_bytes(g) == llm.weight_bytes(llm.LLAMA3_8B, "int4")


def test_vit_b16():
    g = load_workload("vit-b16", batch=2)
    assert g.tensors[g.outputs[0]].shape == (2, 1000)
    assert sum(t.elements for t in g.tensors.values() if t.is_param and t.shape != (1,)) == 86_567_656
    per_layer = 4 * 197 * 768 * 768 + 2 * 197 * 768 * 3072 + 2 * 12 * 197 * 197 * 64
    assert graph_macs(g) == 2 * (196 * 768 * 768 + 12 * per_layer + 768 * 1000)     # 17.56 GMACs per image
    attention = [k for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
    assert len(attention) == 12


# ---------------------------------------------------------------- HF config.json

LLAMA3_JSON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
               "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "vocab_size": 128256, "hidden_act": "silu",
               "max_position_embeddings": 8192, "tie_word_embeddings": False, "rope_theta": 500000.0,
               "torch_dtype": "bfloat16"}
GPT2_JSON = {"model_type": "gpt2", "activation_function": "gelu_new", "n_embd": 768, "n_head": 12, "n_layer": 12,
             "n_positions": 1024, "n_ctx": 1024, "n_inner": None, "vocab_size": 50257}
GEMMA_JSON = {"model_type": "gemma", "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
              "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000,
              "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192}


def write(tmp_path, raw, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.mark.parametrize("raw, builtin", [(LLAMA3_JSON, llm.LLAMA3_8B), (GPT2_JSON, llm.GPT2),
                                          (GEMMA_JSON, llm.GEMMA_2B)])
def test_hf_config_matches_the_builtin(raw, builtin):
    assert replace(llm.config_from_hf(raw), name=builtin.name) == builtin


def test_hf_config_file_loads_in_both_phases(tmp_path):
    path = write(tmp_path, LLAMA3_JSON | {"num_hidden_layers": 2})
    prefill = load_workload(path, seq_len=16, dtype="bf16")
    assert graph_macs(prefill) > 0 and prefill.tensors["input_ids"].shape == (1, 16)
    decode = load_workload(path, phase="decode", context=100, batch=2, dtype="bf16")
    assert decode.tensors["layer1.v_cache"].shape == (2, 8, 101, 128)
    gpt2 = load_workload(write(tmp_path, GPT2_JSON, "gpt2.json"), seq_len=8)
    assert llm.param_count(llm.config_from_hf(GPT2_JSON)) == 124_439_808 and gpt2.tensors["position_ids"]


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": None}, "missing field 'hidden_size'"),
    ({"intermediate_size": None}, "missing field 'intermediate_size'"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer, got 0"),
    ({"vocab_size": -5}, "vocab_size must be a positive integer"),
    ({"hidden_size": 4100}, "num_attention_heads (32) must divide hidden_size (4100) when head_dim is absent"),
    ({"num_key_value_heads": 5}, "num_key_value_heads (5) must divide num_attention_heads (32)"),
    ({"model_type": "t5"}, "model_type 't5' is not supported"),
    ({"hidden_act": "relu"}, "hidden_act 'relu' is not supported"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
])
def test_hf_config_errors_name_the_field(tmp_path, change, message):
    raw = {k: v for k, v in (LLAMA3_JSON | change).items() if v is not None}
    with pytest.raises(InputError) as e:
        load_workload(write(tmp_path, raw))
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("config.json: ")


def test_gpt2_config_errors_name_its_own_fields(tmp_path):
    with pytest.raises(InputError, match="missing field 'hidden_size' \\(or 'n_embd'\\)"):
        llm.config_from_hf({k: v for k, v in GPT2_JSON.items() if k != "n_embd"})
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(InputError, match=r"cannot read .* as JSON"):
        load_workload(str(bad))


# ---------------------------------------------------------------- load_workload checks

@pytest.mark.parametrize("spec, kwargs, message", [
    ("bert-base", {"context": 10}, "--context: workload 'bert-base' is not a decoder LLM"),
    ("resnet18", {"phase": "decode"}, "--phase: workload 'resnet18' is not a decoder LLM"),
    ("gemm:8,8,8", {"context": 10}, "--context: workload 'gemm' is not a decoder LLM"),
    ("vit-b16", {"dtypes": ("int4", None, None)}, "separate weight, activation and KV dtypes"),
    ("llama2-7b", {"phase": "decode"}, "phase decode: needs --context"),
    ("llama2-7b", {"phase": "generate"}, "phase: got 'generate'"),
    ("llama2-7b", {"seq_len": 4097}, "seq_len: llama2-7b has 4096 positions, got 4097"),
    ("gpt2", {"context": 1024}, "context: gpt2 has 1024 positions"),
    ("llama2-7b", {"context": 8, "seq_len": 8}, "seq_len: decode takes --context"),
    ("llama2-7b", {"phase": "prefill", "context": 8}, "context: applies to --phase decode"),
    ("llama2-7b", {"context": 0}, "--context: must be a positive integer"),
    ("llama2-7b", {"dtypes": (None, None, "fp7")}, "kv_dtype: unknown 'fp7'"),
])
def test_load_workload_errors(spec, kwargs, message):
    with pytest.raises(InputError) as e:
        load_workload(spec, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_load_workload_phases_and_defaults():
    prefill = load_workload("gemma-2b", seq_len=16)
    assert prefill.name == "gemma-2b.prefill" and prefill.tensors["embed.tokens"].dtype == "int8"
    decode = load_workload("gemma-2b", context=16, dtype="bf16", dtypes=(None, None, "fp8"))
    assert decode.name == "gemma-2b.decode"
    assert decode.tensors["embed.tokens"].dtype == "bf16" and decode.tensors["layer0.k_cache"].dtype == "fp8"
    assert load_workload("llama2-7b", dtypes=(None, None, None)).name == "llama2-7b.prefill"   # all None: unset


# ---------------------------------------------------------------- weights streamed from flash (seed 003)

def gemma_decode_on_phone(weights: str):
    """Gemma-2B (int8) decode at context 128 on phone-npu with its flash level's `weights` rule."""
    arch = load_arch("phone-npu", [f"memory.ufs.weights={weights}"])
    cfg = llm.GEMMA_2B
    graph_for = lambda kind, size: llm.decoder_graph(cfg, phase=kind, dtypes="int8", context=size)  # noqa: E731
    return arch, run_llm(graph_for, arch, CompileOptions(), "decode", 1, 128, 0, llm.weight_bytes(cfg, "int8"),
                         llm.kv_cache_bytes_per_token(cfg, "int8"))


def test_gemma_2b_mlp_in_flash_is_slower_by_the_flash_time_and_costs_its_energy():
    arch, dram = gemma_decode_on_phone("none")
    _, flash = gemma_decode_on_phone("mlp")
    d, f = dram.decode[0].start, flash.decode[0].start
    mlp_bytes = 18 * 3 * 2048 * 16384                       # gate, up, down per layer, int8 (whole 4 KiB blocks)
    assert flash.flash_weight_bytes == mlp_bytes and dram.flash_weight_bytes == 0
    assert f.flash_read_bytes == mlp_bytes and d.flash_read_bytes == 0
    assert sum(k.flash_read_bytes for k in f.kernels if ".mlp." in k.name) == mlp_bytes
    # staged through DRAM: written once from flash, then read by the tile loads as before
    assert f.dram_read_bytes == d.dram_read_bytes and f.dram_write_bytes == d.dram_write_bytes + mlp_bytes
    # flash-bound: slower than all-in-DRAM by about flash bytes / flash bandwidth (the DRAM-side time overlaps)
    flash_s = mlp_bytes / 4.2e9
    assert flash.tpot_s >= flash_s
    assert abs((flash.tpot_s - dram.tpot_s) - flash_s) <= dram.tpot_s
    assert f.flash_utilization > 0.9 and any(k.stall_flash_cycles for k in f.kernels)
    # energy: the flash read (UFS 4.0 52.1 pJ/bit) and the staging write into DRAM, on top of the same DRAM reads
    ufs, dram_w = (arch.energy.actions[a].pj for a in ("ufs.read_byte", "dram.write_byte"))
    assert f.energy_breakdown_pj["ufs"] == pytest.approx(mlp_bytes * ufs)
    assert f.energy_pj - d.energy_pj == pytest.approx(mlp_bytes * (ufs + dram_w), rel=1e-9)
    assert flash.decode_pj_per_token > dram.decode_pj_per_token


def test_weights_that_do_not_fit_dram_overflow_to_flash():
    arch = load_arch("phone-npu")                             # weights: overflow, 8 GiB LPDDR5, 256 MiB staging
    w, kv = llm.weight_bytes(llm.LLAMA2_7B, "bf16"), 128 * llm.kv_cache_bytes_per_token(llm.LLAMA2_7B, "bf16")
    p = place_weights(arch, w, kv)
    assert p.flash_bytes == w - (8 * 2**30 - kv - 256 * 2**20)
    assert p.overflow_share == pytest.approx(p.flash_bytes / w)
    assert place_weights(arch, llm.weight_bytes(llm.GEMMA_2B, "int8"), kv).flash_bytes == 0   # fits: no flash
    with pytest.raises(InputError, match=r"memory.ufs.capacity_bytes"):
        place_weights(load_arch("phone-npu", ["memory.ufs.capacity_bytes=1GiB"]), w, kv)
    with pytest.raises(InputError, match=r"or set memory.ufs.weights"):
        place_weights(load_arch("phone-npu", ["memory.ufs.weights=none"]), w, kv)
