"""System sweeps (sim/studies/system_sweep.py) through the ordinary sweep machinery: system, system-file and chip
fields as grid axes, the process pool, --resume, --random and --plot."""
from __future__ import annotations

import csv

import pytest

from tilesim.arch.system import LINKS, load_system
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.options import LLMOptions, SystemOptions, WorkloadOptions
from tilesim.studies.sweep import run_sweep
from tilesim.studies.system import system_run
from tilesim.studies.system_sweep import SystemSweepSpec, header

BASE = ["sweep", "-w", "gpt2", "--phase", "decode", "--context", "16", "--batch", "2", "--no-progress"]


def rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_system_link_and_chip_fields_are_grid_axes_and_rows_match_single_runs(tmp_path, capsys):
    out = tmp_path / "s.csv"
    argv = [*BASE, "--grid", "system=8xh100,16xh100-ib", "--grid", "tp=2", "--grid",
            "system.link.bandwidth_gb_s=50,450", "--grid", "chip.memory.hbm.bandwidth_gb_s=1000,3350",
            "-o", str(out), "--jobs", "2"]
    assert main(argv) == 0
    assert "8 layouts (8 ok, 0 invalid)" in capsys.readouterr().out
    rows = rows_of(out)
    assert list(rows[0])[:6] == ["system", "tp", "system.link.bandwidth_gb_s", "chip.memory.hbm.bandwidth_gb_s",
                                 "status", "workload"]
    w, llm = WorkloadOptions("gpt2", batch=2), LLMOptions(phase="decode", context=16)
    for row in rows:
        system = load_system(row["system"], (f"memory.hbm.bandwidth_gb_s={row['chip.memory.hbm.bandwidth_gb_s']}",),
                             (("link.bandwidth_gb_s", float(row["system.link.bandwidth_gb_s"])),))
        assert system.link.bandwidth_gb_s == float(row["system.link.bandwidth_gb_s"])
        assert system.link.pj_per_bit == LINKS["nvlink4"].pj_per_bit      # the rest of the named link kept
        r = system_run(w, llm, CompileOptions(), SystemOptions(system=row["system"], tp=2), system=system)
        assert float(row["tpot_s"]) == r.tpot_s and float(row["energy_pj"]) == r.energy_pj
    tpot = {(r["system"], r["system.link.bandwidth_gb_s"], r["chip.memory.hbm.bandwidth_gb_s"]): float(r["tpot_s"])
            for r in rows}
    assert tpot[("8xh100", "50", "1000")] > tpot[("8xh100", "450", "1000")]      # slower link, slower decode
    assert tpot[("8xh100", "450", "1000")] > tpot[("8xh100", "450", "3350")]     # slower HBM, slower decode


def test_system_sweep_resume_random_and_plots(tmp_path, capsys):
    out = tmp_path / "s.csv"
    argv = [*BASE, "--system", "edge-4ring", "--grid", "tp=1,2,4", "--grid", "pp=1,2", "-o", str(out)]
    assert main([*argv, "--random", "3", "--seed", "1"]) == 0
    assert len(rows_of(out)) == 3
    assert main([*argv, "--resume", "--plot", str(tmp_path / "heatmap.png"), "--plot",
                 str(tmp_path / "pareto.png"), "--metric", "tpot_s"]) == 0
    rows = rows_of(out)
    assert len(rows) == 6 and (tmp_path / "heatmap.png").stat().st_size > 0 and (tmp_path / "pareto.png").is_file()
    assert sum(r["status"] == "invalid" for r in rows) == 1                  # tp 4 x pp 2 = 8 chips > 4
    assert main([*argv, "--metric", "macs"]) == 2
    assert "system sweeps report" in capsys.readouterr().err


@pytest.mark.parametrize("grid, words", [
    ("system.link.bandwith_gb_s=1", "did you mean 'bandwidth_gb_s'"),
    ("chip.array.rowz=8", "rowz"),
    ("array.rows=8", "layout options"),
    ("tp=x", "not an integer"),
])
def test_bad_system_grid_keys_are_one_line_errors(tmp_path, capsys, grid, words):
    argv = [*BASE, "--system", "8xh100", "--grid", grid, "-o", str(tmp_path / "s.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_run_sweep_takes_a_system_spec_directly(tmp_path):
    spec = SystemSweepSpec(WorkloadOptions("gpt2", batch=2), LLMOptions(phase="decode", context=16),
                           base=SystemOptions(system="edge-4ring"))
    rows = run_sweep([{"tp": "1"}, {"tp": "5"}], spec, tmp_path / "x.csv", progress=False)
    assert [r["status"] for r in rows] == ["ok", "invalid"] and list(rows[0]) == header(["tp"])
    assert "= 5 chips" in rows[1]["reason"]
