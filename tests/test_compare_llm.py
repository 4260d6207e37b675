"""`tilesim compare` (issue 28): decoder LLM phases, repeated layers grouped into one row per pattern, and DRAM
traffic and cycles saved attributed to fusion kinds that sum exactly to the difference from the unfused run,
residency included."""
from __future__ import annotations

import json

import pytest

from tests.test_llm_outputs import OPTION_VALUES, outcome
from tilesim import compare
from tilesim.cli.main import build_parser, main
from tilesim.studies.compare import FUSION_KINDS, layer_pattern


def total_bytes(r) -> int:
    return r.dram_read_bytes + r.dram_write_bytes


@pytest.fixture(scope="module")
def bert():
    return compare("bert-base", "tpu-v4", policies=("none", "epilogue", "full"))


@pytest.mark.parametrize("workload, arch, options", [
    ("bert-base", "tpu-v4", {}), ("vit-b16", "tpu-v4", {}), ("resnet50", "tpu-v1", {}),
    ("gpt2", "h100", {"phase": "decode", "context": 64}), ("gpt2", "tpu-v4", {"prompt_len": 32}),
])
def test_kinds_sum_exactly_to_the_difference(workload, arch, options):
    c = compare(workload, arch, policies=("epilogue", "full", "attention"), **options)
    for i, r in enumerate(c.results):
        kinds = c.by_kind(i)
        assert set(kinds) <= set(FUSION_KINDS)
        assert sum(b for b, _ in kinds.values()) == total_bytes(c.reference) - total_bytes(r)
        assert sum(cy for _, cy in kinds.values()) == c.reference.cycles - r.cycles


def test_residency_savings_are_attributed(bert):
    """Issue 28: ~108 MiB of bert's residency savings were in no fused group's row."""
    full = bert.policies.index("full")
    residency_bytes, residency_cycles = bert.by_kind(full)["residency"]
    assert residency_bytes > 32 * 2**20 and residency_cycles > 0
    assert bert.by_kind(bert.policies.index("epilogue"))["residency"] == (0, 0)     # nothing kept on chip
    assert bert.by_kind(full)["attention"][0] > 0


def test_repeated_layers_are_one_row_with_their_count(bert):
    patterns = bert.patterns(bert.policies.index("full"))
    names = [p.pattern for p in patterns]
    assert len(names) == len(set(zip(names, [p.kind for p in patterns], strict=True)))
    up = next(p for p in patterns if p.pattern == "encoder.*.ffn.up")
    assert up.count == 12 and up.kind == "epilogue" and up.saved_bytes > 0
    groups = [g for g in bert.fused(bert.policies.index("full")) if layer_pattern(g.kernel) == "encoder.*.ffn.up"]
    assert up.saved_bytes == sum(g.saved_bytes for g in groups)
    assert up.saved_cycles == sum(g.saved_cycles for g in groups)


@pytest.mark.parametrize("name, pattern", [
    ("layer12.mlp.up", "layer*.mlp.up"), ("encoder.3.ffn.up", "encoder.*.ffn.up"),
    ("layer1.0.conv3", "layer*.*.conv3"), ("layer3.mlp.experts0.up", "layer*.mlp.experts0.up"),
    ("conv1", "conv1"), ("lm_head", "lm_head"), ("h.11.attn", "h.*.attn"),
])
def test_layer_pattern(name, pattern):
    assert layer_pattern(name) == pattern


def test_cli_compare_llm_decode_table_and_json(capsys):
    argv = ["compare", "-w", "gpt2", "-a", "h100", "--phase", "decode", "--context", "256"]
    assert main([*argv, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "gpt2.decode on h100" in out and "by fusion kind" in out and "layer*.attn.scores" in out
    assert max(map(len, out.splitlines())) <= 100
    assert main([*argv, "-f", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    none, full = d["policies"][0], d["policies"][-1]
    saved = sum(v["saved_dram_bytes"] for v in full["savings_by_kind"].values())
    assert saved == (none["dram_read_bytes"] + none["dram_write_bytes"]
                     - full["dram_read_bytes"] - full["dram_write_bytes"])
    assert sum(v["saved_cycles"] for v in full["savings_by_kind"].values()) == none["cycles"] - full["cycles"]
    assert all(p["count"] == 12 for p in full["patterns"] if p["pattern"].startswith("layer*"))


@pytest.mark.parametrize("extra, words", [
    (["--phase", "generate"], "--phase"), (["--phase", "decode"], "--context"),
    (["--gen-tokens", "4"], "unrecognized arguments"),
])
def test_cli_compare_llm_misuse_exits_2(capsys, extra, words):
    assert main(["compare", "-w", "gpt2", "-a", "h100", *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_compare_refuses_llm_options_for_other_workloads(capsys):
    assert main(["compare", "-w", "resnet18", "-a", "edge-npu", "--phase", "decode"]) == 2
    assert "only for decoder LLMs" in capsys.readouterr().err


def test_compare_top_is_for_the_table(capsys):
    assert main(["compare", "-w", "gemm:64,64,64", "-a", "edge-npu", "-f", "json", "--top", "3"]) == 2
    assert "--top: only with --format table" in capsys.readouterr().err


COMPARE_DESTS = ("fusion", "arch", "overrides", "timing", "mapper", "objective", "pinned", "batch", "seq_len",
                 "weight_dtype", "activation_dtype", "kv_dtype", "dtype", "dims", "unknown_ops", "weight_sparsity",
                 "weight_format", "format", "output", "top", "context", "prompt_len")
COMPARE_VALUES = {d: OPTION_VALUES[d] for d in COMPARE_DESTS}     # the run walk's values for compare's options


def test_every_compare_option_has_a_row():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    dests = {a.dest for a in sub.choices["compare"]._actions} - {"help", "workload", "phase"}
    assert dests == set(COMPARE_VALUES)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("name", sorted(COMPARE_VALUES))
def test_every_compare_option_is_honoured_or_refused(capsys, tmp_path, name, phase):
    (tmp_path / "pin.yaml").write_text("lm_head: {dataflow: os, tile_m: 1, tile_n: 64, tile_k: 64, order: mnk}\n")
    size = ["--context", "24"] if phase == "decode" else ["--prompt-len", "24"]
    base = ["compare", "-w", "gpt2", "-a", "h100", "--phase", phase, *size, "--fusion", "none,full"]
    rc, err, plain = outcome(capsys, tmp_path, base)
    assert rc == 0, err
    rc, err, digest = outcome(capsys, tmp_path, [*base, *COMPARE_VALUES[name]])
    assert rc == 2 and err.count("\n") == 1 if rc else digest != plain, (COMPARE_VALUES[name], phase, err)
