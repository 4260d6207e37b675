"""Multi-chip LLM inference (arch/system.py, sim/studies/system.py): loader errors, layouts, pipeline closed forms,
the single-chip case, fits and the CLI."""
from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources

import pytest

import tilesim
from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.arch.system import LINKS, SystemConfig, load_system, single_chip, system_preset_names
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions
from tilesim.report.system import layout_rows, layout_table, system_table
from tilesim.studies.options import LLMOptions, OptionError, SystemOptions, WorkloadOptions
from tilesim.studies.runs import run_decoder
from tilesim.studies.system import (
    activation_bytes,
    block_comm,
    bubble_fraction,
    busiest_top_k,
    decode_gemm_s,
    ep_loads,
    layout_points,
    p2p_cost,
    pipeline_time,
    run_layouts,
    run_system,
    shard,
    stage_comm,
    stage_weight_bytes,
    system_dict,
    training_stash,
)
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

BF16 = wl.resolve_dtypes(None, "bf16")


# ---------------------------------------------------------------- systems

def test_presets_load_with_their_topologies():
    assert system_preset_names() == ["16xh100-ib", "8xh100", "edge-4ring", "tpu-v4-4x4x4"]
    h = load_system("8xh100")
    assert (h.chips, h.topology, h.chip.name, h.link) == (8, "switch", "h100", LINKS["nvlink4"])
    t = load_system("tpu-v4-4x4x4")
    assert (t.chips, t.dims, t.chip.cores, t.chip.offchip.capacity_bytes) == (64, (4, 4, 4), 2, 32 * 2**30)
    e = load_system("edge-4ring")
    assert (e.chips, e.topology, e.chip.name) == (4, "ring", "edge-npu")
    two = load_system("16xh100-ib")
    assert (two.nodes, two.link.name, two.network.name) == (2, "nvlink4", "ib-ndr")
    assert all(link.source for link in LINKS.values())


@pytest.mark.parametrize("body, words", [
    ("chip: h100\n  chips: 8\n  topology: mesh", ["system.topology", "allowed: ring"]),
    ("chip: h100\n  chips: 8\n  topology: torus2d\n  dims: [2, 2]", ["system.dims", "product is chips (8)"]),
    ("chip: h100\n  chips: 8\n  topology: switch\n  link: nvlnk4", ["system.link", "did you mean 'nvlink4'"]),
    ("chip: h100\n  chips: 8\n  topology: switch\n  links: nvlink4", ["system.links", "unknown field"]),
    ("chip: h100\n  chips: 8\n  topology: hierarchical\n  chips_per_node: 3", ["system.chips_per_node",
                                                                              "system.network"]),
    ("chip: h1000\n  chips: 8\n  topology: switch", ["system.chip 'h1000'", "did you mean 'h100'"]),
    ("chip: h100\n  chips: 0\n  topology: switch", ["system.chips", ">= 1"]),
    ("chip: h100\n  chips: 2\n  topology: switch\n  link: {bandwidth_gb_s: -1, latency_us: 1, pj_per_bit: 1}",
     ["system.link.bandwidth_gb_s", "> 0"]),
])
def test_bad_system_files_are_one_line_errors_naming_the_field(tmp_path, capsys, body, words):
    path = tmp_path / "s.yaml"
    path.write_text(f"system:\n  {body}\n")
    with pytest.raises(InputError) as e:
        load_system(str(path))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    assert main(["run", "-w", "gpt2", "--system", str(path), "--phase", "decode", "--context", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tilesim: error:")


def test_a_system_file_with_its_own_link_and_a_relative_chip(tmp_path):
    (tmp_path / "chip.yaml").write_text((resources.files("tilesim.arch.presets") / "edge-npu.yaml").read_text())
    path = tmp_path / "s.yaml"
    path.write_text("system:\n  chip: chip.yaml\n  chips: 4\n  topology: hierarchical\n  chips_per_node: 2\n"
                    "  link: {bandwidth_gb_s: 10, latency_us: 1, pj_per_bit: 3, source: mine}\n  network: ib-ndr\n")
    s = load_system(str(path))
    assert s.nodes == 2 and s.link.bandwidth_gb_s == 10 and s.network == LINKS["ib-ndr"]


# ---------------------------------------------------------------- pipeline closed forms

def test_bubble_fraction_and_pipeline_time_closed_forms():
    assert bubble_fraction(4, 8) == 3 / 11                      # (p - 1) / (m + p - 1)
    assert bubble_fraction(4, 8, 2) == 3 / 19                   # (p - 1) / (m v + p - 1)
    assert bubble_fraction(1, 5) == 0
    t = 2e-3
    assert pipeline_time((t,) * 4, 8, 1, 0.0) == pytest.approx((8 + 4 - 1) * t, rel=1e-12)
    assert pipeline_time((t,) * 4, 8, 2, 0.0) == pytest.approx((8 * 2 + 4 - 1) * t / 2, rel=1e-12)
    assert pipeline_time((t,) * 4, 8, 1, 1e-4) == pytest.approx(11 * t + 3e-4, rel=1e-12)
    # the bubble of a uniform pipeline is 1 - m t / T
    assert 1 - 8 * t / pipeline_time((t,) * 4, 8, 1, 0.0) == pytest.approx(bubble_fraction(4, 8), rel=1e-12)


def test_gpipe_stashes_every_micro_batch_1f1b_at_most_p_interleaved_megatron_warmup():
    assert training_stash("gpipe", 4, 8, 1) == 8
    assert training_stash("1f1b", 4, 8, 1) == 4 and training_stash("1f1b", 4, 2, 1) == 2
    assert training_stash("interleaved", 4, 8, 2) == (2 * 3 + 1 * 4 + 1) / 2     # Megatron schedules.py warm-up


# ---------------------------------------------------------------- shards

def test_tp2_halves_the_per_chip_weights_but_not_the_norms():
    cfg = wl.LLAMA2_7B
    (one,) = shard(cfg, SystemOptions(tp=1))
    (two,) = shard(cfg, SystemOptions(tp=2))
    d, f, v, L = 4096, 11008, 32000, 32
    split = L * (4 * d * d + 3 * d * f) + 2 * v * d            # attention, MLP, embedding and head: split
    norms = L * 2 * d + d                                       # RMSNorm scales: replicated
    assert stage_weight_bytes(one, "bf16") == 2 * (split + norms)
    assert stage_weight_bytes(two, "bf16") == 2 * (split // 2 + norms)
    assert (two.config.heads, two.config.kv_heads, two.config.ffn, two.config.vocab) == (16, 16, 5504, 16000)


def test_pipeline_stages_hold_their_layers_and_one_end_each():
    cfg = wl.LLAMA2_7B
    stages = shard(cfg, SystemOptions(pp=4, micro_batches=4))
    assert [s.config.layers for s in stages] == [8] * 4 and [s.first for s in stages] == [True, False, False, False]
    embed, head = 32000 * 4096 * 2, 32000 * 4096 * 2 + 4096 * 2     # the head with the final norm
    total = stage_weight_bytes(shard(cfg, SystemOptions())[0], "bf16")
    assert sum(stage_weight_bytes(s, "bf16") for s in stages) == total
    assert stage_weight_bytes(stages[1], "bf16") == stage_weight_bytes(stages[0], "bf16") - embed
    assert stage_weight_bytes(stages[3], "bf16") == stage_weight_bytes(stages[1], "bf16") + head


def test_expert_parallel_shards_experts_and_sends_each_token_to_its_top_k():
    cfg = decoder_config("mixtral-8x7b")
    o = SystemOptions(ep=2)
    (stage,) = shard(cfg, o)
    assert (stage.config.experts, stage.config.experts_per_token) == (4, 2)
    comm = stage_comm(load_system("8xh100"), o, stage, cfg, 4, 1, "bf16")
    # 4 tokens x top-2 x 4096 x 2 B per chip; half of it leaves; dispatch and combine in each of 32 MoE layers
    routed = 4 * 2 * 4096 * 2
    assert comm["ep"].sent_bytes == pytest.approx(64 * routed / 2, rel=1e-12)
    assert comm["tp"].time_s == 0


@pytest.mark.parametrize("opts, field, words", [
    ({"tp": 3}, "tp", "not divisible by tp 3"),
    ({"pp": 5}, "pp", "32 layers"),
    ({"ep": 2}, "ep", "no routed experts"),
    ({"tp": 8, "pp": 2}, "tp", "16 chips"),
    ({"pp": 2, "micro_batches": 3}, "micro_batches", "the batch (4)"),
])
def test_layouts_that_do_not_divide_are_errors_naming_the_option(opts, field, words):
    with pytest.raises(OptionError) as e:
        run_system(wl.LLAMA2_7B, load_system("8xh100"), SystemOptions(**opts), CompileOptions(), "decode", 4, 8,
                   1, BF16)
    assert field in e.value.names and words in str(e.value)


def test_interleaving_needs_virtual_stages():
    with pytest.raises(OptionError, match="interleaved"):
        SystemOptions(pp=2, pipeline_schedule="interleaved")


# ---------------------------------------------------------------- runs

def single(phase: str, **llm):
    arch = load_arch("tpu-v4")
    w = WorkloadOptions(workload="gpt2", batch=2)
    return arch, run_decoder(wl.GPT2, arch, w, LLMOptions(phase=phase, **llm), CompileOptions())


def test_tp1_pp1_on_one_chip_is_the_single_chip_run_exactly():
    arch, ref = single("decode", context=32)
    r = run_system(wl.GPT2, single_chip(arch), SystemOptions(), CompileOptions(), "decode", 2, 32, 1, BF16)
    assert r.stages[0].llm == ref
    assert r.tpot_s == ref.tpot_s and r.energy_pj == ref.energy_pj
    assert r.decode.link_pj == 0 and r.decode.idle_static_pj is None and r.decode.comm_s == 0   # tpu-v4: no static
    assert r.stages[0].weight_bytes == ref.weight_bytes and r.stages[0].kv_bytes == ref.kv_cache_bytes
    arch, ref = single("generate", prompt_len=16, gen_tokens=8)
    r = run_system(wl.GPT2, single_chip(arch), SystemOptions(), CompileOptions(), "generate", 2, 16, 8, BF16)
    assert r.ttft_s == ref.ttft_s and r.tpot_s == pytest.approx(ref.tpot_s, rel=1e-12)
    assert r.energy_pj == pytest.approx(ref.energy_pj, rel=1e-12) and r.tokens == ref.tokens


def test_unused_chips_draw_static_power_and_tensor_parallel_adds_link_energy():
    h100 = load_system("8xh100")
    one = run_system(wl.GPT2, h100, SystemOptions(), CompileOptions(), "decode", 2, 32, 1, BF16)
    static_w = one.static_w
    assert static_w > 0
    assert one.decode.idle_static_pj == pytest.approx(static_w * 7 * one.decode.time_s * 1e12, rel=1e-9)
    two = run_system(wl.GPT2, h100, SystemOptions(tp=2), CompileOptions(), "decode", 2, 32, 1, BF16)
    assert two.decode.link_pj > 0 and 0 < two.decode.comm_s < two.decode.time_s
    assert two.stages[0].decode_s < one.stages[0].decode_s          # half the weights per chip
    # per step: 2 all-reduces a layer + the embedding's, and the logits' all-gather, each a ring over 2 chips
    comm = two.stages[0].decode_comm["tp"]
    assert comm.steps == (2 * 12 + 1) * 2 + 1


def test_pipeline_bubble_of_a_run_and_dp_scales_throughput():
    h100 = load_system("8xh100")
    o = SystemOptions(pp=2, micro_batches=2)
    r = run_system(wl.GPT2, h100, o, CompileOptions(), "prefill", 4, 32, 1, BF16)
    stage_s = [s.prefill_s for s in r.stages]
    p2p = r.prefill.time_s - pipeline_time(tuple(stage_s), 2, 1, 0.0)
    assert p2p > 0                                                  # one send on the first micro-batch's path
    assert r.prefill.bubble == pytest.approx(1 - 2 * sum(stage_s) / 2 / r.prefill.time_s, rel=1e-9)
    assert abs(r.prefill.bubble - bubble_fraction(2, 2)) < 0.05     # nearly uniform stages
    dp = run_system(wl.GPT2, h100, replace(o, dp=2), CompileOptions(), "prefill", 4, 32, 1, BF16)
    assert dp.tokens_per_s == pytest.approx(2 * r.tokens_per_s, rel=1e-12)


def test_a_model_that_does_not_fit_one_chip_is_a_one_line_error(capsys):
    argv = ["run", "-w", "llama3.1-70b", "--system", "8xh100", "--phase", "decode", "--context", "128"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tp, --pp, --ep" in err and "stage 0 needs" in err and "74.51 GiB of hbm" in err


def test_cli_table_json_and_trace(tmp_path, capsys):
    trace = tmp_path / "t.json"
    argv = ["run", "-w", "gpt2", "--system", "edge-4ring", "--tp", "2", "--pp", "2", "--micro-batches", "2",
            "--phase", "generate", "--prompt-len", "16", "--gen-tokens", "4", "--batch", "2"]
    assert main([*argv, "-f", "json", "--trace", str(trace)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["tp"], d["pp"], d["chips_used"], len(d["stages"])) == (2, 2, 4, 2)
    assert d["decode"]["link_pj"] > 0 and d["j_per_token"] > 0 and d["prefill"]["bubble"] > 0
    assert 0 < d["decode"]["link_utilization"] <= 1
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["tid"] for e in events if e["ph"] == "X" and e["pid"] == 1} == {0, 1, 2, 3}      # a track per chip
    assert {e["tid"] for e in events if e["ph"] == "X" and e["pid"] == 2} == {0, 2, 4, 6}      # per chip's link
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "TTFT" in out and "TPOT" in out and "per chip" in out and max(map(len, out.splitlines())) <= 100
    assert main(["run", "-w", "gpt2", "--tp", "2", "--phase", "decode", "--context", "8"]) == 2
    assert "--system" in capsys.readouterr().err
    assert main(["run", "-w", "resnet50", "--system", "8xh100"]) == 2
    assert "decoder LLMs" in capsys.readouterr().err
    assert main(["run", "-w", "gpt2", "-a", "h100", "--system", "8xh100", "--phase", "decode", "--context", "8"]) == 2
    assert "takes its chip from --system" in capsys.readouterr().err
    assert main([*argv, "-f", "csv"]) == 2 and "table or json" in capsys.readouterr().err


def test_system_config_is_frozen():
    s = load_system("8xh100")
    with pytest.raises(AttributeError):
        s.chips = 4  # type: ignore[misc]
    assert isinstance(s, SystemConfig)


def test_python_api_takes_the_cli_options():
    r = tilesim.run_system("gpt2", "8xh100", tp=2, phase="decode", context=16, batch=2)
    d = system_dict(r)
    assert r.to_dict() == d
    assert (d["tp"], d["chips_used"], d["phase"]) == (2, 2, "decode") and d["tpot_s"] == r.tpot_s > 0
    with pytest.raises(TypeError, match="unexpected option 'tq'"):    # as tilesim.run
        tilesim.run_system("gpt2", "8xh100", tq=2)


def test_gpipe_and_1f1b_run_inference_alike_and_differ_in_a_training_steps_stash():
    def run(schedule: str, **extra):
        o = SystemOptions(tp=2, pp=2, micro_batches=4, pipeline_schedule=schedule, **extra)
        return run_system(wl.GPT2, load_system("8xh100"), o, CompileOptions(), "prefill", 4, 32, 1, BF16)
    gpipe, one = run("gpipe"), run("1f1b")
    assert gpipe.ttft_s == one.ttft_s
    g, f = system_dict(gpipe), system_dict(one)
    assert (g["training_stash_microbatches"], f["training_stash_microbatches"]) == (4, 2)
    assert g["training_activation_peak_bytes"] == 2 * f["training_activation_peak_bytes"] > 0
    # one layer of a 1-sequence micro-batch, tp 2: s b h (10 + 24/2 + 5 a s / (2 h)) bytes, 6 layers, 2 stashed
    per_layer = 32 * 768 * (10 + 12 + 5 * 12 * 32 / (768 * 2))
    assert f["training_activation_peak_bytes"] == pytest.approx(2 * 6 * per_layer, rel=1e-12)
    inter = run("interleaved", virtual_stages=2)
    assert inter.ttft_s < one.ttft_s and inter.prefill.bubble < one.prefill.bubble


def test_pipeline_stages_on_two_nodes_send_over_the_network():
    two = load_system("16xh100-ib")
    o = SystemOptions(tp=8, pp=2, micro_batches=2)
    n = 4 * 1 * 4096 * 2 / 8                      # 4 sequences x 1 token x hidden x bf16, 1/8 from each tp rank
    ib = LINKS["ib-ndr"]
    assert p2p_cost(two, o, 4, 1, 4096, "bf16").time_s == pytest.approx(ib.latency_s + n / ib.bytes_per_s, rel=1e-12)
    one_node = SystemOptions(tp=4, pp=2, micro_batches=2)
    nv = LINKS["nvlink4"]
    assert p2p_cost(two, one_node, 4, 1, 4096, "bf16").time_s == pytest.approx(nv.latency_s + 2 * n / nv.bytes_per_s,
                                                                               rel=1e-12)


def test_a_grid_of_layouts_keeps_the_ones_that_cannot_run_with_their_reason():
    grid = layout_points({"tp": [1, 2, 5], "pp": [1, 2]})
    assert len(grid) == 6 and grid[0] == {"tp": 1, "pp": 1}
    with pytest.raises(OptionError, match="not a layout axis"):
        layout_points({"tq": [1]})
    w, llm = WorkloadOptions("gpt2", batch=2), LLMOptions(phase="decode", context=16)
    points = run_layouts(w, llm, CompileOptions(), SystemOptions(system="edge-4ring"), grid[:2] + grid[4:5])
    rows = layout_rows(points)
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid"]
    assert "= 5 chips, the system 'edge-4ring' has 4" in rows[2]["reason"]
    assert rows[1]["tpot_s"] > 0 and rows[0]["comm_share"] == 0
    table = layout_table(points)
    assert len(table.splitlines()) == 4 and max(map(len, table.splitlines())) <= 100


def test_list_systems(capsys):
    assert main(["list", "systems"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == system_preset_names() and "NVLink 4" in out[1]


def test_activation_memory_is_the_largest_working_set_without_flash_attentions_scores():
    g = wl.decoder_graph(wl.LLAMA2_7B, batch=1, phase="prefill", seq_len=4096)
    assert activation_bytes(g) == 3 * 4096 * 11008 * 2                  # SwiGLU: gate, up and their product
    assert activation_bytes(g, fused_attention=False) == 2 * 32 * 4096 * 4096 * 2   # scores in, probabilities out


def test_sweep_grids_layouts_into_a_csv(tmp_path, capsys):
    out = tmp_path / "layouts.csv"
    argv = ["sweep", "-w", "gpt2", "--system", "edge-4ring", "--grid", "tp=1,2,5", "--grid", "pp=1,2",
            "--phase", "decode", "--context", "16", "--batch", "2", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "6 layouts (4 ok, 2 invalid)" in text
    lines = out.read_text().splitlines()
    assert lines[0].startswith("tp,pp,status,workload,system,phase,ttft_s,tpot_s") and len(lines) == 7
    assert lines[1].startswith("1,1,ok,gpt2,edge-4ring,decode,")
    assert main([*argv[:-2], "--grid", "array.rows=8", "-o", str(out)]) == 2
    assert "layout options" in capsys.readouterr().err
    assert main([*argv[:5], "--grid", "tp=x", *argv[7:]]) == 2
    assert "not an integer" in capsys.readouterr().err


def test_static_power_is_not_modelled_when_the_chip_preset_gives_none(capsys):
    edge = load_system("edge-4ring")                       # edge-npu: no static figure in its preset
    r = run_system(wl.GPT2, edge, SystemOptions(tp=2), CompileOptions(), "decode", 2, 32, 1, BF16)
    assert r.static_w is None and r.decode.idle_static_pj is None
    assert r.decode.energy_pj == r.decode.compute_pj + r.decode.link_pj
    d = system_dict(r)
    assert d["static_power"] == "not modelled" and d["decode"]["idle_static_pj"] is None
    text = system_table(r)
    assert "idle static n/m" in text and "static not modelled)" in text
    h = run_system(wl.GPT2, load_system("8xh100"), SystemOptions(), CompileOptions(), "decode", 2, 32, 1, BF16)
    assert system_dict(h)["static_power"] == "modelled" and h.decode.idle_static_pj > 0


def test_expert_parallel_load_follows_the_busiest_chip_under_skewed_routing():
    cfg = replace(decoder_config("mixtral-8x7b"), layers=2)
    assert ep_loads(cfg, 2) == pytest.approx((1.0, 1.0), rel=1e-12) and busiest_top_k(cfg, 2) == 2
    skewed = replace(cfg, expert_skew=1.0)
    h = [sum(1 / (e + 1) for e in range(n)) for n in (4, 8)]      # q_e = 2 (e+1)^-1 / H_8, chip 0 holds e < 4
    loads = ep_loads(skewed, 2)
    assert loads[0] == pytest.approx(2 * h[0] / h[1], rel=1e-12) and sum(loads) == pytest.approx(2, rel=1e-12)
    assert busiest_top_k(skewed, 2) == round(2 * loads[0]) == 3
    h100 = load_system("8xh100")
    runs = [run_system(c, h100, SystemOptions(ep=2), CompileOptions(), "decode", 8, 32, 1, BF16)
            for c in (cfg, skewed)]
    assert runs[1].tpot_s > runs[0].tpot_s                          # the busiest chip's experts set the time
    assert runs[1].stages[0].stage.config.experts_per_token == 3


def test_overlap_hides_sequence_parallel_collectives_behind_the_blocks_gemms_but_not_all_reduces():
    h100 = load_system("8xh100")

    def run(**o):
        return run_system(wl.GPT2, h100, SystemOptions(tp=2, **o), CompileOptions(), "decode", 2, 32, 1, BF16)
    plain, plain_overlap = run(), run(overlap_comm=True)
    assert plain_overlap.tpot_s == plain.tpot_s and plain_overlap.stages[0].decode_hidden_s == 0
    sp, sp_overlap = run(sequence_parallel=True), run(sequence_parallel=True, overlap_comm=True)
    s = sp_overlap.stages[0]
    block = block_comm(h100, SystemOptions(tp=2, sequence_parallel=True), s.stage, 2, 1, 768, "bf16").time_s
    attn, mlp = decode_gemm_s(s.llm)
    assert attn > 0 and mlp > 0
    hidden = min(12 * block, attn) + min(12 * block, mlp)
    assert s.decode_hidden_s == pytest.approx(hidden, rel=1e-12) and hidden > 0
    assert sp_overlap.tpot_s == pytest.approx(sp.tpot_s - hidden, rel=1e-12)
    assert sp_overlap.decode.comm_s == pytest.approx(sp.decode.comm_s - hidden, rel=1e-12)
    assert system_dict(sp_overlap)["overlap_comm"] is True


def test_trace_has_a_track_per_chip_and_per_link_port_with_sends_over_the_network(tmp_path, capsys):
    trace = tmp_path / "t.json"
    argv = ["run", "-w", "llama2-7b", "--system", "16xh100-ib", "--tp", "8", "--pp", "2", "--micro-batches", "2",
            "--phase", "decode", "--context", "16", "--batch", "2", "--trace", str(trace)]
    assert main(argv) == 0
    events = json.loads(trace.read_text())["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert sum(pid == 1 for pid, _ in names) == 16 and sum(pid == 2 for pid, _ in names) == 32
    assert names[(2, 1)] == "chip 0 network port (ib-ndr)" and names[(2, 0)] == "chip 0 node switch port (nvlink4)"
    sends = [e for e in events if e["ph"] == "X" and e["name"].startswith("mb")  and "send" in e["name"]]
    # stage 0 (chips 0-7, node 0) sends each micro-batch to stage 1 (chips 8-15, node 1) over its network port;
    # the last stage's return is not drawn
    assert len(sends) == 2 * 8 and {e["tid"] % 2 for e in sends} == {1}
    colls = [e for e in events if e["ph"] == "X" and "collectives" in e["name"]]
    assert len(colls) == 2 * 16 and {e["tid"] % 2 for e in colls} == {0}     # tp groups inside a node
