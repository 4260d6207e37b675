"""Decoder LLM runs report like graph runs (issue 28): every `tilesim run` option either changes what a prefill,
decode or generate run writes, or is refused on one line with exit status 2; the op-class breakdown sums to the
run; tables, CSV, JSON, traces, plots and the HTML page carry the same numbers."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import pytest

from tests.test_trace import check_trace
from tilesim import run as api_run
from tilesim.cli.main import build_parser, main
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.report.html_page import report_html
from tilesim.report.llm import llm_csv, llm_table
from tilesim.report.trace import llm_trace_events
from tilesim.studies.llm import CLASS_FIELDS, class_totals, llm_dict
from tilesim.studies.op_class import OP_CLASSES, kernel_class, op_classes
from tilesim.studies.options import OptionError

MODEL = ["run", "-w", "gpt2", "-a", "h100"]
SIZES = {"prefill": ["--prompt-len", "24"], "decode": ["--context", "24"],
         "generate": ["--prompt-len", "24", "--gen-tokens", "3"]}
PHASES = tuple(SIZES)

# one non-default value per `tilesim run` option (files named here are written under the test's folder); an option
# added to `run` without a row here fails test_every_run_option_has_a_row, so none can be dropped silently
OPTION_VALUES = {
    "fusion": ["--fusion", "none"], "arch": ["-a", "tpu-v4"], "overrides": ["--set", "clock_hz=1.5e9"],
    "timing": ["--timing", "scalesim"], "mapper": ["--mapper", "naive"], "objective": ["--objective", "energy"],
    "pinned": ["--mapping", "pin.yaml"], "batch": ["--batch", "2"], "seq_len": ["--seq-len", "20"],
    "weight_dtype": ["--weight-dtype", "int8"], "activation_dtype": ["--activation-dtype", "int8"],
    "kv_dtype": ["--kv-dtype", "int8"], "dtype": ["--dtype", "int8"], "dims": ["--dim", "batch=2"],
    "unknown_ops": ["--unknown-ops", "free"], "weight_sparsity": ["--weight-sparsity", "2:4"],
    "weight_format": ["--weight-format", "csr"], "format": ["-f", "json"], "output": ["-o", "out.txt"],
    "top": ["--top", "2"], "context": ["--context", "30"], "prompt_len": ["--prompt-len", "30"],
    "gen_tokens": ["--gen-tokens", "5"], "mlp_sparsity": ["--mlp-sparsity", "0.5"],
    "predictor_rank": ["--predictor-rank", "16"], "expert_skew": ["--expert-skew", "1"],
    "trace": ["--trace", "t.json"], "show_schedule": ["--show-schedule"], "plot": ["--plot", "timeline.png"],
    "system": ["--system", "8xh100"], "tp": ["--tp", "2"], "pp": ["--pp", "2"], "ep": ["--ep", "2"],
    "dp": ["--dp", "2"], "micro_batches": ["--micro-batches", "2"], "virtual_stages": ["--virtual-stages", "2"],
    "pipeline_schedule": ["--pipeline-schedule", "gpipe"], "sequence_parallel": ["--sequence-parallel"],
    "collective_algorithm": ["--collective-algorithm", "tree"], "overlap_comm": ["--overlap-comm"],
}
BASE_OPTIONS = ("workload", "phase", "help")       # given in every run of the walk


def run_options() -> list[str]:
    """The dest of every `tilesim run` option."""
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return [a.dest for a in sub.choices["run"]._actions]


def test_every_run_option_has_a_row():
    assert sorted(set(run_options()) - set(BASE_OPTIONS)) == sorted(OPTION_VALUES)


def outcome(capsys, tmp_path, argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stderr, a digest of stdout and every file the run wrote) of one command in tmp_path."""
    before = set(tmp_path.iterdir())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    digest = hashlib.sha256(out.encode())
    for path in sorted(set(tmp_path.iterdir()) - before):
        digest.update(path.name.encode() + path.read_bytes())
        path.unlink()
    return rc, err, digest.hexdigest()


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Digest of each phase's run without the option, filled by the first test of the phase."""
    return {}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", sorted(OPTION_VALUES))
def test_every_run_option_is_honoured_or_refused(capsys, tmp_path, baselines, name, phase):
    """Walk: each option x phase changes the output (stdout or files written) or exits 2 with one line."""
    if name == "plot":
        pytest.importorskip("matplotlib")
    (tmp_path / "pin.yaml").write_text("lm_head: {dataflow: os, tile_m: 1, tile_n: 64, tile_k: 64, order: mnk}\n")
    base = [*MODEL, "--phase", phase, *SIZES[phase]]
    if phase not in baselines:
        rc, err, baselines[phase] = outcome(capsys, tmp_path, base)
        assert rc == 0, err
    rc, err, digest = outcome(capsys, tmp_path, [*base, *OPTION_VALUES[name]])
    if rc == 2:
        assert err.startswith("tilesim: error: ") and err.count("\n") == 1, err
    else:
        assert rc == 0, err
        assert digest != baselines[phase], f"{OPTION_VALUES[name]} was silently ignored by a {phase} run"


OUTPUT_OPTIONS = ("top", "show_schedule", "trace", "plot", "output")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("name", OUTPUT_OPTIONS)
def test_output_options_with_each_format_are_honoured_or_refused(capsys, tmp_path, name, fmt, phase):
    """The same walk for the output options in JSON and CSV (--top with JSON was ignored)."""
    if name == "plot":
        pytest.importorskip("matplotlib")
    base = [*MODEL, "--phase", phase, *SIZES[phase], "-f", fmt]
    rc, err, plain = outcome(capsys, tmp_path, base)
    assert rc == 0, err
    rc, err, digest = outcome(capsys, tmp_path, [*base, *OPTION_VALUES[name]])
    assert rc == 2 and err.count("\n") == 1 if rc else digest != plain, (OPTION_VALUES[name], fmt, err)


# ---------------------------------------------------------------- op classes

def tiny_graph() -> Graph:
    """A hand-made decoder layer: norm, q projection with its bias, scores + softmax, MLP up, residual, lm_head."""
    t = {n: Tensor(n, (4, 8), "int8", is_param=n.startswith(("w", "b"))) for n in
         ("x", "h", "wq", "q", "bq", "qb", "s", "p", "wu", "u", "r", "wl", "y")}
    ops = [Op("layer0.attn_norm", "RMSNormalization", ("x",), ("h",)),
           Op("layer0.attn.q", "MatMul", ("h", "wq"), ("q",)),
           Op("layer0.attn.q.bias", "Add", ("q", "bq"), ("qb",)),
           Op("layer0.attn.scores", "MatMul", ("qb", "h"), ("s",)),
           Op("layer0.attn.softmax", "Softmax", ("s",), ("p",)),
           Op("layer0.mlp.up", "MatMul", ("p", "wu"), ("u",)),
           Op("layer0.mlp.residual", "Add", ("u", "x"), ("r",)),
           Op("lm_head", "Gemm", ("r", "wl"), ("y",))]
    return Graph("tiny", t, ops, ("x",), ("y",))


def test_op_classes_of_a_hand_made_layer():
    classes = op_classes(tiny_graph())
    assert classes == {"layer0.attn_norm": "other", "layer0.attn.q": "projections",
                       "layer0.attn.q.bias": "projections",        # named after its op: takes its class
                       "layer0.attn.scores": "attention",          # a contraction of two activations
                       "layer0.attn.softmax": "attention", "layer0.mlp.up": "mlp",
                       "layer0.mlp.residual": "other", "lm_head": "lm_head"}
    assert kernel_class(("layer0.attn.q", "layer0.attn.q.bias"), classes) == "projections"
    assert kernel_class(("unknown",), classes) == "other"


@pytest.fixture(scope="module")
def generate():
    """gpt2 generating on h100 with a window-free model: three simulated decode samples, two spans."""
    return api_run("gpt2", "h100", phase="generate", prompt_len=24, gen_tokens=9, timeline=True).llm


@pytest.mark.parametrize("workload", ["gpt2", "mixtral-8x7b", "deepseek-v3"])
def test_every_class_appears_and_mlp_holds_the_experts(workload):
    r = api_run(workload, "h100", phase="decode", context=16, overrides=["memory.hbm.capacity_bytes=2000GiB"]).llm
    by_class = {kernel_class(k.ops, r.op_classes) for k in r.decode[0].start.kernels}
    assert by_class == set(OP_CLASSES)
    experts = [k for k in r.decode[0].start.kernels if "experts0" in k.name]
    assert all(kernel_class(k.ops, r.op_classes) == "mlp" for k in experts)


def test_classes_sum_to_the_run(generate):
    r, d = generate, llm_dict(generate)
    assert len(r.decode) == 2                                     # an interpolated span end is covered
    table = sum(class_totals(r).values())
    totals = dict(zip(CLASS_FIELDS, table.sum(axis=0), strict=True))
    assert totals["time_s"] == pytest.approx(r.latency_s, rel=1e-12)
    assert totals["energy_pj"] == pytest.approx(r.energy_pj, rel=1e-12)
    assert totals["dram_read_bytes"] == pytest.approx(d["dram_read_bytes"], abs=1)
    assert totals["dram_write_bytes"] == pytest.approx(d["dram_write_bytes"], abs=1)
    run = d["op_classes"]["run"]
    assert sum(v["energy_pj"] for v in run.values()) == pytest.approx(d["energy_pj"], rel=1e-12)
    assert set(d["op_classes"]["by_phase"]) == {"prefill", "decode"}


# ---------------------------------------------------------------- the outputs

def test_table_lists_classes_and_top_kernels_of_both_phases(generate):
    text = llm_table(generate, top=3)
    assert "by op class" in text and "MLP/experts" in text and "projections (qkv/o)" in text
    assert text.count("more kernels (showing the 3 longest)") == 2
    assert "prefill (24 tokens)" in text and "decode step at context 32 (the last)" in text
    assert max(map(len, text.splitlines())) <= 100


def test_csv_rows_sum_to_the_total_row(generate):
    rows = list(csv.DictReader(io.StringIO(llm_csv(generate))))
    total = rows[-1]
    assert total["name"] == "(total)" and total["phase"] == "generate"
    classes = [r for r in rows if r["name"].startswith("(") and r["name"] != "(total)"]
    assert sum(float(r["energy_pj"]) for r in classes) == pytest.approx(float(total["energy_pj"]), rel=1e-9)
    assert sum(float(r["latency_s"]) for r in classes) == pytest.approx(float(total["latency_s"]), rel=1e-9)
    kernels = [r for r in rows if not r["name"].startswith("(")]
    assert {r["phase"] for r in kernels} == {"prefill", "decode step"}
    assert {r["op_class"] for r in kernels} == set(OP_CLASSES)


def test_trace_shows_prefill_and_decode_steps_on_one_timeline(generate):
    events = llm_trace_events(generate)
    for pid in {e["pid"] for e in events}:
        check_trace([e for e in events if e["pid"] == pid])
    steps = [e for e in events if e["pid"] == 1 and e["ph"] == "X"]
    assert [e["name"] for e in steps] == ["prefill (24 tokens)", "decode steps at context 24..27",
                                          "decode steps at context 28..32"]
    assert steps[0]["dur"] == pytest.approx(generate.ttft_s * 1e6)
    assert steps[-1]["ts"] + steps[-1]["dur"] == pytest.approx(generate.latency_s * 1e6)
    names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert names[1].startswith("prefill") and sum(n.startswith("decode step at context") for n in names) == 3
    last = max(e["ts"] + e.get("dur", 0) for e in events if e["ph"] in ("X", "C"))
    assert last == pytest.approx(generate.latency_s * 1e6, rel=1e-9)


def test_cli_writes_trace_plots_and_csv_for_decode(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    trace, plots = tmp_path / "t.json", [tmp_path / f"{k}.png" for k in ("roofline", "energy", "timeline")]
    argv = ["run", "-w", "llama3-8b", "-a", "h100", "--phase", "decode", "--context", "2048", "--trace", str(trace),
            "-f", "csv", *(a for p in plots for a in ("--plot", str(p)))]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("workload,arch,phase,op_class,name")
    assert json.loads(trace.read_text())["traceEvents"] and all(p.stat().st_size > 10_000 for p in plots)


def test_show_schedule_for_decode_and_generate(capsys):
    """Issue 28: --show-schedule --phase decode failed with a false 'only for decoder LLMs'."""
    assert main(["run", "-w", "llama3-8b", "-a", "h100", "--phase", "decode", "--context", "2048",
                 "--show-schedule", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "last decode step schedule:" in out and "TPOT" in out
    assert main(["run", *MODEL[1:], "--phase", "generate", "--gen-tokens", "2", "--show-schedule"]) == 0
    out = capsys.readouterr().out
    assert "prefill schedule:" in out and "last decode step schedule:" in out


def test_html_title_says_what_ran(generate):
    page = report_html("run", json.loads(json.dumps(llm_dict(generate))))
    assert "<title>tilesim run: gpt2 generate on h100</title>" in page
    assert "By op class" in page and "MLP/experts" in page


def test_api_refuses_what_does_not_apply():
    with pytest.raises(OptionError, match="gen_tokens: only with phase generate, not prefill"):
        api_run("gpt2", "h100", gen_tokens=4)
    with pytest.raises(OptionError, match="seq_len: not for phase decode"):
        api_run("gpt2", "h100", phase="decode", context=8, seq_len=8)
    with pytest.raises(OptionError, match="weight_format: only with weight_sparsity"):
        api_run("resnet18", "edge-npu", weight_format="csr")


def test_html_of_an_llm_result_without_valid_op_classes_still_renders(generate):
    d = json.loads(json.dumps(llm_dict(generate)))
    d["op_classes"] = {"run": {"attention": {"time_s": "x"}}}
    page = report_html("run", d)
    assert "gpt2 generate" in page and "By op class" not in page
