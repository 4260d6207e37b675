"""The Python API (tilesim.run, compare, sweep, load_arch, load_workload) equals the CLI for the same inputs, and
its options are checked by field name."""
from __future__ import annotations

import json

import pytest

import tilesim
from tilesim.arch import InputError
from tilesim.cli.main import main
from tilesim.studies.options import LLMOptions, OptionError


def cli_json(capsys, *argv) -> dict:
    assert main([*argv, "-f", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_of_a_cnn_equals_the_cli(capsys):
    cli = cli_json(capsys, "run", "-w", "resnet18", "-a", "edge-npu", "--batch", "2", "--fusion", "epilogue")
    assert cli == tilesim.run("resnet18", "edge-npu", batch=2, fusion="epilogue").to_dict()


def test_run_of_an_llm_decode_step_equals_the_cli(capsys):
    cli = cli_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode", "--context", "256",
                   "--kv-dtype", "fp8")
    assert cli == tilesim.run("gpt2", "tpu-v4", phase="decode", context=256, kv_dtype="fp8").to_dict()


def test_run_of_an_llm_generation_equals_the_cli(capsys):
    cli = cli_json(capsys, "run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "generate", "--prompt-len", "32",
                   "--gen-tokens", "8")
    api = tilesim.run("gpt2", "tpu-v4", phase="generate", prompt_len=32, gen_tokens=8)
    assert api.llm is not None and cli == api.to_dict()


def test_compare_equals_the_cli(capsys):
    cli = cli_json(capsys, "compare", "-w", "resnet18", "-a", "gemmini", "--fusion", "none,full")
    assert cli == tilesim.compare("resnet18", "gemmini", policies=("none", "full")).to_dict()


def test_overrides_and_a_loaded_arch_give_the_same_run():
    arch = tilesim.load_arch("edge-npu", ["array.rows=8"])
    assert arch.array.rows == 8
    a = tilesim.run("gemm:64,64,64", arch).to_dict()
    assert a == tilesim.run("gemm:64,64,64", "edge-npu", overrides=["array.rows=8"]).to_dict()


def test_load_workload_gives_the_graph_the_run_simulates():
    graph = tilesim.load_workload("gemm:32,16,8", "edge-npu")
    assert [op.op_type for op in graph.ops] == ["MatMul"]


def test_sweep_writes_the_rows_it_returns(tmp_path):
    out = tmp_path / "s.csv"
    rows = tilesim.sweep({"array.rows": [8, 16]}, "gemm:64,64,64", "edge-npu", output=out, backend="serial")
    assert [r["array.rows"] for r in rows] == ["8", "16"] and all(r["status"] == "ok" for r in rows)
    assert out.read_text().count("\n") == 3


def test_errors_name_fields_in_python_and_flags_on_the_command_line(capsys):
    with pytest.raises(OptionError, match=r"^context: phase decode needs"):
        tilesim.run("gpt2", "tpu-v4", phase="decode")
    assert main(["run", "-w", "gpt2", "-a", "tpu-v4", "--phase", "decode"]) == 2
    assert "error: --context: --phase decode needs" in capsys.readouterr().err
    with pytest.raises(OptionError, match=r"^gen_tokens: must be >= 1, got 0"):
        tilesim.run("gpt2", "tpu-v4", phase="generate", gen_tokens=0)
    with pytest.raises(InputError, match=r"^fusion: got 'ful' \(did you mean 'full'\?\)"):
        tilesim.run("resnet18", fusion="ful")
    with pytest.raises(OptionError, match=r"^phase, context, prompt_len: only for decoder LLMs"):
        tilesim.run("resnet18", prompt_len=4)


def test_an_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected option 'seqlen' \\(did you mean 'seq_len'\\?\\)"):
        tilesim.run("resnet18", seqlen=4)


def test_option_errors_render_with_any_names():
    e = OptionError("context", "only with {phase} decode (generate grows it from {prompt_len})")
    assert str(e) == "context: only with phase decode (generate grows it from prompt_len)"
    assert e.render({"context": "--context", "phase": "--phase", "prompt_len": "--prompt-len"}) == \
        "--context: only with --phase decode (generate grows it from --prompt-len)"
    assert LLMOptions(phase="decode", context=4).prompt_tokens(None, 128) == 4


def test_sweep_errors_name_fields(tmp_path, capsys):
    with pytest.raises(OptionError, match=r"^jobs: must be >= 1, got 0"):
        tilesim.sweep({"array.rows": [8]}, "gemm:8,8,8", "edge-npu", output=tmp_path / "s.csv", jobs=0)
    with pytest.raises(OptionError, match=r"^grid array.rows: value '8' given twice"):
        tilesim.sweep(["array.rows=8,8"], "gemm:8,8,8", "edge-npu", output=tmp_path / "s.csv")
    assert main(["sweep", "-w", "gemm:8,8,8", "-a", "edge-npu", "-o", str(tmp_path / "s.csv"),
                 "--grid", "array.rows=8,8"]) == 2
    assert "error: --grid array.rows: value '8' given twice" in capsys.readouterr().err


def test_errors_raised_by_the_workloads_name_fields_and_the_cli_names_flags(capsys):
    with pytest.raises(InputError, match=r"^seq_len: workload 'resnet50' has no sequence length"):
        tilesim.load_workload("resnet50", seq_len=128)
    assert main(["run", "-w", "resnet50", "--seq-len", "128"]) == 2
    assert capsys.readouterr().err.startswith("tilesim: error: --seq-len: workload 'resnet50' has no sequence length")
    assert main(["run", "-w", "nope:1"]) == 2
    assert capsys.readouterr().err.startswith("tilesim: error: --workload: ")
