"""LLM runs: prefill, decode and generation reports (TTFT, TPOT, pJ/token), trends, memory capacity checks."""
from __future__ import annotations

import json

import pytest

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.studies.llm import run_llm
from tilesim.workloads import llm as wl
from tilesim.workloads import load_workload

KEYS = {"phase", "batch", "tokens", "pj_per_token", "ttft_s", "tpot_s", "kv_cache_bytes", "weight_bytes",
        "cycles", "latency_s", "macs", "pe_utilization", "mbu", "energy_pj", "energy_breakdown_pj",
        "dram_read_bytes", "dram_write_bytes", "kernels"}


def run_json(capsys, *argv):
    assert main([*list(argv), "-f", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_decode_at_batch_1_is_memory_bound_and_batching_helps(capsys):
    runs = [run_json(capsys, "run", "-w", "gpt2", "-a", "edge-npu", "--phase", "decode", "--context", "256",
                     "--batch", str(b)) for b in (1, 4, 16)]
    assert KEYS <= set(runs[0])
    assert runs[0]["mbu"] > 0.9 and runs[0]["pe_utilization"] < 0.05
    utils = [r["pe_utilization"] for r in runs]
    pj = [r["pj_per_token"] for r in runs]
    assert utils == sorted(utils) and pj == sorted(pj, reverse=True)
    assert runs[0]["tokens"] == 1 and runs[2]["tokens"] == 16
    assert runs[0]["tpot_s"] == pytest.approx(runs[0]["latency_s"])


def test_generation_is_prefill_then_decode_steps(capsys):
    d = run_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "generate", "--prompt-len", "64",
                 "--gen-tokens", "100")
    assert KEYS <= set(d)
    assert d["tokens"] == 164 and d["prompt_len"] == 64 and d["gen_tokens"] == 100
    assert d["latency_s"] == pytest.approx(d["ttft_s"] + 100 * d["tpot_s"])
    assert d["tokens_per_s"] == pytest.approx(1 / d["tpot_s"])              # batch 1: one token per step
    assert d["kv_cache_bytes"] == 164 * wl.kv_cache_bytes_per_token(wl.GPT2, "bf16")
    assert d["weight_bytes"] == wl.weight_bytes(wl.GPT2, "bf16")
    assert d["energy_pj"] == pytest.approx(sum(d["energy_breakdown_pj"].values()))
    assert {k["phase"] for k in d["kernels"]} == {"prefill", "decode"}


def test_trapezoid_matches_simulating_every_step():
    # 12 steps of gpt2 decode simulated one by one vs three samples and the trapezoid rule
    arch, options = load_arch("edge-npu"), CompileOptions()

    def graph_for(kind, size):
        sizes = {"seq_len": size} if kind == "prefill" else {"context": size}
        return load_workload("gpt2", dtype="int8", phase=kind, **sizes)

    r = run_llm(graph_for, arch, options, "generate", 1, 32, 12, wl.weight_bytes(wl.GPT2, "int8"),
                wl.kv_cache_bytes_per_token(wl.GPT2, "int8"))
    steps = [simulate(lower(graph_for("decode", c), arch, options), arch) for c in range(32, 44)]
    exact = sum(s.latency_s for s in steps)
    assert r.decode_s == pytest.approx(exact, rel=0.01)
    assert r.decode_steps == 12


def test_weights_and_cache_must_fit_off_chip_memory(capsys):
    assert main(["run", "-w", "llama2-7b", "-a", "edge-npu", "--dtype", "bf16", "--phase", "decode",
                 "--context", "128"]) == 2
    err = capsys.readouterr().err
    assert "memory.dram.capacity_bytes" in err and "weights (12.55 GiB)" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, expected", [
    (["--phase", "decode"], "--context"),
    (["--phase", "prefill", "--context", "5"], "only with --phase decode"),
    (["--phase", "generate", "--gen-tokens", "0"], "--gen-tokens: must be >= 1"),
])
def test_llm_cli_misuse(capsys, argv, expected):
    assert main(["run", "-w", "gpt2", "-a", "tpu-v4", *argv]) == 2
    assert expected in capsys.readouterr().err


def test_phase_flags_on_a_cnn_are_refused(capsys):
    assert main(["run", "-w", "resnet18", "--phase", "decode", "--context", "4"]) == 2
    assert "only for decoder LLMs" in capsys.readouterr().err


def test_separate_dtypes_change_traffic(capsys):
    base = run_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode", "--context", "512")
    fp8kv = run_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode", "--context", "512",
                     "--kv-dtype", "fp8")
    int4w = run_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode", "--context", "512",
                     "--weight-dtype", "int4")
    assert fp8kv["kv_cache_bytes"] * 2 == base["kv_cache_bytes"]
    assert fp8kv["dram_read_bytes"] < base["dram_read_bytes"]
    assert int4w["weight_bytes"] * 4 == pytest.approx(base["weight_bytes"], rel=0.01)
    assert int4w["dram_read_bytes"] < base["dram_read_bytes"]


def test_mlp_sparsity_cuts_mlp_compute_and_weight_traffic(capsys):
    argv = ["run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode", "--context", "64", "--fusion", "none"]
    dense = run_json(capsys, *argv)
    half = run_json(capsys, *argv, "--mlp-sparsity", "0.5")
    mlp_macs = 12 * 2 * 768 * 3072                               # up and down, one token
    assert dense["macs"] - half["macs"] == mlp_macs // 2
    assert half["dram_read_bytes"] < dense["dram_read_bytes"] and half["tpot_s"] < dense["tpot_s"]
    assert half["weight_bytes"] == dense["weight_bytes"]          # the model stored is the same
