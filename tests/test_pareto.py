"""The sweep's Pareto front (issue 28): non-dominated over latency, energy and area (or --pareto-metrics), 2-D
projections with the front marked, readable log ticks, a deterministic SVG, perf/mm² and the best energy under an
area budget in a summary printed in human units."""
from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim.arch import InputError
from tilesim.cli.main import main
from tilesim.report.figure import figure_bytes
from tilesim.report.sweep_plot import MAX_TICKS, pareto_figure
from tilesim.report.sweep_text import metric_text, sweep_summary
from tilesim.studies import api
from tilesim.studies.sweep import (
    PARETO_METRICS,
    best_perf_per_mm2,
    best_under_area,
    front_metrics,
    pareto_front,
    parse_pareto_metrics,
    run_sweep,
)

README_GRID = ["array.rows=16,32,64", "memory.sram.capacity_bytes=256KiB,1MiB"]      # README.md's sweep example


def row(lat, energy, area, status="ok", **kw) -> dict:
    return {"status": status, "latency_s": str(lat), "energy_pj": str(energy), "area_mm2": str(area),
            "workload": "resnet50", "arch": "edge-npu", **kw}


def test_front_over_three_metrics_keeps_what_two_would_drop():
    rows = [row(1, 10, 9), row(2, 20, 1), row(3, 30, 5), row(1, 10, 9), row("", "", "", "invalid"), row(4, 5, 2)]
    assert pareto_front(rows, ("latency_s", "energy_pj")) == [0, 5]            # (2, 20) loses on both
    assert pareto_front(rows) == [0, 1, 5]      # (2, 20, 1 mm²) is the smallest; (3, 30, 5) loses to it; 3 = 0 twice
    assert pareto_front(rows, ("energy_pj", "latency_s")) == [5, 0]            # ordered by the first metric


def test_higher_is_better_metrics_and_missing_area():
    rows = [row(1, 10, 1, perf_per_mm2="5"), row(2, 5, 1, perf_per_mm2="9"), row(3, 5, 1, perf_per_mm2="1")]
    assert pareto_front(rows, ("latency_s", "perf_per_mm2")) == [0, 1]         # perf/mm²: more is better
    no_area = [dict(r, area_mm2="") for r in rows]
    assert front_metrics(no_area) == ("latency_s", "energy_pj") and pareto_front(no_area) == [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*(st.integers(1, 6),) * 3), min_size=1, max_size=25))
def test_front_is_exactly_the_non_dominated_points(points):
    rows = [row(*p) for p in points]
    front = pareto_front(rows)
    worse = lambda a, b: all(x >= y for x, y in zip(a, b, strict=True)) and a != b     # noqa: E731
    for i, p in enumerate(points):
        dominated = any(worse(p, q) for q in points)
        first = points.index(p) == i
        assert (i in front) == (not dominated and first)


def test_pareto_metrics_option_parses_short_names_and_rejects_bad_ones():
    assert parse_pareto_metrics(None) == PARETO_METRICS
    assert parse_pareto_metrics("latency,energy") == ("latency_s", "energy_pj")
    assert parse_pareto_metrics("edp, area") == ("edp", "area_mm2")
    for text, words in (("latency", "two or more"), ("latency,latency_s", "two or more"),
                        ("latncy,energy", "did you mean 'latency'")):
        with pytest.raises(InputError, match=words) as e:
            parse_pareto_metrics(text)
        assert str(e.value).startswith("pareto_metrics") and "\n" not in str(e.value)


def test_best_energy_under_an_area_budget_and_perf_per_mm2():
    rows = [row(1, 10, 9, perf_per_mm2="1"), row(2, 20, 1, perf_per_mm2="7"), row(3, 12, 4, perf_per_mm2="3")]
    assert best_under_area(rows, 5.0) is rows[2] and best_under_area(rows, 1.0) is rows[1]
    assert best_under_area(rows, 0.5) is None and best_perf_per_mm2(rows) is rows[1]


def test_metric_text_uses_human_units():
    assert metric_text("latency_s", "0.004041") == "4.04 ms"
    assert metric_text("energy_pj", "6.232e9") == "6.23 mJ"
    assert metric_text("edp", "2.518e7") == "25.2 µJ·s"
    assert metric_text("area_mm2", "0.5749") == "0.575 mm²"
    assert metric_text("perf_per_mm2", "1.76e12") == "1.76 TMAC/s/mm²"
    assert metric_text("dram_read_bytes", str(3 * 2**20)) == "3.00 MiB" and metric_text("area_mm2", "") == "n/a"


@pytest.fixture(scope="module")
def readme_rows(tmp_path_factory):
    """README's edge-npu sweep, run once."""
    plan = api.plan_sweep(README_GRID, "resnet50", "edge-npu")
    return run_sweep(plan.points, plan.spec, tmp_path_factory.mktemp("readme") / "r.csv", backend="serial",
                     progress=False)


def test_readme_edge_npu_front_no_longer_collapses_to_the_largest_design(readme_rows):
    rows = readme_rows
    assert len(pareto_front(rows, ("latency_s", "energy_pj"))) == 1          # what the old 2-D front showed
    front = pareto_front(rows)
    assert len(front) >= 3
    areas = [float(rows[i]["area_mm2"]) for i in front]
    assert min(areas) < max(areas) / 2          # small designs are on it, not only the largest
    text = sweep_summary(rows, ["array.rows", "memory.sram.capacity_bytes"], "r.csv", area_budget_mm2=0.3)
    assert f"Pareto front over latency, energy, area ({len(front)} of 6 points)" in text
    assert "best perf/mm²" in text and "best energy within 0.3 mm²:" in text
    assert not re.search(r"\d[eE][+-]?\d", text), text                          # no raw 1.2e+09 pJ
    assert " ms" in text and " mJ" in text and " mm²" in text and "pJ" not in text


def _labels(ax, which):
    axis = getattr(ax, f"{which}axis")
    lo, hi = sorted(getattr(ax, f"get_{which}lim")())
    ticks = [t for t in axis.get_major_ticks() + axis.get_minor_ticks()
             if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]
    return [t.label1 for t in ticks]


@pytest.mark.parametrize("span", [1e5, 40.0, 3.0])
def test_tick_labels_are_distinct_few_and_do_not_overlap(span):
    agg = pytest.importorskip("matplotlib.backends.backend_agg")
    n = 30
    rows = [row(1e-4 * span ** (i / n), 3e8 * span ** ((n - i) / n), 0.1 * span ** ((i * 7 % n) / n),
                **{"array.rows": str(i)}) for i in range(n + 1)]
    fig = pareto_figure(rows, ["array.rows"])
    renderer = agg.FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        for which in "xy":
            labels = _labels(ax, which)
            texts = [t.get_text() for t in labels]
            assert 2 <= len(texts) <= MAX_TICKS and len(set(texts)) == len(texts), (which, texts)
            assert not any("e+" in t or "e-" in t for t in texts), texts
            boxes = [t.get_window_extent(renderer) for t in labels]
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), (which, texts)
            if span > 20:
                assert getattr(ax, f"get_{which}scale")() == "log"


SVG_SCRIPT = """
import sys
from tilesim.report.figure import figure_bytes
from tilesim.report.sweep_plot import pareto_figure
rows = [{"status": "ok", "latency_s": str(1e-3 * (i + 1)), "energy_pj": str(1e9 / (i + 1)),
         "area_mm2": str(0.1 + (i * 3 % 7) / 10), "k": str(i), "workload": "resnet50", "arch": "edge-npu"}
        for i in range(12)]
sys.stdout.buffer.write(figure_bytes(pareto_figure(rows, ["k"]), "svg"))
"""


def test_pareto_svg_is_byte_identical_across_runs():
    pytest.importorskip("matplotlib")
    runs = [subprocess.run([sys.executable, "-c", SVG_SCRIPT], capture_output=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith(b"<?xml")
    namespace: dict = {}
    exec(SVG_SCRIPT.strip().rsplit("\n", 1)[0], namespace)        # the same rows, rendered in this process
    assert figure_bytes(pareto_figure(namespace["rows"], ["k"]), "svg") == runs[0]


def test_cli_pareto_metrics_and_area_budget(tmp_path, capsys):
    argv = ["sweep", "-w", "gemm:64,64,64", "-a", "edge-npu", "--grid", "array.rows,array.cols=8,16,32",
            "-o", str(tmp_path / "r.csv"), "--no-progress", "-j", "1"]
    assert main([*argv, "--pareto-metrics", "latency,area", "--area-budget-mm2", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front over latency, area (" in out and "best energy within 0.2 mm²:" in out
    for bad, words in ((["--pareto-metrics", "latency,speed"], "--pareto-metrics: got 'speed'"),
                       (["--area-budget-mm2", "0"], "--area-budget-mm2: must be > 0")):
        assert main([*argv, *bad]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1


def test_system_sweeps_refuse_the_front_options(tmp_path, capsys):
    out = tmp_path / "s.csv"
    for extra in (["--pareto-metrics", "latency,energy"], ["--area-budget-mm2", "100"]):
        assert main(["sweep", "-w", "gpt2", "--system", "8xh100", "--grid", "tp=1,2", "-o", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert "not for system sweeps" in err and err.count("\n") == 1 and not out.exists()


def test_pareto_plot_draws_the_area_budget_and_stars_the_best_point_within_it():
    pytest.importorskip("matplotlib")
    rows = [row(1e-3, 9e9, 0.6), row(2e-3, 7e9, 0.5), row(3e-3, 8e9, 0.3), row(4e-3, 9.5e9, 0.2)]
    fig = pareto_figure(rows, [], area_budget_mm2=0.4)
    lat_energy, lat_area, energy_area = fig.axes
    assert [list(line.get_ydata()) for line in lat_area.lines] == [[0.4, 0.4]]
    assert [list(line.get_ydata()) for line in energy_area.lines] == [[0.4, 0.4]] and not lat_energy.lines
    star = [c for c in lat_area.collections if c.get_label().startswith("lowest energy within 0.4")]
    assert [tuple(p) for p in star[0].get_offsets()] == [(3.0, 0.3)]            # 3 ms, 0.3 mm²: row 2
