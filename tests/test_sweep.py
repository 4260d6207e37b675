"""tilesim sweep (issue 10): grid parsing and order, invalid points as rows, serial == process pool == Dask rows,
resume without recomputing, plots, determinism, one-line errors."""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import io
import json
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim import simulate
from tilesim.arch import InputError, load_arch
from tilesim.arch.loader import raw_arch
from tilesim.cli.args import Parser
from tilesim.cli.main import build_parser, main
from tilesim.cli.sweep import add_sweep_arguments, cmd_sweep
from tilesim.compiler.cost import Mapping
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.schedule import CompileOptions, Kernel, Schedule
from tilesim.core import simulate as core
from tilesim.report.figure import require_matplotlib
from tilesim.report.sweep_plot import check_plots, heatmap_grid
from tilesim.studies import sweep
from tilesim.studies.sweep import (
    SweepSpec,
    check_fields,
    grid_points,
    pareto_front,
    parse_grids,
    partial_path,
    random_points,
    run_point,
    run_sweep,
    split_values,
)

WORKLOAD = "gemm:64,64,64"
GRID = ["array.rows=8,16", "memory.sram.capacity_bytes=1,4KiB,64KiB"]     # 1 B cannot hold a tile: invalid


def spec(**kw) -> SweepSpec:
    raw, source = raw_arch("edge-npu")
    return SweepSpec(raw_arch=raw, source=source, arch="edge-npu", workload=WORKLOAD, **kw)


def _wired() -> bool:
    """True once sim/cli.py has the sweep subcommand."""
    subs = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return bool(subs) and "sweep" in subs[0].choices


def sweep_main(*argv) -> int:
    """`tilesim sweep ARGS` as the CLI runs it: bad input -> exit 2 with one line on stderr."""
    if _wired():
        return main(["sweep", *argv])
    parser = Parser(prog="tilesim")
    add_sweep_arguments(parser.add_subparsers(dest="command", parser_class=Parser))
    try:
        return cmd_sweep(parser.parse_args(["sweep", *argv]))
    except InputError as e:
        print(f"tilesim: error: {e}", file=__import__("sys").stderr)
        return 2


# ---------------------------------------------------------------- points

def test_grid_product_order_last_grid_fastest_values_kept_as_text():
    points = grid_points(["array.rows=8, 16", "memory.sram.capacity_bytes=256KiB,1 MiB"])
    assert points == [{"array.rows": "8", "memory.sram.capacity_bytes": "256KiB"},
                      {"array.rows": "8", "memory.sram.capacity_bytes": "1 MiB"},
                      {"array.rows": "16", "memory.sram.capacity_bytes": "256KiB"},
                      {"array.rows": "16", "memory.sram.capacity_bytes": "1 MiB"}]
    assert split_values("[os],[is, os],ws") == ["[os]", "[is, os]", "ws"]


@pytest.mark.parametrize("grids, words", [
    ([], "at least one --grid"), (["array.rows="], "empty value"), (["array.rows=8,,16"], "empty value"),
    (["array.rows"], "KEY=V1"), (["array.rows=8,8"], "given twice"), (["array.rows=8", "array.rows=16"], "twice"),
    (["array.rows=[8"], "malformed YAML"), (["status=ok"], "not an arch field")])
def test_bad_grids_are_one_line_errors(grids, words):
    with pytest.raises(InputError, match=words) as e:
        grid_points(grids)
    assert "\n" not in str(e.value)


def test_random_points_are_distinct_grid_points_in_grid_order_and_deterministic():
    grids = ["array.rows=8,16,32,64", "array.cols=8,16,32", "memory.sram.capacity_bytes=64KiB,128KiB"]
    full = grid_points(grids)
    picked = random_points(grids, 7, seed=3)
    assert picked == random_points(grids, 7, seed=3) != random_points(grids, 7, seed=4)
    assert len(picked) == 7 and all(p in full for p in picked)
    assert [full.index(p) for p in picked] == sorted(full.index(p) for p in picked)
    assert random_points(grids, 24, seed=0) == full
    with pytest.raises(InputError, match="between 1 and the grid's 24 points"):
        random_points(grids, 25)


def test_unknown_fields_get_the_loaders_did_you_mean_worded_for_grid():
    raw, _ = raw_arch("edge-npu")
    with pytest.raises(InputError, match=r"--grid array.rwos: no field 'rwos' \(did you mean 'rows'\?\)"):
        check_fields(raw, parse_grids(["array.rwos=8"]))
    with pytest.raises(InputError, match=r"no memory level 'sramm' \(did you mean 'sram'\?\)"):
        check_fields(raw, parse_grids(["memory.sramm.capacity_bytes=1KiB"]))
    check_fields(raw, parse_grids(["array.rows=8", "memory.sram.capacity_bytes=1KiB", "cores=2"]))


# ---------------------------------------------------------------- rows

def test_invalid_points_become_rows_with_a_one_line_reason():
    s = spec()
    ok = run_point(s, {"array.rows": "16"})
    assert ok["status"] == "ok" and ok["reason"] == "" and int(ok["macs"]) == 64 ** 3
    assert float(ok["edp"]) == pytest.approx(float(ok["latency_s"]) * float(ok["energy_pj"]))
    for value, words in (("0", "array.rows: must be between 1"), ("abc", "expected an integer"),
                         ("", "expected an integer")):
        row = run_point(s, {"array.rows": value})
        assert row["status"] == "invalid" and words in row["reason"], row
        assert row["cycles"] == row["energy_pj"] == "" and "\n" not in row["reason"]
    tiny = run_point(s, {"memory.sram.capacity_bytes": "1"})         # fails in lowering, not in the loader
    assert tiny["status"] == "invalid" and "too small" in tiny["reason"]


def test_top_level_fields_such_as_the_clock_and_timing_can_be_grid_keys():
    points = grid_points(["clock_hz=400 MHz,800 MHz", "timing=pipelined"])
    raw, _ = raw_arch("edge-npu")
    check_fields(raw, parse_grids(["clock_hz=400 MHz", "timing=pipelined", "cores=2"]))
    slow, fast = (run_point(spec(), p) for p in points)
    assert slow["status"] == fast["status"] == "ok"
    assert float(slow["latency_s"]) == pytest.approx(int(slow["cycles"]) / 400e6)
    assert float(fast["latency_s"]) == pytest.approx(int(fast["cycles"]) / 800e6)


def test_a_row_has_the_numbers_of_tilesim_run_with_the_same_set(capsys):
    row = run_point(spec(), {"array.rows": "8", "memory.sram.capacity_bytes": "64KiB"})
    assert main(["run", "-w", WORKLOAD, "-a", "edge-npu", "--set", "array.rows=8", "--set",
                 "memory.sram.capacity_bytes=64KiB", "-f", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("cycles", "macs", "dram_read_bytes", "dram_write_bytes"):
        assert int(row[key]) == report[key]
    for key in ("latency_s", "energy_pj", "pe_utilization", "mbu", "area_mm2"):
        assert float(row[key]) == report[key]


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_search_sweep_rows_equal_tilesim_run_across_buffer_sizes(capsys, tmp_path, objective):
    """Points that share an array shape reuse rankings, footprints, simulated kernels (latency objective) and tile
    commands (any objective) in one process: every row must still equal `tilesim run` of that point."""
    points = grid_points(["array.rows=16,32", "memory.sram.capacity_bytes=96KiB,256KiB,2MiB"])
    options = CompileOptions(mapper="search", objective=objective)
    rows = run_sweep(points, dataclasses.replace(spec(), workload="resnet18", options=options), tmp_path / "r.csv",
                     backend="serial", progress=False)
    for point, row in zip(points, rows, strict=False):
        sets = functools.reduce(operator.iadd, (["--set", f"{k}={v}"] for k, v in point.items()), [])
        assert main(["run", "-w", "resnet18", "-a", "edge-npu", "-f", "json", "--objective", objective, *sets]) == 0
        report = json.loads(capsys.readouterr().out)
        assert row["status"] == "ok", row
        for key in ("cycles", "macs", "dram_read_bytes", "dram_write_bytes"):
            assert int(row[key]) == report[key], (point, key)
        for key in ("latency_s", "energy_pj", "pe_utilization", "mbu", "area_mm2"):
            assert float(row[key]) == report[key], (point, key)


@pytest.mark.parametrize("phase, extra", [("generate", ["--prompt-len", "16", "--gen-tokens", "8"]),
                                          ("decode", ["--context", "48"])])
def test_llm_sweep_rows_equal_tilesim_run_and_points_that_do_not_fit_are_rows(tmp_path, capsys, phase, extra):
    out = tmp_path / "llm.csv"
    assert sweep_main("-w", "gpt2", "-a", "edge-npu", "--phase", phase, *extra, "--jobs", "1", "--no-progress",
                      "--grid", "array.rows=16,32", "--grid", "memory.dram.capacity_bytes=64MiB,1GiB",
                      "-o", str(out)) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["invalid", "ok"] * 2                   # 124 M int8 weights > 64 MiB
    assert all("weights" in r["reason"] and r["ttft_s"] == "" and r["phase"] == phase for r in rows[::2])
    for row in rows[1::2]:
        assert main(["run", "-w", "gpt2", "-a", "edge-npu", "--phase", phase, *extra, "--set",
                     f"array.rows={row['array.rows']}", "--set", "memory.dram.capacity_bytes=1GiB", "-f", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        for key in ("ttft_s", "tpot_s", "tokens_per_s", "pj_per_token", "prefill_pj_per_token", "decode_pj_per_token",
                    "latency_s", "energy_pj", "pe_utilization", "mbu", "area_mm2"):
            assert float(row[key]) == report[key], key
        for key in ("cycles", "macs", "dram_read_bytes", "dram_write_bytes", "tokens", "prompt_len", "gen_tokens",
                    "kv_cache_bytes", "weight_bytes"):
            assert int(row[key]) == report[key], key
        assert (float(row["tpot_s"]) > 0) and (float(row["ttft_s"]) > 0) == (phase == "generate")


def test_points_that_differ_only_in_capacities_run_in_one_chunk():
    points = grid_points(["array.rows=8,16,32", "array.cols=8,16,32", "memory.sram.capacity_bytes=64KiB,128KiB,1MiB",
                          "memory.sram.resident_fraction=0.25,0.5"])
    todo = list(enumerate(points))
    parts = sweep.chunks(todo, 2)
    assert sorted(i for part in parts for i, _ in part) == list(range(len(points)))
    shape = lambda p: (p["array.rows"], p["array.cols"])                                  # noqa: E731
    for part in parts:
        assert len({shape(p) for _, p in part}) == 1 and [i for i, _ in part] == sorted(i for i, _ in part)
    assert len(parts) == 9                                          # 9 array shapes, 4 points or more per worker
    only_capacities = grid_points(["memory.sram.capacity_bytes=" + ",".join(f"{k}KiB" for k in range(64, 64 + 40))])
    parts = sweep.chunks(list(enumerate(only_capacities)), 2)
    assert len(parts) >= 2 * 4 and sum(map(len, parts)) == 40      # one big group is still shared out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 300), st.integers(1, 300), st.integers(1, 300), st.integers(1, 64),
       st.integers(1, 64), st.integers(1, 64), st.sampled_from(["mnk", "mkn", "nmk", "nkm", "kmn", "knm"]))
def test_orders_that_differ_only_in_single_trip_loops_simulate_alike(g, m, n, k, tm, tn, tk, order):
    """The sweep shares one simulation among mappings whose loop orders differ only where loops of one trip sit."""
    arch = load_arch("edge-npu")
    work = Contraction(g, m, n, k, "int8", "int8", "int8")
    kernel = Kernel("k", ("k",), work, Mapping("ws", min(tm, m), min(tn, n), min(tk, k), order))
    canonical = Kernel("k", ("k",), work, sweep._canonical(kernel))
    assert canonical.mapping.tile_m == kernel.mapping.tile_m and sorted(canonical.mapping.order) == ["k", "m", "n"]
    one = lambda kern: simulate(Schedule("x", arch.name, "pipelined", (kern,)), arch)       # noqa: E731
    a, b = one(kernel), one(canonical)
    assert (a.cycles, a.energy_pj, a.dram_read_bytes, a.dram_write_bytes) == \
        (b.cycles, b.energy_pj, b.dram_read_bytes, b.dram_write_bytes)


def test_serial_and_process_pool_rows_are_identical_and_in_point_order(tmp_path):
    points = grid_points(GRID)
    serial = run_sweep(points, spec(), tmp_path / "serial.csv", backend="serial", progress=False)
    pooled = run_sweep(points, spec(), tmp_path / "pool.csv", jobs=2, backend="process", progress=False)
    assert serial == pooled
    assert (tmp_path / "serial.csv").read_bytes() == (tmp_path / "pool.csv").read_bytes()
    assert [r["status"] for r in serial] == ["invalid", "ok", "ok"] * 2
    assert [{k: r[k] for k in points[0]} for r in serial] == points
    assert not partial_path(tmp_path / "pool.csv").exists()


# ---------------------------------------------------------------- resume

class Calls:
    """Counts run_point calls; raises KeyboardInterrupt at call number `stop_at` (a Ctrl-C mid-sweep)."""

    def __init__(self, stop_at: int | None = None):
        self.n, self.stop_at, self.real = 0, stop_at, sweep.run_point

    def __call__(self, s, point):
        self.n += 1
        if self.n == self.stop_at:
            raise KeyboardInterrupt
        return self.real(s, point)


def test_interrupted_sweep_resumes_without_recomputing_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    points = grid_points(GRID)
    run_sweep(points, spec(), tmp_path / "ref.csv", backend="serial", progress=False)
    out = tmp_path / "out.csv"
    monkeypatch.setattr(sweep, "run_point", Calls(stop_at=4))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(points, spec(), out, backend="serial", progress=False)
    assert not out.exists()
    saved = list(csv.DictReader(partial_path(out).open()))
    assert len(saved) == 3
    with partial_path(out).open("a") as f:       # a crash in the middle of writing a row
        f.write("16,64KiB,ok,gemm")
    calls = Calls()
    monkeypatch.setattr(sweep, "run_point", calls)
    run_sweep(points, spec(), out, backend="serial", progress=False, resume=True)
    assert calls.n == len(points) - 3
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert not partial_path(out).exists()


def test_resume_reuses_a_finished_file_only_for_the_same_settings(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    run_sweep(grid_points(GRID), spec(), out, backend="serial", progress=False)
    calls = Calls()
    monkeypatch.setattr(sweep, "run_point", calls)
    wider = grid_points(["array.rows=8,16,32", GRID[1]])
    run_sweep(wider, spec(), out, backend="serial", progress=False, resume=True)
    assert calls.n == 3                                                   # only array.rows=32 is new
    run_sweep(wider, spec(options=CompileOptions(mapper="naive")), out, backend="serial", progress=False,
              resume=True)
    assert calls.n == 3 + 9                                               # another mapper: nothing reused
    assert [r["mapper"] for r in csv.DictReader(out.open())] == ["naive"] * 9


# ---------------------------------------------------------------- command line, plots, determinism

def test_same_command_twice_gives_the_same_csv_and_a_summary(tmp_path, capsys):
    grids = functools.reduce(operator.iadd, (["--grid", g] for g in GRID), [])
    argv = ["-w", WORKLOAD, "-a", "edge-npu", "--jobs", "2", "--no-progress", *grids]
    assert sweep_main(*argv, "-o", str(tmp_path / "a.csv")) == 0
    out = capsys.readouterr().out
    assert "6 points (4 ok, 2 invalid, 0 failed)" in out and "Pareto front" in out
    assert sweep_main(*argv, "-o", str(tmp_path / "b.csv")) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    header = next(csv.reader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert header[:3] == ["array.rows", "memory.sram.capacity_bytes", "status"]
    assert {"cycles", "latency_s", "energy_pj", "area_mm2", "mbu", "pe_utilization", "edp", "reason"} <= set(header)


@pytest.mark.parametrize("argv, words", [
    (["--grid", "array.rows=8"], "-o FILE.csv is required"),
    (["--grid", "array.rwos=8", "-o", "{tmp}/r.csv"], "did you mean 'rows'"),
    (["--grid", "array.rows=", "-o", "{tmp}/r.csv"], "empty value"),
    (["-o", "{tmp}/r.csv"], "at least one --grid"),
    (["--grid", "array.rows=8", "-o", "{tmp}/no/r.csv"], "does not exist"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--scheduler", "tcp://127.0.0.1:1"], "only with --backend dask"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--plot", "{tmp}/heatmap.png"], "needs two --grid axes"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--plot", "{tmp}/chart.png"], "name exactly one kind"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--metric", "latncy_s"], "did you mean 'latency_s'"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--jobs", "0"], "--jobs: must be >= 1"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "-w", "resnet5"], "unknown workload"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--phase", "decode"], "only for decoder LLMs"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "-w", "gpt2", "--phase", "decode"], "needs the number of tokens"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "-w", "gpt2", "--context", "8"], "only with --phase decode"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "-w", "gpt2", "--phase", "generate", "--gen-tokens", "2000"],
     "has 1024 positions"),
    (["--grid", "array.rows=8", "-o", "{tmp}/r.csv", "--metric", "tpot_s"], "for decoder LLM sweeps"),
])
def test_bad_sweep_input_exits_2_with_one_line(tmp_path, capsys, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert sweep_main(*([] if "-w" in argv else ["-w", WORKLOAD]), *argv) == 2       # -w twice: an error
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "r.csv").exists()


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    rows = [{"status": s, "latency_s": str(x), "energy_pj": str(y)} for s, x, y in
            [("ok", 1, 9), ("ok", 2, 5), ("ok", 3, 6), ("ok", 4, 2), ("invalid", "", ""), ("ok", 4, 3), ("ok", 1, 9)]]
    assert pareto_front(rows) == [0, 1, 3]


def test_heatmap_takes_the_best_over_the_other_axes_and_leaves_invalid_cells_empty():
    axes = [("a", ["1", "2"]), ("b", ["x", "y"]), ("c", ["p", "q"])]
    rows = [{"a": a, "b": b, "c": c, "status": "invalid" if (a, b) == ("2", "y") else "ok",
             "latency_s": str(float(a) * 10 + (c == "q")), "pe_utilization": str(0.1 + (c == "q"))}
            for a in "12" for b in "xy" for c in "pq"]
    lat = heatmap_grid(rows, axes, "latency_s")
    assert lat[0] == [10.0, 10.0] and lat[1][0] == 20.0 and lat[1][1] != lat[1][1]      # NaN
    assert heatmap_grid(rows, axes, "pe_utilization")[0][0] == pytest.approx(1.1)       # higher is better


def test_plots_are_non_empty_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pareto, heat = tmp_path / "pareto.png", tmp_path / "sram-heatmap.png"
    assert sweep_main("-w", WORKLOAD, "-a", "edge-npu", "--jobs", "1", "--no-progress", "--grid", GRID[0], "--grid",
                      GRID[1], "-o", str(tmp_path / "r.csv"), "--plot", str(pareto), "--plot", str(heat),
                      "--metric", "energy_pj") == 0
    for png in (pareto, heat):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_matplotlib_is_a_one_line_input_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(InputError, match=r"matplotlib is not installed; pip install 'tilesim\[plot\]'"):
        require_matplotlib()
    assert check_plots([], ["array.rows"], "latency_s") == []            # no plot asked: matplotlib not needed


def test_progress_without_tqdm_prints_rate_and_eta(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    stream = io.StringIO()
    bar = sweep.Progress(4, initial=1, stream=stream)
    bar.update(3)
    bar.close()
    assert "sweep: 4/4 points" in stream.getvalue() and "pt/s" in stream.getvalue() and "ETA" in stream.getvalue()


# Last in the file: a Dask cluster can leave threads behind, and the process-pool tests above fork.
def test_dask_local_cluster_rows_equal_serial_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    points = grid_points(["array.rows=8,16", "memory.sram.capacity_bytes=1,64KiB"])
    serial = run_sweep(points, spec(), tmp_path / "serial.csv", backend="serial", progress=False)
    dask = run_sweep(points, spec(), tmp_path / "dask.csv", jobs=2, backend="dask", progress=False)
    assert dask == serial
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:  # --scheduler
        by_address = run_sweep(points, spec(), tmp_path / "addr.csv", backend="dask",
                               scheduler=cluster.scheduler_address, progress=False)
    assert by_address == serial


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(InputError, match=r"^scheduler tcp://127\.0\.0\.1:9: cannot connect"):
        sweep.dask_client(1, "tcp://127.0.0.1:9", timeout=1)


# ---------------------------------------------------------------- workers end with their parent; one sweep per output

ROOT = Path(__file__).resolve().parent.parent


def ctrl_c_as_in_a_terminal() -> None:
    """In the child before it starts: SIGINT's default action, which Python turns into KeyboardInterrupt. A
    background job of a non-interactive shell (`pytest &`, CI runners) starts with SIGINT ignored, and its children
    inherit that, so a Ctrl-C test would test nothing there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _children(pid: int) -> set[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_end_with_their_parent(tmp_path, signum):
    # killing a --jobs 2 sweep's main process left its workers running (issue 21 item 7)
    cmd = [sys.executable, "-m", "tilesim", "sweep", "-w", "resnet18", "-a", "edge-npu", "--jobs", "2",
           "--no-progress", "--grid", "array.rows=" + ",".join(map(str, range(4, 64))), "-o", str(tmp_path / "s.csv")]
    parent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=ctrl_c_as_in_a_terminal)
    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while len(workers) < 2 and time.time() < deadline and parent.poll() is None:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert len(workers) >= 2, "the sweep did not start its workers"
        time.sleep(0.5)
        parent.send_signal(signum)
        parent.wait(timeout=60)
        deadline = time.time() + 20
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], f"workers outlived their parent ({signal.Signals(signum).name})"
    finally:
        for pid in (parent.pid, *workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


INTERRUPT_IN_SUBMIT = """
import concurrent.futures as cf, os, signal, sys, time
from pathlib import Path
from tilesim.cli.main import main
submit, calls = cf.ProcessPoolExecutor.submit, []
def interrupted_submit(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:                       # Ctrl-C while the pool takes its second chunk
        os.kill(os.getpid(), signal.SIGINT)
    return submit(self, *args, **kwargs)
cf.ProcessPoolExecutor.submit = interrupted_submit
rc = main(sys.argv[2:] + ["-o", sys.argv[1]])
def children():
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:                                  # a process may end between the listing and the read
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            out.append(stat.parent.name)
    return out
deadline = time.time() + 10
while children() and time.time() < deadline:
    time.sleep(0.05)
print(rc, len(children()), flush=True)
os._exit(0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_the_pool_starts_stops_its_workers(tmp_path):
    # Ctrl-C raised inside the pool's own calls (here: submit) left the pool running, or a lock the pool's manager
    # thread needs held, and the interrupted sweep did not exit (issue 21 item 7: seen under load). Signals are
    # held while the pool runs and delivered between its calls: the sweep says what it saved and its workers end.
    args = ["sweep", "-w", "resnet18", "-a", "edge-npu", "--jobs", "2", "--no-progress",
            "--grid", "array.rows=" + ",".join(map(str, range(4, 64)))]
    done = subprocess.run([sys.executable, "-c", INTERRUPT_IN_SUBMIT, str(tmp_path / "s.csv"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, preexec_fn=ctrl_c_as_in_a_terminal)
    assert done.stdout.split() == ["130", "0"], (done.stdout, done.stderr)
    assert "sweep: interrupted; 0 of 60 points are saved" in done.stderr, done.stderr


HOLD = """
import sys, time
from tilesim.studies.sweep import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_sweep_on_the_same_output_is_refused(tmp_path, capsys):
    # two sweeps on one -o destroyed each other's partial file and one reported the other's rows (issue 21 item 7)
    out = tmp_path / "s.csv"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        args = ["sweep", "-w", WORKLOAD, "-a", "edge-npu", "--grid", "array.rows=8,16", "-o", str(out), "--jobs", "1",
                "--no-progress"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is being written by another sweep (process {other.pid}" in err, err
        assert not out.exists() and not partial_path(out).exists()
    finally:
        other.kill()
        other.wait()
    assert main(args) == 0                      # the lock ends with its holder; the finished sweep removes its own
    assert len(list(csv.DictReader(out.open()))) == 2 and not sweep.lock_path(out).exists()


def test_the_lock_is_taken_anew_when_its_file_was_replaced(tmp_path):
    # a lock file unlinked by its holder after another sweep opened it must not give two holders
    out = tmp_path / "s.csv"
    with sweep.output_lock(out):
        assert sweep.lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match="is being written by another sweep"):
            with sweep.output_lock(out):
                pass
    assert not sweep.lock_path(out).exists()
    with sweep.output_lock(out):
        pass


def test_sweep_output_that_is_a_folder_is_a_one_line_error(tmp_path, capsys):
    args = ["sweep", "-w", WORKLOAD, "--grid", "array.rows=8,16", "-o", str(tmp_path), "--jobs", "1"]
    assert main(args) == 2
    assert "is a directory" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_points_that_differ_only_in_capacities_share_what_a_kernel_alone_does(monkeypatch):
    """kernel_evaluator's `alone` (cycles, action counts, DRAM bytes of a kernel simulated alone), kept across
    capacity points, gives each point's energy priced at its own table, as a fresh evaluator measures it."""
    work = Contraction(g=1, m=96, n=80, k=72, a_dtype="int8", b_dtype="int8", c_dtype="int8")
    kernel = Kernel("k", ("MatMul",), work, Mapping("ws", 32, 16, 24, "mnk"))
    small = load_arch("edge-npu", ["memory.sram.capacity_bytes=64KiB"])
    large = load_arch("edge-npu", ["memory.sram.capacity_bytes=4MiB", "energy.actions.sram.read_byte.pj=3.5"])
    alone: dict = {}
    first = core.kernel_evaluator(small, "pipelined", "energy", alone=alone).measure(kernel)
    assert len(alone) == 1
    fresh = core.kernel_evaluator(large, "pipelined", "energy").measure(kernel)
    with monkeypatch.context() as m:                  # the second point simulates nothing
        m.setattr(core, "_pipeline", lambda *a, **k: pytest.fail("simulated again"))
        m.setattr(core, "_timed", lambda *a, **k: pytest.fail("simulated again"))
        shared = core.kernel_evaluator(large, "pipelined", "energy", alone=alone).measure(kernel)
    assert shared == fresh and shared[0] == first[0] and shared[2] == first[2] and shared[1] != first[1]
    idle = load_arch("edge-npu", ["energy.charge_idle_pes=true"])
    assert sweep._shared(idle, "pipelined") is not sweep._shared(small, "pipelined")
    assert sweep._shared(large, "pipelined") is sweep._shared(small, "pipelined")
