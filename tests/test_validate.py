"""Validation mode: a workload's GEMMs on the register-level array agree with the closed form the simulator uses."""
from __future__ import annotations

import pytest

from tilesim import simulate
from tilesim.arch import InputError, load_arch
from tilesim.cli.main import main
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.studies.validate import validate_array
from tilesim.workloads import gemm, load_workload


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_small_gemms_agree_with_the_simulators_compute_cycles(dataflow):
    arch = load_arch("gemmini", ["array.rows=4", "array.cols=8", f"array.dataflow={dataflow}"])
    for m, n, k in [(5, 7, 3), (1, 9, 13), (17, 4, 33)]:
        schedule = lower(gemm(m, n, k), arch, CompileOptions(timing="scalesim"))
        (check,) = validate_array(schedule, arch)
        assert check.agrees and not check.skipped
        # the simulator's kernel compute cycles in scalesim mode are the same closed form
        assert simulate(schedule, arch).kernels[0].compute_cycles == check.array_cycles


def test_a_network_agrees_and_large_gemms_are_skipped():
    arch = load_arch("gemmini", ["array.rows=8", "array.cols=8"])
    checks = validate_array(lower(load_workload("mobilenet_v2"), arch), arch, max_macs=300_000)
    ran = [c for c in checks if not c.skipped]
    assert ran and all(c.agrees for c in ran)
    assert any(c.skipped for c in checks)


def test_big_arrays_are_refused():
    arch = load_arch("tpu-v1")
    with pytest.raises(InputError, match="up to 64x64"):
        validate_array(lower(gemm(4, 4, 4), arch), arch)


def test_cli_validate_array(capsys):
    code = main(["validate-array", "-w", "gemm:5,7,3", "-a", "gemmini", "--set", "array.rows=4",
                 "--set", "array.cols=4", "--set", "array.dataflow=is"])
    out = capsys.readouterr().out
    assert code == 0 and "1 agreed, 0 disagreed" in out
