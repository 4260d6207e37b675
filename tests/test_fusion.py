"""Fusion: kernels counted on tiny graphs, traffic never added, MACs conserved, attention's S never in DRAM."""
from __future__ import annotations

import json

import pytest
from archs import tiny_arch, tiny_arch_dict

import tilesim
import tilesim.compiler.schedule as schedule_module
from tilesim import simulate
from tilesim.arch import arch_from_dict, load_arch
from tilesim.cli.main import main
from tilesim.compiler import GraphBuilder
from tilesim.compiler.attention import AttentionMapping, AttentionWork, attention_tile_compute
from tilesim.compiler.fusion import group_ops
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.simulate import kernel_evaluator
from tilesim.workloads import BUILTINS, load_workload, workload_names


def conv_bn_relu():
    b = GraphBuilder("cbr")
    x = b.input("x", (1, 16, 28, 28))
    y = b.add("Relu", [b.batchnorm(b.conv(x, 32, 3, pad=1))])
    return b.build(y)


def kernels(graph, policy):
    return [k[1] for k in group_ops(graph, policy).kernels]


def test_conv_bn_relu_is_one_kernel_under_epilogue_and_three_under_none():
    g = conv_bn_relu()
    assert kernels(g, "none") == [("conv",), ("bn",), ("relu",)]
    assert kernels(g, "epilogue") == [("conv", "bn", "relu")]
    notes = group_ops(g, "epilogue").notes
    assert any("bn: folded into conv" in n for n in notes)


def test_residual_add_joins_the_later_producer_and_reads_the_other_input_once():
    b = GraphBuilder("res")
    x = b.input("x", (1, 16, 14, 14))
    a = b.conv(x, 16, 3, pad=1, name="a")
    c = b.conv(x, 16, 1, name="c")
    y = b.add("Relu", [b.add("Add", [a, c], name="add")], name="relu")
    grouping = group_ops(b.build(y), "epilogue")
    assert [k[1] for k in grouping.kernels] == [("a",), ("c", "add", "relu")]
    epilogue = grouping.kernels[1][4]
    assert epilogue.read_bytes == 16 * 14 * 14                 # a's output, int8
    assert grouping.kernels[1][3] == (0,)                       # waits for kernel a


def test_an_input_read_twice_is_not_fused():
    b = GraphBuilder("fanout")
    x = b.input("x", (1, 8, 8, 8))
    c = b.conv(x, 8, 1)
    r1, r2 = b.add("Relu", [c], name="r1"), b.add("Sigmoid", [c], name="r2")
    grouping = group_ops(b.build([r1, r2]), "full")
    assert len(grouping.kernels) == 3
    assert any("read by other ops too" in n for n in grouping.notes)


def bert_layer_kernels(policy):
    g = load_workload("bert-base", seq_len=32)
    return [k for k in group_ops(g, policy).kernels if k[0].startswith("encoder.0.")]


def test_a_bert_layers_attention_is_one_kernel_under_full():
    full = bert_layer_kernels("full")
    attention = [k for k in full if isinstance(k[2], AttentionWork)]
    assert len(attention) == 1
    assert [o.split(".")[-1] for o in attention[0][1]] == ["scores", "scale", "softmax", "context"]
    assert len(full) == 9        # q, k, v (+bias), attention, out (+bias, residual), ln, up (+gelu), down (+res), ln
    assert len(bert_layer_kernels("none")) > len(bert_layer_kernels("epilogue")) > len(full)


def test_attention_policy_fuses_only_the_attention_chain():
    # eager PyTorch with scaled_dot_product_attention: one attention kernel, every other op its own kernel
    only = bert_layer_kernels("attention")
    none = bert_layer_kernels("none")
    attention = [k for k in only if isinstance(k[2], AttentionWork)]
    assert len(attention) == 1 and [o.split(".")[-1] for o in attention[0][1]] == ["scores", "scale", "softmax",
                                                                                  "context"]
    assert all(len(k[1]) == 1 and k[4] is None for k in only if not isinstance(k[2], AttentionWork))
    # the chain's four kernels became one; transposes into contractions are their consumers' strided reads
    transposes = sum(k[0].endswith("_t") for k in none)
    assert transposes == 4 and len(only) == len(none) - 3 - transposes
    assert len(bert_layer_kernels("full")) < len(only)


def test_nothing_fuses_under_none():
    for name in workload_names():
        g = load_workload(name)
        ks = group_ops(g, "none").kernels
        assert all(len(k[1]) == 1 and k[4] is None for k in ks)


# Every built-in, the HF-config ones included (gemma2-9b on edge-npu with the naive mapper moved 3% more with full
# than with epilogue: post-norm residuals kept on chip left its MLP tiles less room, so weights were re-read; lower
# now keeps the weaker policy's kernels then). DeepSeek-V3 alone is left out: 30 s, and no pattern the others lack.
@pytest.mark.parametrize("name", [n for n in workload_names() if n != "deepseek-v3"])
def test_fusion_never_adds_traffic_and_keeps_macs(name):
    arch = load_arch("edge-npu")
    g = load_workload(name, dtype=arch.array.dtype, **({"seq_len": 64} if BUILTINS[name].has_seq_len else {}))
    evaluate = kernel_evaluator(arch, "pipelined")          # counts DRAM bytes as simulate does (lower's guard)
    runs = {p: simulate(lower(g, arch, CompileOptions(fusion=p, mapper="naive"), evaluate), arch)
            for p in ("none", "epilogue", "full", "attention")}
    traffic = {p: r.dram_read_bytes + r.dram_write_bytes for p, r in runs.items()}
    assert traffic["full"] <= traffic["epilogue"] <= traffic["none"]
    assert traffic["full"] <= traffic["attention"] <= traffic["none"]
    assert len({r.macs for r in runs.values()}) == 1
    assert len(runs["full"].kernels) <= len(runs["epilogue"].kernels) <= len(runs["none"].kernels)


def test_the_guard_lowers_each_weaker_policy_once(monkeypatch):
    """full guards against epilogue and attention, and both of those against none: one lower() call lowers none
    once (its guarded schedule shared), each policy's kernels once, plus full's without kept activations."""
    arch = load_arch("edge-npu")
    g = load_workload("resnet18", dtype=arch.array.dtype)
    calls = []
    real = schedule_module._lower_policy
    monkeypatch.setattr(schedule_module, "_lower_policy",
                        lambda graph, a, options, *rest: calls.append(options.fusion) or real(graph, a, options, *rest))
    lower(g, arch, CompileOptions(fusion="full", mapper="naive"), kernel_evaluator(arch, "pipelined"))
    assert sorted(calls) == ["attention", "epilogue", "full", "full", "none"]


@pytest.mark.parametrize("seq", [128, 512])
def test_unfused_attention_moves_the_scores_through_dram(seq):
    # B=1, H=2, S=seq, D=64, bf16: unfused minus fused traffic >= 2 * B * H * S^2 * 2 bytes (S written and read)
    b = GraphBuilder("attn", "bf16")
    q, k, v = (b.input(n, (1, 2, seq, 64)) for n in "qkv")
    kt = b.add("Transpose", [k], {"perm": (0, 1, 3, 2)})
    s = b.add("MatMul", [q, kt], name="scores")
    p = b.add("Softmax", [b.add("Mul", [s, b.param("scale", (1,))], name="scale")], {"axis": -1}, name="softmax")
    o = b.add("MatMul", [p, v], name="context")
    g = b.build(o)
    arch = load_arch("tpu-v4")
    none, full = (simulate(lower(g, arch, CompileOptions(fusion=f)), arch) for f in ("none", "full"))
    diff = (none.dram_read_bytes + none.dram_write_bytes) - (full.dram_read_bytes + full.dram_write_bytes)
    assert diff >= 2 * 1 * 2 * seq * seq * 2
    assert none.macs == full.macs == 2 * 2 * seq * seq * 64
    assert len(full.kernels) == 1 and full.kernels[0].mapping.startswith("ws attention")


def test_fused_attention_is_faster_at_every_sequence_length():
    # Fused beats unfused at every S. The H100 measurements (2.1x at S=512 growing to 8.9x at 8192) also grow with S
    # because small S matrices stay in its 50 MB L2; tilesim does not yet keep intermediates on chip between
    # kernels, so here the unfused S^2 traffic and the S^2 * D compute grow alike and the ratio stays ~3x.
    arch = load_arch("tpu-v4")
    speedups = []
    for seq in (512, 2048, 4096):
        b = GraphBuilder("attn", "bf16")
        q, k, v = (b.input(n, (1, 32, seq, 128)) for n in "qkv")
        s = b.add("MatMul", [q, b.add("Transpose", [k], {"perm": (0, 1, 3, 2)})], name="scores")
        o = b.add("MatMul", [b.add("Softmax", [s], {"axis": -1}, name="softmax"), v], name="context")
        g = b.build(o)
        cycles = {f: simulate(lower(g, arch, CompileOptions(fusion=f)), arch).cycles for f in ("none", "full")}
        speedups.append(cycles["none"] / cycles["full"])
    assert all(x > 2 for x in speedups)


def test_epilogue_work_overlaps_and_reads_residuals():
    arch = tiny_arch(bw=64, sram_bytes=1 << 20)
    g = conv_bn_relu()
    none = simulate(lower(g, arch, CompileOptions(fusion="none")), arch)
    epi = simulate(lower(g, arch, CompileOptions(fusion="epilogue")), arch)
    assert epi.cycles < none.cycles
    assert epi.dram_write_bytes == 32 * 28 * 28                   # only the final activation is written
    assert epi.energy_breakdown_pj.get("vector", 0) > 0           # ReLU still costs vector ops


def test_compare_cli_reports_each_policy_and_the_savings(capsys):

    assert main(["compare", "-w", "bert-base", "-a", "tpu-v4", "--seq-len", "64", "-f", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    by = {p["fusion"]: p for p in d["policies"]}
    assert list(by) == ["none", "epilogue", "full"]
    assert by["none"]["speedup_vs_none"] == 1.0 and by["full"]["speedup_vs_none"] > 1
    assert by["none"]["fused_groups"] == [] and by["full"]["fused_groups"]
    assert all(g["saved_dram_bytes"] >= 0 for g in by["full"]["fused_groups"])
    assert len({p["macs"] for p in d["policies"]}) == 1
    assert main(["compare", "-w", "resnet18", "-a", "edge-npu", "--fusion", "none,full", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "full: " in out and "saved" in out
    assert main(["compare", "--fusion", "full,fancy"]) == 2
    assert "--fusion" in capsys.readouterr().err


def test_run_takes_a_fusion_policy(capsys):

    main(["run", "-w", "resnet18", "-a", "edge-npu", "--fusion", "none", "-f", "json"])
    none = json.loads(capsys.readouterr().out)
    main(["run", "-w", "resnet18", "-a", "edge-npu", "-f", "json"])
    full = json.loads(capsys.readouterr().out)
    assert len(full["kernels"]) < len(none["kernels"]) and full["macs"] == none["macs"]
    assert any(len(k["ops"]) > 1 for k in full["kernels"])


def test_show_schedule_lists_fusion_notes(capsys):
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--show-schedule", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "fusion (full):" in out and "folded into conv1's weights" in out


@pytest.mark.parametrize("dataflow, expected", [
    # OS streams K: S = Q K^T (8x8, K=16) is 1 fold of 16 + 8 + 8 - 2 cycles, O = S V (8x16, K=8) 2 folds of 22
    ("os", (16 + 8 + 8 - 2 - 1) + (2 * (8 + 8 + 8 - 2) - 1)),
    # WS streams M: S folds K=16 over 2 row blocks, O folds N=16 over 2 column blocks, 2R + C + M - 2 each
    ("ws", (2 * (16 + 8 + 8 - 2) - 1) + (2 * (16 + 8 + 8 - 2) - 1)),
])
def test_a_fused_attention_block_times_each_product_as_one_whole_tile(dataflow, expected):
    arch = tiny_arch(rows=8, cols=8, dataflow=dataflow, vector_lanes=1024)      # softmax never the longer
    work = AttentionWork(1, 8, 8, 16, 16, "int8")
    assert attention_tile_compute(work, AttentionMapping(dataflow, 8, 8), arch, "scalesim").tolist() == [expected]


def test_pipelined_attention_pays_one_fill_and_drain_per_kernel():
    # pipelined OS: each block product streams K with no per-product fill (8x8 array: R + C - 2 = 14 once);
    # S = Q K^T (8x8, K=16) 1 fold x 16, O = S V (8x16, K=8) 2 folds x max(8, R=8)
    arch = tiny_arch(rows=8, cols=8, dataflow="os", vector_lanes=1024)
    work = AttentionWork(2, 16, 24, 16, 16, "int8")          # 2 heads x 2 q blocks x 3 kv blocks
    tiles = attention_tile_compute(work, AttentionMapping("os", 8, 8), arch, "pipelined")
    assert tiles.tolist() == [16 + 2 * 8 + 14] + [16 + 2 * 8] * 11
    scalesim = attention_tile_compute(work, AttentionMapping("os", 8, 8), arch, "scalesim")
    assert scalesim.tolist() == [(16 + 14 - 1) + (2 * (8 + 14) - 1)] * 12


def test_lockstep_attention_steps_last_exactly_one_block_product_pair():
    # 3 cores: each tile carries a third of a block's 16 + 16 cycles; a step of 3 tiles must add up to exactly 32
    # (rounding every third up would make it 33)

    d = tiny_arch_dict(rows=8, cols=8, dataflow="os", vector_lanes=1024)
    d["cores"] = 3
    arch = arch_from_dict(d)
    tiles = attention_tile_compute(AttentionWork(2, 16, 24, 16, 16, "int8"), AttentionMapping("os", 8, 8), arch,
                                   "pipelined")
    steps = tiles.reshape(4, 3).sum(axis=1).tolist()
    assert steps == [32 + 14, 32, 32, 32]


def test_fusion_never_adds_traffic_on_narrow_arrays():
    # issue 21 item 1: attention at seq 256 on edge-npu narrowed to a 4x5 OS array with SCALE-Sim timing read
    # 129 MiB fused against 9 MiB unfused (a flash-attention block of 4 query rows re-read K and V 64 times); bert-base
    # on a 1x3 eyeriss read 832 MiB fused against 330 MiB unfused
    cases = [("attention", "edge-npu", ("array.rows=4", "array.cols=5", "array.dataflow=os", "timing=scalesim"),
              {"seq_len": 256}), ("bert-base", "eyeriss", ("array.rows=1", "array.cols=3"), {})]
    for workload, arch, narrow, kw in cases:
        by = {p: tilesim.run(workload, arch, overrides=narrow, fusion=p, **kw).sim
              for p in ("none", "epilogue", "full")}
        moved = {p: r.dram_read_bytes + r.dram_write_bytes for p, r in by.items()}
        assert moved["full"] <= moved["epilogue"] <= moved["none"], workload
        assert by["full"].dram_read_bytes <= by["none"].dram_read_bytes, workload


def test_attention_blocks_break_latency_ties_by_traffic():
    # the 4x5 OS array above: 4-row query blocks were 0.02% faster than 64-row ones but moved 15x the bytes; blocks
    # within 1% of the fastest are ties and go to fewer DRAM bytes, so the fused kernel stays and moves less
    narrow = ("array.rows=4", "array.cols=5", "array.dataflow=os", "timing=scalesim")
    full = tilesim.run("attention", "edge-npu", overrides=narrow, seq_len=256, fusion="full")
    assert [k.name for k in full.schedule.kernels] == ["scores"]          # one flash-attention kernel
    assert full.schedule.kernels[0].mapping.block_q > 4
