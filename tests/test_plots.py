"""Run plots (roofline, energy, timeline) and `tilesim report --html`: valid PNGs, the result's numbers, bad input."""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.cli.main import main
from tilesim.compiler.schedule import lower
from tilesim.report.plots import PLOT_KINDS, busy_intervals, busy_per_bucket, draw, kernel_components
from tilesim.workloads import load_workload

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(data: bytes) -> None:
    """A PNG that matplotlib reads back as a picture of a useful size."""
    from matplotlib.image import imread  # noqa: PLC0415 (optional dependency)
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] >= 300 and pixels.shape[1] >= 500
    assert pixels.std() > 0.01                                # not a blank canvas


def embedded_pngs(page: str) -> list[bytes]:
    """The base64 PNGs an HTML page embeds."""
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def run():
    """(schedule, arch, result with its timeline) of ResNet-18 on Gemmini."""
    arch = load_arch("gemmini")
    schedule = lower(load_workload("resnet18", dtype=arch.array.dtype), arch)
    return schedule, arch, simulate(schedule, arch, timeline=True)


@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_each_plot_of_a_run_is_a_png(run, tmp_path, kind):
    schedule, arch, result = run
    path = tmp_path / f"{kind}.png"
    draw(kind, result, str(path), kernel_components(schedule, arch, result))
    check_png(path.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]          # no temporary file left


def test_kernel_components_add_up_to_each_kernel_and_to_the_breakdown(run):
    schedule, arch, result = run
    parts = kernel_components(schedule, arch, result)
    for k in result.kernels:
        assert sum(parts[k.name].values()) == pytest.approx(k.energy_pj, rel=1e-9)
    for comp, pj in result.energy_breakdown_pj.items():
        assert sum(p.get(comp, 0.0) for p in parts.values()) == pytest.approx(pj, rel=1e-9)


def test_timeline_buckets_average_to_the_engines_busy_fractions(run):
    result = run[2]
    edges = np.linspace(0, result.cycles, 201)
    for engine, (starts, ends) in busy_intervals(result).items():
        busy = busy_per_bucket(starts, ends, edges)
        assert busy.mean() == pytest.approx(result.engine_busy[engine], rel=1e-9, abs=1e-12)
        assert busy.min() >= -1e-9 and busy.max() <= 1 + 1e-9


def test_busy_per_bucket_by_hand():
    busy = busy_per_bucket(np.array([0.0, 2.5]), np.array([1.5, 4.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert busy.tolist() == pytest.approx([1.0, 0.5, 0.5, 1.0])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, run):
    """A run's plots and JSON from the command line, and compare JSON and sweep CSV files to report on."""
    d = tmp_path_factory.mktemp("out")
    plots = [d / f"{kind}.png" for kind in PLOT_KINDS]
    assert main(["run", "-w", "gemm:64,64,64", "-a", "gemmini", "-f", "json", "-o", str(d / "gemm.json")]
                + [a for p in plots for a in ("--plot", str(p))]) == 0
    (d / "run.json").write_text(json.dumps(run[2].to_dict()))
    assert main(["compare", "-w", "resnet18", "-a", "gemmini", "-f", "json", "-o", str(d / "compare.json")]) == 0
    assert main(["sweep", "-w", "gemm:64,64,64", "-a", "gemmini", "--grid", "array.rows=0,8,16", "--backend",
                 "serial", "--no-progress", "-o", str(d / "sweep.csv")]) == 0
    return d, plots


def test_cli_plots_are_pngs(outputs):
    _, plots = outputs
    for path in plots:
        check_png(path.read_bytes())


def test_html_report_of_a_run_embeds_the_roofline_and_energy_plots_and_its_numbers(outputs, run, capsys):
    d, _ = outputs
    result = run[2]
    assert main(["report", str(d / "run.json"), "--html", str(d / "run.html")]) == 0
    page = (d / "run.html").read_text()
    images = embedded_pngs(page)
    assert len(images) == 2 and page.count("<img") == 2
    for data in images:
        check_png(data)
    assert f"{result.cycles:,}" in page and "resnet18 on gemmini" in page
    longest = max(result.kernels, key=lambda k: k.cycles)
    assert f"{longest.cycles:,}" in page and longest.name in page
    assert not re.search(r'(src|href)="(?!data:)', page)               # self-contained


def test_html_report_of_a_compare_has_each_policy_and_its_savings(outputs):
    d, _ = outputs
    doc = json.loads((d / "compare.json").read_text())
    assert main(["report", str(d / "compare.json"), "--html", str(d / "compare.html")]) == 0
    page = (d / "compare.html").read_text()
    for policy in doc["policies"]:
        assert f"{policy['cycles']:,}" in page and f"<td>{policy['fusion']}</td>" in page
    assert "of DRAM traffic against none" in page                 # savings by kind, layers grouped (issue 28)
    assert "<th>fusion kind</th>" in page and "<th>pattern</th>" in page
    images = embedded_pngs(page)
    assert len(images) == 1
    check_png(images[0])


def test_html_report_of_a_sweep_has_every_row_and_the_pareto_plot(outputs):
    d, _ = outputs
    assert main(["report", str(d / "sweep.csv"), "--html", str(d / "sweep.html")]) == 0
    page = (d / "sweep.html").read_text()
    assert "3 (2 ok, 1 invalid, 0 error)" in page and "array.rows" in page
    assert page.count("<td>invalid</td>") == 1 and page.count("<td>ok</td>") == 2
    images = embedded_pngs(page)
    assert len(images) == 1
    check_png(images[0])


BAD_RUN_PLOTS = [
    (["--plot", "picture.png"], "one of roofline, energy, timeline"),
    (["--plot", "roofline-energy.png"], "exactly one kind"),
    (["--plot", "roofline.jpg"], "must end in .png, .svg, .pdf"),
    (["--plot", "{tmp}/nowhere/roofline.png"], "does not exist"),
]


@pytest.mark.parametrize("extra, words", BAD_RUN_PLOTS)
def test_bad_plot_names_exit_2_with_one_line(tmp_path, capsys, extra, words):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(["run", "-w", "gemm:16,16,16", "-a", "gemmini", "-o", str(tmp_path / "out.txt"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


BAD_REPORT_INPUTS = [
    ("missing", None, "no such file"),
    ("notes.txt", "just some text\n", "not a tilesim result"),
    ("run.csv", "workload,arch,name,cycles\nx,y,z,1\n", "not a tilesim result"),
    ("broken.json", '{"cycles": ', "malformed JSON"),
    ("list.json", "[1, 2]", "not a tilesim result"),
    ("partial.json", '{"cycles": 10, "kernels": []}', "missing key 'workload'"),
    ("types.json", json.dumps({"workload": "w", "arch": "a", "cycles": "many", "latency_s": 1, "macs": 1,
                               "energy_pj": 1, "energy_breakdown_pj": {}, "dram_read_bytes": 0,
                               "dram_write_bytes": 0, "kernels": []}), "'cycles' must be a number"),
    ("policies.json", '{"policies": []}', "'policies' is empty"),
    ("sweep.csv", "array.rows,status,workload,arch,latency_s,energy_pj,edp,area_mm2\n8,ok,w,a,fast,1,1,1\n",
     "expected a number, got 'fast'"),
    ("short.csv", "array.rows,status,workload,arch,latency_s,energy_pj,edp,area_mm2\n8,ok,w\n", "expected 8 cells"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\xff\xfe", "not a text file"),
]


@pytest.mark.parametrize("name, content, words", BAD_REPORT_INPUTS)
def test_bad_report_inputs_exit_2_with_one_line_and_no_file(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--html", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["report", "r.json"], "required: --html"),
    (["report", "r.json", "--html", "/nowhere/at/all/r.html"], "--html: directory"),
    (["run", "-w", "gpt2", "-a", "gemmini", "--plot", "roofline.txt"], "--plot"),   # LLM runs plot (issue 28)
])
def test_report_and_plot_misuse_exits_2_with_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


@pytest.mark.parametrize("kind", PLOT_KINDS)
@pytest.mark.parametrize("suffix", ["svg", "pdf", "png"])
def test_plots_are_byte_identical_across_runs(run, tmp_path, kind, suffix):
    # SVGs carried the time of day and random clip-path ids, PDFs their creation date (issue 21 item 11)
    schedule, arch, sim = run
    components = kernel_components(schedule, arch, sim)
    first, again = tmp_path / f"a-{kind}.{suffix}", tmp_path / f"b-{kind}.{suffix}"
    draw(kind, sim, str(first), components)
    draw(kind, sim, str(again), components)
    assert first.read_bytes() == again.read_bytes()
    assert suffix != "svg" or b"<dc:date>" not in first.read_bytes()
