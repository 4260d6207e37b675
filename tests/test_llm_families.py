"""Decoder families beyond Llama/GPT-2: HF configs of every family, sliding windows, MoE routing, MLA, built-ins."""
from __future__ import annotations

import json
from dataclasses import replace
from itertools import combinations, product

import pytest

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.cli.main import main
from tilesim.compiler.attention import attention_traffic
from tilesim.compiler.fusion import AttentionWork, group_ops
from tilesim.compiler.lowering import graph_macs, lower_op
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.commands import weights_in_flash
from tilesim.studies.llm import run_llm
from tilesim.studies.runs import schedule
from tilesim.workloads import llm, load_workload, moe_routing

# Exact counts of the built-ins (tied tables once; DeepSeek-V3 without its multi-token-prediction module, which
# the 671 B of the model card leaves out too: the HF checkpoint's 685 B include 14 B of MTP weights).
EXACT_PARAMS = {"qwen2.5-7b": 7_615_616_512, "llama3.1-70b": 70_553_706_496, "phi3-mini": 3_821_079_552,
                "gemma2-9b": 9_241_705_984, "mixtral-8x7b": 46_702_792_704, "qwen3-30b-a3b": 30_532_122_624,
                "deepseek-v3": 671_026_419_200,
                "falcon-7b": 6_921_720_704}       # = transformers 5.25 FalconForCausalLM(config) parameters


def param_bytes(graph) -> int:
    """Bytes of a graph's learned parameters (shape-(1,) constants left out), each tensor once."""
    return sum(t.nbytes for t in graph.tensors.values() if t.is_param and not t.name.startswith("const."))


def small(name: str, **changes) -> llm.DecoderConfig:
    """Built-in `name` cut to a few layers (windows and dense layers kept consistent)."""
    cfg = llm.hf_builtin(name)
    layers = changes.pop("layers", 2)
    windows = cfg.windows[:layers] if cfg.windows else ()
    dense = changes.pop("dense_layers", min(cfg.dense_layers, 1))
    return replace(cfg, layers=layers, windows=windows, dense_layers=dense, **changes)


# ---------------------------------------------------------------- built-ins: parameter counts

@pytest.mark.parametrize("name", sorted(llm.HF_BUILTINS))
def test_builtin_param_counts_match_the_published_totals_within_half_a_percent(name):
    cfg = llm.hf_builtin(name)
    published = llm.HF_BUILTINS[name][1]
    assert llm.param_count(cfg) == EXACT_PARAMS[name]
    assert abs(llm.param_count(cfg) / published - 1) < 0.005


@pytest.mark.parametrize("name", ["qwen2.5-7b", "phi3-mini", "gemma2-9b", "falcon-7b"])
def test_dense_builtin_graphs_hold_every_weight_once(name):
    cfg = llm.hf_builtin(name)
    for graph in (llm.decode_graph(cfg, 1, 8, ("int8", "bf16", "bf16")), llm.prefill_graph(cfg, 1, 8, "int8")):
        assert param_bytes(graph) == llm.weight_bytes(cfg, "int8") == EXACT_PARAMS[name]


def test_builtins_with_dots_in_their_names_are_names_not_files():
    assert load_workload("qwen2.5-7b", seq_len=8).name == "qwen2.5-7b.prefill"
    assert load_workload("Llama3.1-70B", context=8).name == "llama3.1-70b.decode"


# ---------------------------------------------------------------- HF configs of each family

def test_each_family_reads_its_own_fields():
    qwen2 = llm.hf_builtin("qwen2.5-7b")
    assert qwen2.qkv_bias and not qwen2.biases and qwen2.windows == () and qwen2.kv_heads == 4
    gemma2 = llm.hf_builtin("gemma2-9b")
    assert gemma2.sandwich_norm and gemma2.tied_embeddings and gemma2.embed_scale and gemma2.act == "gelu_tanh"
    assert (gemma2.attn_softcap, gemma2.final_softcap) == (50.0, 30.0)
    assert gemma2.windows == (4096, 0) * 21                          # even layers local, odd layers global
    assert llm.hf_builtin("phi3-mini").windows == (2047,) * 32
    assert llm.hf_builtin("mixtral-8x7b").windows == ()              # sliding_window: null
    moe = llm.hf_builtin("qwen3-30b-a3b")
    assert moe.qk_norm and (moe.experts, moe.experts_per_token, moe.expert_ffn, moe.shared_ffn) == (128, 8, 768, 0)
    ds = llm.hf_builtin("deepseek-v3")
    assert (ds.head_dim, ds.rope_dim, ds.v_head_dim, ds.kv_lora_rank, ds.q_lora_rank) == (192, 64, 128, 512, 1536)
    assert (ds.experts, ds.experts_per_token, ds.shared_ffn, ds.dense_layers, ds.router_bias) == (256, 8, 2048, 3, True)


GEMMA3_1B = {"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
             "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
             "sliding_window": 512, "sliding_window_pattern": 6, "max_position_embeddings": 32768,
             "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": None,
             "attn_logit_softcapping": None, "query_pre_attn_scalar": 256}
QWEN2_MOE = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
             "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936, "num_experts": 60,
             "num_experts_per_tok": 4, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
             "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": False,
             "max_position_embeddings": 8192}
OPT_125M = {"model_type": "opt", "hidden_size": 768, "ffn_dim": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "vocab_size": 50272, "max_position_embeddings": 2048,
            "activation_function": "relu", "do_layer_norm_before": True, "word_embed_proj_dim": 768,
            "enable_bias": True}


def test_gemma3_local_global_pattern_and_multimodal_wrapper():
    cfg = llm.config_from_hf(GEMMA3_1B)
    assert cfg.windows == ((512,) * 5 + (0,)) * 4 + (512,) * 2           # every 6th layer global
    assert cfg.qk_norm and cfg.sandwich_norm and cfg.final_softcap == 0
    wrapped = llm.config_from_hf({"model_type": "gemma3", "text_config": GEMMA3_1B, "_name_or_path": "g/gemma-3"})
    assert replace(wrapped, name=cfg.name) == cfg and wrapped.name == "gemma-3"
    assert llm.param_count(cfg) == 999_885_952                           # google/gemma-3-1b-pt: 1.0 B
    types = ["full_attention" if i % 3 == 2 else "sliding_attention" for i in range(26)]
    assert llm.config_from_hf(GEMMA3_1B | {"layer_types": types}).windows == tuple(0 if i % 3 == 2 else 512
                                                                                    for i in range(26))


def test_qwen2_moe_and_opt_param_counts():
    # Qwen1.5-MoE-A2.7B: 14.3 B (model card); facebook/opt-125m: 125.2 M (learned positions 2048 + 2 rows)
    assert llm.param_count(llm.config_from_hf(QWEN2_MOE)) == 14_315_784_192
    opt = llm.config_from_hf(OPT_125M)
    assert (opt.act, opt.norm, opt.position_offset, opt.tied_embeddings) == ("relu", "layer", 2, True)
    assert llm.param_count(opt) == 125_239_296
    g = llm.prefill_graph(opt, 1, 16, "int8")
    assert param_bytes(g) == 125_239_296 and any(op.op_type == "Relu" for op in g.ops)


def test_qwen2_sliding_window_applies_from_max_window_layers_on():
    raw = json.loads((llm.CONFIG_DIR / "qwen2.5-7b.json").read_text())
    cfg = llm.config_from_hf(raw | {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20})
    assert cfg.windows == (0,) * 20 + (4096,) * 8


@pytest.mark.parametrize("change, message", [
    ({"model_type": "t5"}, "model_type 't5' is not supported; supported: deepseek_v2, deepseek_v3, falcon, gemma"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor = 0.5 changes the cost in a way tilesim does not"),
    ({"mlp_bias": True}, "mlp_bias = true changes the cost"),
    ({"quantization_config": {"quant_method": "awq"}}, "quantization_config = {\"quant_method\": \"awq\"} changes"),
    ({"model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
      "mlp_only_layers": [0]}, "mlp_only_layers = [0] changes the cost"),
    ({"model_type": "opt", "ffn_dim": 64, "word_embed_proj_dim": 512}, "word_embed_proj_dim = 512"),
    ({"model_type": "gemma2", "layer_types": ["sliding_attention"]}, "layer_types must list"),
    ({"model_type": "mixtral", "num_experts_per_tok": 9}, "experts_per_token <= experts"),
])
def test_unknown_families_and_unmodelled_fields_are_one_line_errors(tmp_path, change, message):
    raw = json.loads((llm.CONFIG_DIR / "llama3.1-70b.json").read_text()) | change
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError) as e:
        load_workload(str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- sliding windows

def test_mistral_decode_cache_stops_at_the_window():
    cfg = replace(llm.MISTRAL_7B, layers=2, windows=(4096, 4096))
    short, long = llm.decode_graph(cfg, 1, 1000), llm.decode_graph(cfg, 1, 10_000)
    assert short.tensors["layer0.k_cache"].shape == (1, 8, 1001, 128)
    assert long.tensors["layer0.k_cache"].shape == long.tensors["layer1.v_cache"].shape == (1, 8, 4096, 128)
    per_layer_token = 2 * 8 * 128 * 2
    assert llm.kv_cache_bytes(cfg, 10_000, "bf16") == 2 * 4096 * per_layer_token
    assert llm.kv_cache_bytes(cfg, 1000, "bf16") == 1000 * llm.kv_cache_bytes_per_token(cfg, "bf16")
    attention = 2 * cfg.layers * cfg.heads * cfg.head_dim * 4096
    assert graph_macs(long) == llm.non_embedding_params(cfg) + attention


def test_gemma2_local_layers_are_capped_and_global_layers_are_not():
    cfg = small("gemma2-9b", layers=4, max_positions=100_000)
    g = llm.decode_graph(cfg, 2, 9999, "bf16")
    assert [g.tensors[f"layer{i}.k_cache"].shape[2] for i in range(4)] == [4096, 10_000, 4096, 10_000]
    per_token = 2 * 8 * 256 * 2
    assert llm.kv_cache_bytes(cfg, 10_000, "bf16") == (2 * 4096 + 2 * 10_000) * per_token


def test_window_prefill_attends_in_chunks_of_at_least_twice_the_window():
    assert llm.window_chunk(8192, 2047) == 4096 and llm.window_chunk(4000, 2047) == 4000
    assert llm.window_chunk(8192, 0) == 8192 and llm.window_chunk(8191, 1000) == 8191   # prime: one chunk
    cfg = small("phi3-mini", layers=1, max_positions=8192)
    g = llm.prefill_graph(cfg, 1, 8192, "bf16")
    (attention,) = [k for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
    work = attention[2]
    assert (work.g, work.sq, work.skv) == (32 * 2, 4096, 4096)           # 32 heads x 2 chunks, 4096 keys per query
    full = llm.prefill_graph(replace(cfg, windows=()), 1, 8192, "bf16")
    assert graph_macs(full) - graph_macs(g) == 32 * 8192 * (8192 - 4096) * 2 * 96


def test_gemma2_soft_capping_stays_inside_the_fused_attention_kernel():
    cfg = small("gemma2-9b")
    g = llm.decode_graph(cfg, 1, 100, "bf16")
    kernels = [k for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
    assert [[o.split(".")[-1] for o in k[1]] for k in kernels] == [["scores", "scale", "div", "tanh", "softcap",
                                                                    "softmax", "context"]] * 2
    assert kernels[0][2].score_ops == 4                                  # scale, divide, tanh, multiply
    assert g.ops[-1].name == "logits_softcap" and g.tensors[g.outputs[0]].shape == (1, cfg.vocab)


# ---------------------------------------------------------------- MoE routing

def brute_force_distinct(experts: int, top_k: int, tokens: int) -> float:
    """E[distinct experts] by enumerating every equally likely top-k choice of every token."""
    choices = list(combinations(range(experts), top_k))
    total = sum(len(set().union(*picks)) for picks in product(choices, repeat=tokens))
    return total / len(choices) ** tokens


@pytest.mark.parametrize("experts, top_k, tokens", [(4, 2, 2), (5, 2, 3), (6, 3, 2), (4, 1, 4)])
def test_expected_distinct_experts_matches_enumeration(experts, top_k, tokens):
    probs = moe_routing.selection_probs(experts, top_k)
    expected = experts * (1 - (1 - top_k / experts) ** tokens)
    assert moe_routing.expected_distinct_experts(probs, tokens) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(brute_force_distinct(experts, top_k, tokens), rel=1e-12)


def test_one_token_touches_k_experts_and_many_touch_all():
    probs = moe_routing.selection_probs(256, 8)
    assert moe_routing.expected_distinct_experts(probs, 1) == pytest.approx(8)
    assert moe_routing.expected_distinct_experts(probs, 10_000) == pytest.approx(256)
    assert probs == pytest.approx([8 / 256] * 256)


def test_skew_concentrates_the_load_and_touches_fewer_experts():
    uniform, skewed = moe_routing.selection_probs(64, 4), moe_routing.selection_probs(64, 4, 1.2)
    assert sum(skewed) == pytest.approx(4) and max(skewed) <= 1 and skewed == tuple(sorted(skewed, reverse=True))
    assert skewed[0] == 1.0                                              # capped: the top expert is in every top-4
    for tokens in (2, 16, 64):
        assert (moe_routing.expected_distinct_experts(skewed, tokens)
                < moe_routing.expected_distinct_experts(uniform, tokens))
    load = moe_routing.expected_tokens_per_expert(skewed, 16)
    assert sum(load) == pytest.approx(64) and load[0] == 16


@pytest.mark.parametrize("tokens, skew", [(1, 0.0), (3, 0.0), (4, 0.0), (64, 0.0), (4, 1.0), (64, 0.8)])
def test_expert_sets_read_the_touched_experts_and_do_the_tokens_work(tokens, skew):
    probs = moe_routing.selection_probs(8, 2, skew)
    sets = moe_routing.expert_sets(probs, tokens, 1000)
    columns = sum(s.columns for s in sets)
    assert abs(columns - moe_routing.expected_distinct_experts(probs, tokens) * 1000) <= len(sets)
    assert abs(sum(s.tokens * s.columns for s in sets) - tokens * 2 * 1000) <= 2 * len(sets)
    assert all(s.tokens >= 1 and s.columns >= 1 for s in sets)


def test_moe_decode_reads_the_expected_experts_weights_and_computes_top_k():
    cfg = small("mixtral-8x7b", layers=1)
    expert = 3 * cfg.hidden * cfg.expert_ffn                                 # gate, up, down of one expert
    for batch in (1, 4, 64):
        g = llm.decode_graph(cfg, batch, 100, ("int8", "bf16", "bf16"))
        experts = sum(t.nbytes for t in g.tensors.values() if t.is_param and ".mlp.experts" in t.name)
        distinct = 8 * (1 - (1 - 2 / 8) ** batch)
        assert experts == pytest.approx(distinct * expert, abs=3 * cfg.hidden * 2)
        macs = sum(lower_op(g, op).macs for op in g.ops if ".mlp.experts" in op.name and op.op_type == "MatMul")
        assert macs == batch * 2 * expert                                    # top-2: every token through 2 experts
    prefill = llm.prefill_graph(cfg, 1, 512, ("int8", "bf16", "bf16"))
    experts = sum(t.nbytes for t in prefill.tensors.values() if t.is_param and ".mlp.experts" in t.name)
    assert experts == 8 * expert                                             # 512 tokens touch all 8


def test_moe_expert_traffic_in_the_simulator_and_flash_placement():
    cfg = small("qwen3-30b-a3b", layers=1)
    arch = load_arch("tpu-v4")
    g = llm.decode_graph(cfg, 4, 64, ("int8", "bf16", "bf16"))
    schedule = lower(g, arch, CompileOptions())
    result = simulate(schedule, arch)
    expert_reads = sum(r.dram_weight_read_bytes for r in result.kernels if ".mlp.experts" in r.name)
    expert_bytes = sum(t.nbytes for t in g.tensors.values() if t.is_param and ".mlp.experts" in t.name)
    assert expert_reads == expert_bytes == round(128 * (1 - (1 - 8 / 128) ** 4) * 768) * 3 * 2048
    assert weights_in_flash("layer0.mlp.experts0.gate", "mlp") and weights_in_flash("layer0.mlp.experts1.down",
                                                                                    "*.experts*")


def test_moe_total_and_active_params():
    cfg = llm.hf_builtin("mixtral-8x7b")
    per_layer_active = 2 * 4096 * (4096 + 1024) + 4096 * 8 + 2 * 3 * 4096 * 14336
    assert llm.non_embedding_params(cfg) == 32 * per_layer_active + 32000 * 4096     # 12.9 B active


# ---------------------------------------------------------------- MLA

def test_mla_cache_holds_the_latent_and_the_rope_key():
    cfg = llm.hf_builtin("deepseek-v3")
    assert llm.kv_cache_bytes_per_token(cfg, "bf16") == (512 + 64) * 61 * 2 == 70_272
    assert llm.kv_cache_bytes_per_token(cfg, "fp8") == (512 + 64) * 61
    cut = small("deepseek-v3", layers=3)
    g = llm.decode_graph(cut, 2, 99, "bf16")
    cache = sum(t.nbytes for t in g.tensors.values() if t.name.endswith("kv_cache"))
    assert cache == 2 * 100 * llm.kv_cache_bytes_per_token(cut, "bf16") == 2 * 100 * 576 * 3 * 2
    written = sum(g.tensors[o].nbytes for o in g.outputs[1:])
    assert written == 2 * llm.kv_cache_bytes_per_token(cut, "bf16")                  # one new token per sequence


def test_mla_graphs_hold_every_weight_once_and_decode_attends_in_latent_space():
    cut = small("deepseek-v3", layers=2, experts=0, dense_layers=0)                 # dense: every weight in graph
    for g in (llm.decode_graph(cut, 1, 50, "int8"), llm.prefill_graph(cut, 1, 16, "int8")):
        assert param_bytes(g) == llm.weight_bytes(cut, "int8")
    g = llm.decode_graph(cut, 1, 50, "bf16")
    kernels = [k[2] for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
    assert [(w.g, w.sq, w.skv, w.d, w.kv_share) for w in kernels] == [(1, 128, 51, 576, 1)] * 2
    # absorbed decode MACs: projections + W_UK, W_UV per head + attention over the latent, per token (scores over
    # the 576-wide cache, values its 512 latent columns: FlashMLA's head_size_v)
    attn = 128 * 51 * (576 + 512)
    assert graph_macs(g) == llm.non_embedding_params(cut) + 2 * attn


def test_mla_decode_reads_its_latent_cache_once_not_as_k_and_again_as_v():
    """The absorbed decode attends over the cache as keys and as values (V = its first kv_lora_rank columns, a slice
    the fused kernel reads in place): it reads the cache once, skv x (rank + rope) values per kv head, not
    skv x (2 x rank + rope)."""
    cut = small("deepseek-v3", layers=1, experts=0, dense_layers=0)
    g = llm.decode_graph(cut, 2, 99, "bf16")
    works = [k[2] for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
    assert [(w.kv_shared, w.d, w.dv) for w in works] == [(True, 576, 512)]
    _, kv_read, _ = attention_traffic(works[0], works[0].sq)
    cache = sum(t.nbytes for t in g.tensors.values() if t.name.endswith("kv_cache"))
    assert kv_read == cache == 2 * 100 * 576 * 2
    # ordinary attention keeps separate K and V: read both
    plain = [k[2] for k in group_ops(llm.decode_graph(llm.LLAMA3_8B, 1, 9, "bf16"), "full").kernels
             if isinstance(k[2], AttentionWork)]
    assert plain and not any(w.kv_shared for w in plain)


# ---------------------------------------------------------------- through the CLI

def test_moe_and_mla_run_compare_and_generate_through_the_cli(tmp_path, capsys):
    raw = json.loads((llm.CONFIG_DIR / "deepseek-v3.json").read_text())
    path = tmp_path / "tiny-deepseek.json"
    path.write_text(json.dumps(raw | {"num_hidden_layers": 2, "first_k_dense_replace": 1, "n_routed_experts": 16,
                                      "hidden_size": 1024, "num_attention_heads": 8, "vocab_size": 1000}))
    for argv in (["run", "-w", str(path), "-a", "tpu-v4", "--phase", "decode", "--context", "64", "--batch", "4"],
                 ["run", "-w", str(path), "-a", "tpu-v4", "--phase", "generate", "--prompt-len", "16",
                  "--gen-tokens", "4"],
                 ["compare", "-w", str(path), "-a", "tpu-v4", "-f", "json"]):
        assert main(argv) == 0


def test_expert_load_summarises_a_steps_routing():
    cfg = llm.hf_builtin("mixtral-8x7b")
    load = llm.expert_load(cfg, 4, "bf16")
    assert load.distinct_experts == pytest.approx(8 * (1 - 0.75**4)) and load.moe_layers == 32
    assert load.expert_read_bytes == round(load.distinct_experts * 3 * 4096 * 14336 * 2)
    assert load.tokens_per_expert == pytest.approx([1.0] * 8) and load.max_tokens == pytest.approx(1.0)
    skewed = llm.expert_load(replace(cfg, expert_skew=1.0), 4, "bf16")
    zipf_top = 2 / sum(1 / (e + 1) for e in range(8))                      # q_0 = k x 1 / H_8, below the cap
    assert skewed.max_tokens == pytest.approx(4 * zipf_top) and skewed.distinct_experts < load.distinct_experts
    assert llm.expert_load(llm.LLAMA3_8B, 4, "bf16") is None


# ---------------------------------------------------------------- expert report, skew, sparsity, windows in runs

TINY_MOE = {"model_type": "mixtral", "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
            "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000, "num_local_experts": 8,
            "num_experts_per_tok": 2, "sliding_window": None, "max_position_embeddings": 4096}


def run_json(capsys, argv: list[str]) -> dict:
    """`tilesim run ... -f json` as a dict."""
    assert main([*argv, "-f", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_moe_run_reports_expert_traffic_and_load_and_expert_skew_changes_them(tmp_path, capsys):
    path = tmp_path / "tiny-moe.json"
    path.write_text(json.dumps(TINY_MOE))
    argv = ["run", "-w", str(path), "-a", "tpu-v4", "--phase", "decode", "--context", "16", "--batch", "4"]
    uniform = run_json(capsys, argv)["experts"]
    step = uniform["decode_step"]
    assert uniform["prefill"] is None and step["tokens"] == 4 and step["moe_layers"] == 2
    assert step["distinct_experts"] == pytest.approx(8 * (1 - 0.75**4))
    one_expert = 3 * 512 * 1024 * 2                                             # bf16 (the tpu-v4 default)
    assert step["expert_read_bytes_per_layer"] == round(step["distinct_experts"] * one_expert)
    assert step["expert_read_bytes"] == 2 * step["expert_read_bytes_per_layer"]
    assert step["tokens_per_expert"] == pytest.approx([1.0] * 8)
    skewed = run_json(capsys, [*argv, "--expert-skew", "1.5"])["experts"]["decode_step"]
    assert skewed["distinct_experts"] < step["distinct_experts"] and skewed["max_tokens_per_expert"] > 1.5
    assert sum(skewed["tokens_per_expert"]) == pytest.approx(4 * 2)              # T x top-k
    # the graph reads what the report says: the expert kernels' weight bytes follow the skew too
    cfg = replace(llm.config_from_hf(TINY_MOE), expert_skew=1.5)
    g = llm.decode_graph(cfg, 4, 16, "bf16")
    assert sum(t.nbytes for t in g.tensors.values() if t.is_param and ".mlp.experts" in t.name) == \
        pytest.approx(skewed["expert_read_bytes"], abs=2 * 3 * 512 * 2)            # whole columns per set
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "experts   decode step (4 tokens): 5.5 of 8 experts per layer" in table and "busiest expert" in table
    assert main(["run", "-w", "llama3-8b", "--expert-skew", "1"]) == 2
    assert "--expert-skew: only for mixture-of-experts models; llama3-8b has no experts" in capsys.readouterr().err
    assert main([*argv, "--expert-skew", "-1"]) == 2
    assert "--expert-skew: must be >= 0" in capsys.readouterr().err


def test_mlp_sparsity_applies_to_every_expert():
    cfg = llm.config_from_hf(TINY_MOE | {"num_hidden_layers": 1})
    half = llm.sparse_mlp(cfg, 0.5)
    assert (half.ffn, half.expert_ffn, half.shared_ffn) == (512, 512, 0)
    dense, sparse = (llm.decode_graph(c, 64, 16, "bf16") for c in (cfg, half))
    expert_macs = [sum(lower_op(g, op).macs for op in g.ops if ".mlp.experts" in op.name and op.op_type == "MatMul")
                   for g in (dense, sparse)]
    assert expert_macs[1] * 2 == expert_macs[0] == 64 * 2 * 3 * 512 * 1024
    ds = small("deepseek-v3", layers=2)
    assert llm.sparse_mlp(ds, 0.25).shared_ffn == round(ds.shared_ffn * 0.75)


def test_a_sliding_window_bounds_the_kv_cache_that_must_fit(tmp_path, capsys):
    """Mistral-style window 64: at 4,000 tokens each layer holds 64 tokens, so a DRAM that the unbounded cache
    would overflow still fits, and the reported cache is batch x layers x 64 tokens."""
    raw = TINY_MOE | {"model_type": "mistral", "sliding_window": 64}
    path = tmp_path / "tiny-mistral.json"
    path.write_text(json.dumps(raw))
    cfg = llm.read_hf_config(str(path))
    per_token = llm.kv_cache_bytes_per_token(cfg, "bf16")
    argv = ["run", "-w", str(path), "-a", "tpu-v4", "--phase", "decode", "--context", "3999", "--batch", "2"]
    weights = llm.weight_bytes(cfg, "bf16")
    room = weights + 2 * 64 * per_token + 2**20          # weights + the windowed cache + 1 MiB < unbounded cache
    assert room < weights + 2 * 4000 * per_token
    d = run_json(capsys, [*argv, "--set", f"memory.hbm.capacity_bytes={room}"])
    assert d["kv_cache_bytes"] == 2 * llm.kv_cache_bytes(cfg, 4000, "bf16") == 2 * 64 * per_token


def test_generate_samples_the_step_where_a_window_fills():
    """Steps grow with context until the window (8) fills at context 7, then stay flat: the trapezoid over samples
    that include the bend matches simulating every step; without it the flat part would be over-estimated."""
    cfg = replace(llm.config_from_hf(TINY_MOE | {"model_type": "mistral", "sliding_window": 8,
                                                "num_hidden_layers": 1}), name="tiny-window")
    assert llm.window_bends(cfg) == (7,)
    arch = load_arch("tpu-v4")
    graph_for = lambda kind, size: llm.decoder_graph(cfg, batch=8, phase=kind, dtypes="bf16",   # noqa: E731
                                                     **({"seq_len": size} if kind == "prefill" else {"context": size}))
    kv = lambda tokens: llm.kv_cache_bytes(cfg, tokens, "bf16")                  # noqa: E731
    r = run_llm(graph_for, arch, CompileOptions(), "generate", 8, 2, 60, 0, kv, llm.window_bends(cfg))
    assert [(s.first, s.last) for s in r.decode] == [(2, 6), (7, 30), (31, 61)]
    # each step lowered as run_llm lowers it (the mapping search simulates its shortlist: studies.runs.schedule)
    every = [simulate(schedule(graph_for("decode", c), arch, CompileOptions()), arch).cycles for c in range(2, 62)]
    assert every[5] == every[-1] and every[0] < every[5]                          # flat past the bend
    total = sum(s.total("cycles") for s in r.decode)
    assert total == pytest.approx(sum(every), rel=2e-3)
    plain = run_llm(graph_for, arch, CompileOptions(), "generate", 8, 2, 60, 0, kv)        # no bend sampled
    assert abs(sum(s.total("cycles") for s in plain.decode) - sum(every)) > abs(total - sum(every))


# ---------------------------------------------------------------- Falcon

FALCON_VARIANTS = {   # changes to falcon-7b's config -> parameters of transformers 5.25 FalconForCausalLM(config)
    "new_decoder_architecture": ({"new_decoder_architecture": True, "num_kv_heads": 8, "num_attention_heads": 128,
                                  "hidden_size": 8192, "num_hidden_layers": 2}, 1_891_713_024),
    "alibi_sequential_biases": ({"alibi": True, "multi_query": False, "parallel_attn": False, "bias": True,
                                 "num_hidden_layers": 2, "hidden_size": 2048, "num_attention_heads": 32}, 233_889_792),
}


@pytest.mark.parametrize("variant", sorted(FALCON_VARIANTS))
def test_falcon_config_variants_count_what_transformers_counts(variant):
    raw = json.loads((llm.CONFIG_DIR / "falcon-7b.json").read_text())
    changes, params = FALCON_VARIANTS[variant]
    cfg = llm.config_from_hf(raw | changes)
    assert llm.param_count(cfg) == params
    assert param_bytes(llm.decode_graph(cfg, 1, 8, "int8")) == params


def test_falcon_7b_is_multi_query_and_parallel_with_one_norm():
    cfg = llm.hf_builtin("falcon-7b")
    assert (cfg.kv_heads, cfg.head_dim, cfg.ffn, cfg.act, cfg.norm) == (1, 64, 4 * 4544, "gelu", "layer")
    assert cfg.parallel_attn and cfg.shared_norm and cfg.positional == "rope" and cfg.tied_embeddings
    assert llm.kv_cache_bytes_per_token(cfg, "bf16") == 32 * 2 * 64 * 2
    cut = replace(cfg, layers=2)
    g = llm.decode_graph(cut, 1, 99, "bf16")
    norms = [op.name for op in g.ops if op.op_type == "LayerNormalization"]
    assert norms == ["layer0.attn_norm", "layer1.attn_norm", "final_norm"]     # one norm feeds both branches
    attn = 71 * 100 * (64 + 64)
    assert graph_macs(g) == llm.non_embedding_params(cut) + 2 * attn
    # both branches read the norm's output: the MLP does not wait for attention
    mlp_up = next(op for op in g.ops if op.name == "layer0.mlp.up")
    assert mlp_up.inputs[0] == next(op for op in g.ops if op.name == "layer0.attn_norm").outputs[0]


def test_falcon_alibi_is_a_score_bias_inside_the_attention_kernel():
    raw = json.loads((llm.CONFIG_DIR / "falcon-7b.json").read_text()) | {"num_hidden_layers": 1}
    rope, alibi = (llm.config_from_hf(raw | {"alibi": a}) for a in (False, True))
    works = {}
    for cfg in (rope, alibi):
        g = llm.decode_graph(cfg, 1, 31, "bf16")
        works[cfg.positional] = [k[2] for k in group_ops(g, "full").kernels if isinstance(k[2], AttentionWork)]
        assert any(op.op_type == "RotaryEmbedding" for op in g.ops) == (cfg.positional == "rope")
    assert len(works["alibi"]) == len(works["rope"]) == 1
    assert works["alibi"][0].score_ops == works["rope"][0].score_ops + 1
    with pytest.raises(InputError, match="apply_residual_connection_post_layernorm = true changes the cost"):
        llm.config_from_hf(raw | {"apply_residual_connection_post_layernorm": True})
    with pytest.raises(InputError, match="alibi = true changes the cost"):          # other families still refuse it
        llm.config_from_hf({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1,
                            "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10, "alibi": True})
