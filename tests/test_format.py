"""Numbers for people (sim/report/format.py): exact strings on tiny cases, and no report line with an exponent."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re

import pytest

from tilesim.cli.main import main
from tilesim.report.explain import schedule_table
from tilesim.report.format import (
    GIB,
    KIB,
    MIB,
    area,
    byte_size,
    bytes_per_s,
    count,
    cycles,
    hertz,
    joules,
    mib,
    mib_text,
    percent,
    pj,
    quantity,
    seconds,
    si,
    sig,
    watts,
)
from tilesim.studies import api


@pytest.mark.parametrize(("x", "text"), [
    (26.03, "26.0"), (0.5, "0.500"), (455.4, "455"), (1.0, "1.00"), (99.96, "100"), (999.6, "1,000"),
    (1234.4, "1,234"), (0.00012345, "0.000123"), (-2.5, "-2.50"), (0, "0")])
def test_sig_keeps_three_digits_without_exponent(x, text):
    assert sig(x) == text


@pytest.mark.parametrize(("x", "text"), [
    (0, "0 B"), (12, "12 B"), (999, "999 B"), (1000, "0.977 KiB"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (1020 * KIB, "0.996 MiB"),           # issue 28: was "1.02e+03 KiB"
    (999.6 * KIB, "0.976 MiB"),          # rounds to 1,000 KiB: the next unit
    (1023.5 * KIB, "1.00 MiB"),
    (4.66e5 * MIB, "455 GiB"),           # issue 28: was "4.66e+05 MiB"
    (3 * 2**50, "3,072 TiB")])
def test_byte_sizes(x, text):
    assert byte_size(x) == text


@pytest.mark.parametrize(("pj_", "text"), [
    (2.603e13, "26.0 J"),                # issue 28: was "energy mJ 2.603e+04"
    (1.47e10, "14.7 mJ"), (3.07e9, "3.07 mJ"), (2.01e8, "201 µJ"), (999.96e3, "1.00 µJ"), (0.5, "500 fJ"),
    (0, "0 J")])
def test_joules(pj_, text):
    assert joules(pj_) == text


def test_seconds_watts_hertz_bandwidth_area_and_pj():
    assert seconds(0.00253) == "2.53 ms"
    assert seconds(86) == "86.0 s"
    assert seconds(4.2e-9) == "4.20 ns"
    assert watts(1.2134) == "1.21 W"
    assert watts(0.884) == "884 mW"
    assert watts(700) == "700 W"
    assert hertz(8e8) == "800 MHz"
    assert hertz(999.6e6) == "1.00 GHz"
    assert bytes_per_s(1.28e10) == "12.8 GB/s"
    assert area(0.30812) == "0.308 mm²"
    assert pj(1.6912) == "1.69 pJ"
    assert si(1234567, "MAC/s") == "1.23 MMAC/s"


def test_counts_and_cycles():
    assert count(1_814_073_344) == "1,814,073,344"
    assert count(2.5) == "2.50"
    assert cycles(2_025_810) == "2,025,810 cycles"
    assert cycles(1) == "1 cycle"


def test_table_helpers_kept_for_callers():
    assert mib(1.5 * MIB) == "1.50"
    assert mib_text(3.2 * MIB) == "3.20 MiB"
    assert mib_text(4.66e5 * MIB) == "455 GiB"
    assert percent(0.1234) == "12.3%"
    assert byte_size(2 * GIB) == "2.00 GiB"


EXPONENT = re.compile(r"\d\.?\d*e[+-]\d")


def _out(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def test_run_table_has_no_exponent():
    text = _out(["run", "-w", "resnet18", "-a", "edge-npu", "--top", "5"])
    assert not EXPONENT.search(text), EXPONENT.search(text)


def test_quantity_reads_the_unit_from_the_key():
    assert quantity("latency_s", 0.00253) == "2.53 ms"
    assert quantity("energy_pj", 2.603e13) == "26.0 J"
    assert quantity("pj_per_token", 5e9) == "5.00 mJ/token"
    assert quantity("tokens_per_s", 1234.5) == "1,234/s"
    assert quantity("dram_read_bytes", 4.66e5 * MIB) == "455 GiB"
    assert quantity("area_mm2", 0.30812) == "0.308 mm²"
    assert quantity("power_w", 0.884) == "884 mW"
    assert quantity("edp", 2.5e-3 * 3e9) == "7.50 µJ·s"
    assert quantity("cycles", 1234) == "1,234"
    assert quantity("pe_utilization", 0.8766) == "87.7%"
    assert quantity("mbu", 0.5) == "50.0%"
    assert quantity("pj_per_mac", 1.6912) == "1.69 pJ/MAC"
    assert quantity("perf_per_mm2", 1234.5) == "1.23 kMAC/s/mm²"
    assert quantity("macs_per_s", 7.16e11) == "716 GMAC/s"
    assert quantity("j_per_token", 0.25) == "250 mJ/token"
    assert quantity("macs", 1_814_073_344) == "1,814,073,344"


def test_show_schedule_prints_the_whole_mapping():
    # issue 28: --show-schedule cut the mapping column at 32 characters
    r = api.run("gemm:64,64,64", "edge-npu", as_graph=True)
    long = "ws m=12544 n=1024 k=4608 order=mnk tiles=1,234,567"
    kernels = (dataclasses.replace(r.sim.kernels[0], mapping=long), *r.sim.kernels[1:])
    text = schedule_table(r.schedule, dataclasses.replace(r.sim, kernels=kernels), r.arch)
    header, row = text.splitlines()[1:3]
    assert long in row and row.index(long) == header.index("mapping")


def test_validate_array_says_how_many_gemms_it_skipped_and_how_to_include_them():
    status, out = 0, io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["validate-array", "-w", "resnet18", "-a", "gemmini"])
    last = out.getvalue().splitlines()[-1]
    assert status == 0
    assert last.startswith("1 agreed, 0 disagreed, 20 skipped of 21 GEMMs: each has more MACs than --max-macs; ")
    assert "--max-macs 118013952 checks them all" in last
