"""The command line: reports carry the contract keys, bad input exits 2 with one line, outputs are atomic."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tilesim.arch import load_arch
from tilesim.cli.main import main

SECTION6 = {"workload", "arch", "cycles", "latency_s", "macs", "pe_utilization", "mbu", "energy_pj",
            "energy_breakdown_pj", "dram_read_bytes", "dram_write_bytes", "kernels"}
KERNEL_KEYS = {"name", "ops", "cycles", "compute_cycles", "stall_cycles", "macs", "pe_utilization",
               "mapping_efficiency", "bound", "dram_read_bytes", "dram_write_bytes", "energy_pj"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resnet50_json_has_the_contract_keys_and_exact_macs(capsys):
    code, out, err = run_cli(capsys, "run", "--workload", "resnet50", "--arch", "tpu-v1", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert SECTION6 <= set(d)
    assert all(KERNEL_KEYS <= set(k) for k in d["kernels"])
    assert d["macs"] == 4_089_184_256 == sum(k["macs"] for k in d["kernels"])
    assert sum(d["energy_breakdown_pj"].values()) == pytest.approx(d["energy_pj"])
    assert 0 < d["pe_utilization"] <= 1 and 0 < d["mbu"] <= 1
    assert all(k["bound"] in ("compute", "memory", "vector") for k in d["kernels"])


def test_resnet18_macs(capsys):
    _code, out, _ = run_cli(capsys, "run", "-w", "resnet18", "-f", "json")
    assert json.loads(out)["macs"] == 1_814_073_344


def test_table_and_csv_carry_the_same_numbers(capsys):
    _, js, _ = run_cli(capsys, "run", "-w", "resnet18", "-a", "edge-npu", "-f", "json")
    _, cs, _ = run_cli(capsys, "run", "-w", "resnet18", "-a", "edge-npu", "-f", "csv")
    _, table, _ = run_cli(capsys, "run", "-w", "resnet18", "-a", "edge-npu")
    d = json.loads(js)
    rows = list(csv.DictReader(io.StringIO(cs)))
    assert len(rows) == len(d["kernels"]) + 1
    assert int(rows[-1]["cycles"]) == d["cycles"] and int(rows[-1]["macs"]) == d["macs"]
    assert [int(r["cycles"]) for r in rows[:-1]] == [k["cycles"] for k in d["kernels"]]
    assert f"{d['cycles']:,}" in table
    assert max(len(line) for line in table.splitlines()) <= 100


def test_same_command_twice_gives_identical_json(capsys):
    _, a, _ = run_cli(capsys, "run", "-w", "bert-base", "-a", "tpu-v4", "-f", "json", "--seq-len", "64")
    _, b, _ = run_cli(capsys, "run", "-w", "bert-base", "-a", "tpu-v4", "-f", "json", "--seq-len", "64")
    assert a == b


@pytest.mark.parametrize("argv, expected", [
    (["run", "-w", "resnet5"], "unknown workload 'resnet5' (did you mean 'resnet50'?)"),
    (["run", "-a", "tpu-v9"], "unknown preset or file 'tpu-v9'"),
    (["run", "--set", "array.rowz=4"], "no field 'rowz'"),
    (["run", "--set", "array.rows=0"], "array.rows: must be between 1 and 65536"),
    (["run", "--set", "memory.sram.capacity_bytes=1"], "no memory level 'sram'"),
    (["run", "-a", "edge-npu", "--set", "memory.sram.capacity_bytes=16"], "memory.sram.capacity_bytes"),
    (["run", "-w", "gemm:1,2"], "expected gemm:M,N,K"),
    (["run", "--format", "xml"], "invalid choice: 'xml'"),
    (["run", "--frobnicate"], "unrecognized arguments"),
    (["run", "-w", "resnet50", "--seq-len", "8"], "--seq-len"),
    (["frob"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, expected):
    code, _out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tilesim: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_malformed_arch_yaml(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nname: y\n")
    code, _, err = run_cli(capsys, "run", "-a", str(p))
    assert code == 2 and "duplicate key 'name'" in err


def test_output_file_is_written_whole_or_not_at_all(tmp_path, capsys):
    good = tmp_path / "r.json"
    assert main(["run", "-w", "gemm:8,8,8", "-a", "gemmini", "-f", "json", "-o", str(good)]) == 0
    assert json.loads(good.read_text())["macs"] == 512
    bad = tmp_path / "never.json"
    assert main(["run", "-w", "nope", "-o", str(bad)]) == 2
    assert list(tmp_path.iterdir()) == [good]


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list", "archs")
    assert code == 0 and "tpu-v1" in out and "edge-npu" in out
    code, out, _ = run_cli(capsys, "list", "workloads")
    assert "resnet50" in out and "gemm:M,N,K" in out


def test_python_dash_m_sim_is_the_same_program():
    p = subprocess.run([sys.executable, "-m", "tilesim", "run", "-w", "nope"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("tilesim: error:")


@pytest.mark.parametrize("preset", ["tpu-v1", "gemmini", "eyeriss"])
def test_show_arch_prints_a_loadable_arch_with_sources(preset, tmp_path, capsys):
    assert main(["show-arch", preset, "--set", "array.rows=8"]) == 0
    out = capsys.readouterr().out
    assert "source:" in out and "static_source" in out
    p = tmp_path / "again.yaml"
    p.write_text(out)
    assert load_arch(str(p)) == load_arch(preset, ["array.rows=8"])
    assert main(["show-arch", preset, "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == preset


def test_output_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "r.txt"
        assert main(["run", "-w", "gemm:8,8,8", "-a", "gemmini", "-o", str(path)]) == 0
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("top", [1, 2, 5])
def test_top_shows_exactly_the_n_longest_kernels(capsys, top):
    # a mutation showing N - 1 kernels passed every test (issue 21 item 11)
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "-f", "json"]) == 0
    kernels = json.loads(capsys.readouterr().out)["kernels"]
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--top", str(top)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("kernel ")) + 1
    rows = lines[first:first + top]
    longest = sorted(kernels, key=lambda k: -k["cycles"])[:top]
    assert [r.split()[0] for r in rows] == [k["name"][:22] for k in longest]
    assert lines[first + top] == f"... {len(kernels) - top} more kernels (showing the {top} longest)"
    assert len(lines) == first + top + 1


def test_top_beyond_the_kernel_count_shows_them_all(capsys):
    assert main(["run", "-w", "gemm:64,64,64", "-a", "edge-npu", "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("kernel ")) + 1
    assert len(lines) == first + 1 and lines[first].startswith("gemm ")


@pytest.mark.parametrize("top", [1, 3])
def test_compare_top_lists_exactly_n_groups_per_policy(capsys, top):
    assert main(["compare", "-w", "resnet18", "-a", "edge-npu", "--fusion", "none,full", "--top", str(top)]) == 0
    out = capsys.readouterr().out
    head, groups = out.split("that saved most:\n")
    assert f"the {top} of " in head.splitlines()[-1]              # repeated layers grouped (issue 28)
    rows = [ln for ln in groups.splitlines() if ln.startswith("  ")]
    assert rows[0].split()[:2] == ["pattern", "count"] and len(rows) == top + 1
