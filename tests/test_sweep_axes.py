"""Sweep axes beyond arch fields (issue 28): workload, batch, seq-len, context, prompt/gen tokens, dtypes, phase,
fusion and objective as --grid keys, tied axes (array.rows,array.cols=...), a repeated -w as an error, and one-line
errors naming the axis and what it allows."""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import pytest

from tilesim.arch import InputError
from tilesim.arch.loader import raw_arch
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions
from tilesim.report.sweep_plot import heatmap_grid
from tilesim.studies import api
from tilesim.studies.options import LLMOptions, WorkloadOptions
from tilesim.studies.sweep import (
    LLM_AXES,
    OPTION_AXES,
    SweepSpec,
    axis_labels,
    axis_value,
    columns,
    grid_points,
    parse_grids,
    random_points,
    read_done,
    run_point,
    run_sweep,
    split_values,
)

WORKLOAD = "gemm:64,64,64"
METRIC_COLUMNS = ("cycles", "latency_s", "energy_pj", "macs", "dram_read_bytes", "area_mm2")


def spec(workload: str = WORKLOAD, **kw) -> SweepSpec:
    raw, source = raw_arch("edge-npu")
    return SweepSpec(raw_arch=raw, source=source, arch="edge-npu", workload=WorkloadOptions(workload, **kw))


def test_option_axes_come_from_the_option_dataclasses():
    assert {"workload", "batch", "seq_len", "context", "prompt_len", "gen_tokens", "dtype", "weight_dtype",
            "activation_dtype", "kv_dtype", "phase", "fusion", "objective", "weight_sparsity"} <= set(OPTION_AXES)
    assert set(LLM_AXES) == {f.name for f in dataclasses.fields(LLMOptions)}
    assert "timing" not in OPTION_AXES           # the arch's own top-level field stays a grid key
    assert axis_value("batch", "4") == 4 and axis_value("mlp_sparsity", "0") == 0.0
    assert axis_value("workload", '"gemm:8,8,8"') == "gemm:8,8,8" and axis_value("fusion", "none") == "none"


def test_tied_axis_varies_its_keys_together_and_other_axes_around_it():
    grids = ["array.rows,array.cols=8,16,32", "memory.sram.capacity_bytes=64KiB,1MiB"]
    points = grid_points(grids)
    assert points == [{"array.rows": r, "array.cols": r, "memory.sram.capacity_bytes": c}
                      for r in ("8", "16", "32") for c in ("64KiB", "1MiB")]
    assert parse_grids(grids)[:2] == [("array.rows", ["8", "16", "32"]), ("array.cols", ["8", "16", "32"])]
    assert axis_labels(grids)[0] == ("array.rows,array.cols", ["8", "16", "32"])
    picked = random_points(grids, 4, seed=1)
    assert len(picked) == 4 and all(p in points and p["array.rows"] == p["array.cols"] for p in picked)


def test_quoted_values_keep_their_commas():
    assert split_values('"gemm:8,8,8",gemm:16,[a,b]') == ['"gemm:8,8,8"', "gemm:16", "[a,b]"]
    assert grid_points(['workload="gemm:8,8,8",resnet18']) == [{"workload": "gemm:8,8,8"}, {"workload": "resnet18"}]


@pytest.mark.parametrize("grids, words", [
    (["phase=prefil"], "--grid phase: got 'prefil' (did you mean 'prefill'?); allowed: prefill, decode, generate"),
    (["fusion=ful"], "allowed: none, epilogue, full, attention"),
    (["objective=area"], "objective: got 'area'; allowed: latency, energy, edp"),
    (["batch=two"], "--grid batch: 'two' is not an integer"),
    (["array.rows,=8"], "empty key in a tied axis"),
    (["array.rows,array.rows=8"], "array.rows: given twice"),
    (["array.rows,array.cols=8", "array.cols=16"], "array.cols: given twice"),
    (["cycles=8"], "not an arch field (it is a column of the results)"),
])
def test_bad_axis_names_and_values_are_one_line_errors_naming_the_axis(grids, words):
    with pytest.raises(InputError) as e:
        grid_points(grids)
    assert words in str(e.value).replace("grid ", "--grid ", 1) and "\n" not in str(e.value)


@pytest.mark.parametrize("grid, words", [
    ("seqlen=8", "--grid seqlen: not an arch field or a workload option (did you mean 'seq_len'?)"),
    ("batch=0", "--grid batch=0: must be >= 1, got 0"),
    ("dtype=int7", "--grid dtype=int7:"),
    ("workload=resnet5", "--grid workload=resnet5: workload: unknown workload 'resnet5' (did you mean 'resnet50'?)"),
    ("phase=prefill,decode", "only for decoder LLMs"),
])
def test_bad_option_values_exit_2_before_any_point_runs(tmp_path, capsys, grid, words):
    out = tmp_path / "r.csv"
    assert main(["sweep", "-w", WORKLOAD, "-a", "edge-npu", "--grid", grid, "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


def test_a_repeated_workload_flag_is_an_error_naming_the_workload_axis(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["sweep", "-w", "resnet50", "-w", "mobilenet_v2", "--grid", "array.rows=8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "-w: given 2 times" in err and "--grid workload=resnet50,mobilenet_v2" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("point, options", [
    ({"batch": "2"}, {"batch": 2}),
    ({"workload": "gemm:32,64,16"}, {"workload": "gemm:32,64,16"}),
    ({"fusion": "none"}, {"fusion": "none"}),
    ({"objective": "energy"}, {"objective": "energy"}),
    ({"dtype": "fp16"}, {"dtype": "fp16"}),
])
def test_an_option_axis_row_equals_the_sweep_run_with_that_option(point, options):
    w = {k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(WorkloadOptions)}}
    c = {k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(CompileOptions)}}
    base = dataclasses.replace(spec(), options=CompileOptions(**c))
    base = dataclasses.replace(base, workload=dataclasses.replace(base.workload, **w))
    arch_point = {"array.rows": "16"}
    on_axis = run_point(spec(), {**point, **arch_point})
    fixed = run_point(base, arch_point)
    assert on_axis["status"] == fixed["status"] == "ok"
    assert {m: on_axis[m] for m in METRIC_COLUMNS} == {m: fixed[m] for m in METRIC_COLUMNS}
    for key, value in point.items():
        assert on_axis[key] == value
    assert on_axis != run_point(spec(), arch_point) or point == {"fusion": "none"}   # a gemm has nothing to fuse


def test_a_key_that_is_also_a_setting_column_is_one_column():
    header = columns(["workload", "fusion", "array.rows"])
    assert header[:4] == ["workload", "fusion", "array.rows", "status"]
    assert header.count("workload") == header.count("fusion") == 1
    llm = columns(["batch", "phase"], llm=True)
    assert llm.count("batch") == llm.count("phase") == 1


def test_llm_axes_phase_context_and_prompt_with_a_cnn_point_invalid(tmp_path):
    plan = api.plan_sweep(['workload=gpt2,"gemm:64,64,64"', "phase=prefill,decode"], arch="edge-npu", context=64,
                          prompt_len=16)
    rows = run_sweep(plan.points, plan.spec, tmp_path / "r.csv", backend="serial", progress=False)
    by = {(r["workload"], r["phase"]): r for r in rows}
    assert by["gpt2", "prefill"]["status"] == by["gpt2", "decode"]["status"] == "ok"
    assert by["gpt2", "prefill"]["prompt_len"] == "16" and by["gpt2", "prefill"]["tokens"] == "16"
    assert by["gpt2", "decode"]["prompt_len"] == "64" and by["gpt2", "decode"]["tokens"] == "1"   # --context: decode's
    for phase in ("prefill", "decode"):
        gemm = by["gemm:64,64,64", phase]
        assert gemm["status"] == "invalid" and "only for decoder LLMs" in gemm["reason"]
    header = next(csv.reader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert header[:3] == ["workload", "phase", "status"] and "ttft_s" in header


def test_llm_gen_tokens_and_kv_dtype_axes_change_the_run(tmp_path):
    plan = api.plan_sweep(["gen_tokens=2,4", "kv_dtype=int8,fp16"], "gpt2", "edge-npu", phase="generate",
                          prompt_len=8)
    rows = run_sweep(plan.points, plan.spec, tmp_path / "r.csv", backend="serial", progress=False)
    assert [(r["gen_tokens"], r["kv_dtype"], r["status"]) for r in rows] == [
        ("2", "int8", "ok"), ("2", "fp16", "ok"), ("4", "int8", "ok"), ("4", "fp16", "ok")]
    assert int(rows[0]["kv_cache_bytes"]) * 2 == int(rows[1]["kv_cache_bytes"])     # fp16 KV: twice the bytes
    assert int(rows[2]["tokens"]) == 8 + 4 and float(rows[2]["latency_s"]) > float(rows[0]["latency_s"])


def test_option_axis_rows_resume(tmp_path):
    plan = api.plan_sweep(["array.rows,array.cols=8,16", "batch=1,2"], WORKLOAD, "edge-npu")
    out = tmp_path / "r.csv"
    rows = run_sweep(plan.points, plan.spec, out, backend="serial", progress=False)
    done, other = read_done(out, plan.spec, list(plan.points[0]))
    assert other == 0 and len(done) == 4 and list(done.values()) == rows


def test_cli_tied_axis_columns_match(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["sweep", "-w", WORKLOAD, "-a", "edge-npu", "--grid", "array.rows,array.cols=8,16", "--grid",
                 "batch=1,2", "-o", str(out), "--no-progress", "-j", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["array.rows"], r["array.cols"], r["batch"]) for r in rows] == [
        ("8", "8", "1"), ("8", "8", "2"), ("16", "16", "1"), ("16", "16", "2")]
    assert all(r["pes"] == str(int(r["array.rows"]) ** 2) for r in rows)
    capsys.readouterr()


def test_seq_len_axis_given_as_its_flag_name_is_the_field():
    assert grid_points(["seq-len=8,16"]) == [{"seq_len": "8"}, {"seq_len": "16"}]


def test_heatmap_over_a_tied_axis_reads_its_first_key():
    axes = [("array.rows,array.cols", ["8", "16"]), ("batch", ["1", "2"])]
    rows = [{"array.rows": r, "array.cols": r, "batch": b, "status": "ok", "latency_s": str(int(r) * int(b))}
            for r in ("8", "16") for b in ("1", "2")]
    assert heatmap_grid(rows, axes, "latency_s") == [[8.0, 16.0], [16.0, 32.0]]


def test_python_api_grid_takes_tied_keys_and_workloads_with_commas(tmp_path):
    rows = api.sweep({("array.rows", "array.cols"): [8, 16], "workload": ["gemm:32,32,32", WORKLOAD]},
                     arch="edge-npu", output=tmp_path / "r.csv", backend="serial")
    assert [(r["array.rows"], r["array.cols"], r["workload"], r["status"]) for r in rows] == [
        ("8", "8", "gemm:32,32,32", "ok"), ("8", "8", WORKLOAD, "ok"),
        ("16", "16", "gemm:32,32,32", "ok"), ("16", "16", WORKLOAD, "ok")]
    assert int(rows[0]["macs"]) == 32 ** 3 and int(rows[1]["macs"]) == 64 ** 3


def test_docs_list_every_option_axis():
    text = (Path(__file__).resolve().parent.parent / "docs" / "sweeps.md").read_text()
    assert [k for k in OPTION_AXES if f"`{k}`" not in text] == []


def test_option_axis_rows_are_the_same_from_the_process_pool(tmp_path):
    grids = ['workload="gemm:32,64,16","gemm:64,64,64"', "fusion=none,full", "array.rows,array.cols=8,16"]
    plan = api.plan_sweep(grids, arch="edge-npu")
    serial = run_sweep(plan.points, plan.spec, tmp_path / "s.csv", backend="serial", progress=False)
    pool = run_sweep(plan.points, plan.spec, tmp_path / "p.csv", jobs=2, backend="process", progress=False)
    assert pool == serial and (tmp_path / "s.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()
    assert [r["status"] for r in serial] == ["ok"] * 8
