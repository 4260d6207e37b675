"""Numeric safety (issue 12): absurd sizes and arch values give correct, finite, non-negative numbers, or a one-line
InputError naming the field and its allowed range; never a negative, NaN, infinity or a wrapped 64-bit value.

Counters are int64 in numpy and numba, times float64. The limits that keep them in range: per op, MACs < 2**56 and
tensors and vector ops < 2**60 (compiler/lowering.py); per fused kernel, summed ops and bytes < 2**61
(sim/simulate.py); per run, cycles < 2**62 (sim/simulate.py, compiler/cost.py); and the arch ranges of
arch/loader.py (clock 1 Hz .. 1e15 Hz, bandwidths 1e-12 .. 1e15 bytes/cycle, latency <= 2**32, pJ and mW <= 1e12)."""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim import simulate
from tilesim.arch import InputError, arch_from_dict, load_arch
from tilesim.arch.loader import raw_arch
from tilesim.cli.main import main
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.cost import OPERAND_DIMS, Mapping, dram_traffic, reuse_reps, trip_counts
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.lowering import MAX_MACS, Contraction, lower_op
from tilesim.compiler.mapper import score
from tilesim.compiler.schedule import CompileOptions, Kernel, Schedule, lower
from tilesim.core.commands import split_total
from tilesim.core.kernels.pipeline import run_tiles, run_tiles_py
from tilesim.report.text import render

PIB = 2**50


def cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def numbers(value, path="result"):
    """Every (path, number) in a JSON document."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{path}[{i}]")


def assert_sane(report: dict) -> None:
    bad = [(p, v) for p, v in numbers(report) if not math.isfinite(v) or v < 0]
    assert not bad, bad[:5]
    assert report["cycles"] > 0 and report["energy_pj"] > 0 and report["latency_s"] > 0
    assert 0 < report["pe_utilization"] <= 1 and 0 <= report["mbu"] <= 1 + 1e-9
    assert report["cycles"] < 2**62


def run_json(workload: str, sets: list[str], arch: str = "edge-npu") -> dict:
    code, out, err = cli(["run", "-w", workload, "-a", arch, "-f", "json"] + [a for s in sets for a in ("--set", s)])
    assert code == 0, err
    report = json.loads(out)
    assert_sane(report)
    return report


def run_error(workload: str, sets: list[str], arch: str = "edge-npu") -> str:
    code, out, err = cli(["run", "-w", workload, "-a", arch, "-f", "json"] + [a for s in sets for a in ("--set", s)])
    assert code == 2 and out == "", (code, out[:200], err)
    assert err.startswith("tilesim: error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------- absurd but legal archs: correct finite numbers

def test_tiny_offchip_bandwidth_is_slow_not_wrapped():
    r = run_json("gemm:64,64,64", ["memory.dram.bandwidth_bytes_per_cycle=1e-9"])   # YAML 1.1 reads 1e-9 as text
    moved = r["dram_read_bytes"] + r["dram_write_bytes"]
    assert r["cycles"] >= moved / 1e-9 and r["mbu"] > 0.99          # the channel is the bottleneck, and busy


def test_one_hertz_clock():
    r = run_json("gemm:64,64,64", ["clock_hz=1"])
    assert r["latency_s"] == r["cycles"]


def test_fastest_clock_and_bandwidths():
    r = run_json("gemm:64,64,64", ["clock_hz=1e15", "memory.dram.bandwidth_bytes_per_cycle=1e15",
                                   "memory.sram.bandwidth_bytes_per_cycle=1e15"])
    assert r["latency_s"] == pytest.approx(r["cycles"] / 1e15)


def test_tiny_onchip_bandwidth_stretches_compute():
    r = run_json("gemm:64,64,64", ["memory.sram.bandwidth_bytes_per_cycle=1e-6"])
    assert r["kernels"][0]["sram_wait_cycles"] > 1e9


def test_longest_latency():
    r = run_json("gemm:64,64,64", ["memory.dram.latency_cycles=4294967296"])
    assert r["cycles"] >= 2 * 4294967296                  # at least one load and one store in flight


def test_largest_capacities():
    run_json("resnet18", [f"memory.sram.capacity_bytes={PIB}", f"memory.dram.capacity_bytes={PIB}"])


def test_largest_array_and_many_cores():
    r = run_json("gemm:64,64,64", ["array.rows=65536", "array.cols=65536", "array.count=65536",
                                   "array.macs_per_pe_cycle=65536", "cores=4096"])
    assert r["peak_macs_per_cycle"] == 2**76


def test_smallest_array_and_vector_unit():
    run_json("gemm:64,64,64", ["array.rows=1", "array.cols=1", "vector.lanes=1"])


@pytest.mark.parametrize("cores", [2, 4, 64])
def test_kept_activations_reserve_a_private_level_per_core(cores):
    # regression: the chip-wide bytes kept on chip were taken from every core's private level, leaving a negative
    # capacity, so resnet18 on edge-npu with 4 cores failed with "needs more than 20,000,000 tiles"
    arch = load_arch("edge-npu", [f"cores={cores}"])
    assert arch.per_core(3 * 2**18).home("input").capacity_bytes >= 0
    run_json("resnet18", [f"cores={cores}"])


def test_largest_energies_at_one_hertz():
    raw, _ = raw_arch("edge-npu")
    raw = dict(raw, clock_hz=1, energy=dict(raw["energy"], static_mw=1e12, actions={
        k: dict(v, pj=1e12) for k, v in raw["energy"]["actions"].items()}))
    arch = arch_from_dict(raw)
    g = GraphBuilder("g")
    x = g.input("x", (1024, 1024))
    y = g.add("Relu", [g.add("MatMul", [x, g.param("w", (1024, 1024))])])
    result = simulate(lower(g.build([y]), arch), arch)
    report = json.loads(render(result, "json"))
    assert_sane(report)
    assert report["energy_breakdown_pj"]["static"] == pytest.approx(1e12 * 1e9 * result.cycles)


# ---------------------------------------------------------------- out of range: one line naming the field

@pytest.mark.parametrize("sets, field", [
    (["clock_hz=0.5"], "clock_hz: must be between 1 Hz and 1e+15 Hz"),
    (["clock_hz=1e300"], "clock_hz: must be between"),
    (["clock_hz=.inf"], "clock_hz"),
    (["clock_hz=.nan"], "clock_hz: must be > 0"),
    (["memory.dram.bandwidth_bytes_per_cycle=1e-300"], "memory.dram.bandwidth_bytes_per_cycle: must be between 1e-12"),
    (["memory.dram.bandwidth_bytes_per_cycle=.inf"], "memory.dram.bandwidth_bytes_per_cycle: must be between"),
    (["memory.dram.bandwidth_bytes_per_cycle=.nan"], "memory.dram.bandwidth_bytes_per_cycle: must be > 0"),
    (["memory.sram.bandwidth_bytes_per_cycle=1e-15"], "memory.sram.bandwidth_bytes_per_cycle: must be between"),
    (["memory.dram.latency_cycles=1099511627776"], "memory.dram.latency_cycles: must be between 0 and 2**32"),
    (["energy.static_mw=1e300"], "energy.static_mw: must be between 0 and 1e+12"),
    (["energy.static_mw=.nan"], "energy.static_mw: must be between 0 and 1e+12"),
    (["area.pe_mm2=.inf"], "area.pe_mm2"),
    (["memory.dram.bandwidth_bytes_per_cycle=1e400"], "expected a number, got '1e400'"),   # not read as inf
    (["energy.defaults.node_nm=.inf"], "energy.defaults.node_nm: must be a finite number > 0"),   # was ValueError
])
def test_out_of_range_arch_values(sets, field):
    assert field in run_error("gemm:64,64,64", sets)


@pytest.mark.parametrize("pj", [float("nan"), float("inf"), -1.0, 1e13])
def test_energy_entries_must_be_finite_and_non_negative(pj):
    raw, _ = raw_arch("edge-npu")
    raw = dict(raw, energy=dict(raw["energy"], actions=dict(raw["energy"]["actions"],
                                                            **{"mac.int8": {"pj": pj, "source": "test"}})))
    with pytest.raises(InputError, match=r"energy\.actions\.mac\.int8\.pj: must be between 0 and 1e\+12 pJ"):
        arch_from_dict(raw)


def test_cycles_past_64_bits_name_the_offchip_bandwidth():
    err = run_error("gemm:2048,2048,2048", ["memory.dram.bandwidth_bytes_per_cycle=1e-12"])
    assert "memory.dram.bandwidth_bytes_per_cycle: at 1e-12 bytes/cycle its transfers take" in err and "2**62" in err
    assert "kernel 'gemm'" in err


def test_feed_cycles_past_64_bits_name_the_onchip_bandwidth():
    # used to escape as OverflowError (ceil of a huge float, then numpy int64)
    err = run_error("gemm:2048,2048,2048", ["memory.sram.bandwidth_bytes_per_cycle=1e-12"])
    assert "memory.sram.bandwidth_bytes_per_cycle: 1e-12 bytes/cycle would take" in err


BIG_DRAM = ["memory.dram.capacity_bytes=1024 TiB"]     # the 256 GiB operands fit (issue 21's off-chip fit check)


def test_macs_at_the_guard_are_refused():
    assert "2.25e+15" not in run_error("gemm:262144,524288,524288", BIG_DRAM)           # exactly 2**56
    assert "MACs exceed the 64-bit counters tilesim uses (< 2**56 per op)" in run_error(
        "gemm:262144,524288,524288", BIG_DRAM)


def test_macs_just_under_the_guard_need_a_bigger_buffer_not_a_crash():
    err = run_error("gemm:262144,524288,524287", BIG_DRAM)
    assert "memory.sram.capacity_bytes" in err


def test_guard_on_tensor_bytes_and_vector_ops():
    big = Graph("g", {"x": Tensor("x", (2**31, 2**30)), "y": Tensor("y", (2**31, 2**30))},
                [Op("relu", "Relu", ("x",), ("y",))], ("x",), ("y",))
    with pytest.raises(InputError, match=r"op 'relu': 2.31e\+18 bytes in tensor 'x' exceed .*\(< 2\*\*60 per op\)"):
        lower_op(big, big.ops[0])
    pool = Graph("p", {"x": Tensor("x", (1, 1, 1, 1)), "y": Tensor("y", (1, 1, 1, 1))},
                 [Op("pool", "MaxPool", ("x",), ("y",), {"kernel_shape": [2**31, 2**31]})], ("x",), ("y",))
    with pytest.raises(InputError, match=r"op 'pool': 4.61e\+18 vector ops exceed .*\(< 2\*\*60 per op\)"):
        lower_op(pool, pool.ops[0])


def test_fused_chain_summing_past_the_kernel_limit():
    # each op reads < 2**60 bytes, but the fused chain reads 5 such tensors: refused per kernel, before int64 sums
    g = GraphBuilder("chain")
    x = g.input("x", (2**29, 2**30))
    for i in range(4):
        x = g.add("Add", [x, g.input(f"r{i}", (2**29, 2**30))])
    arch = load_arch("edge-npu", [f"memory.sram.capacity_bytes={PIB}"])
    schedule = lower(g.build([x]), arch, CompileOptions(fusion="full"))
    with pytest.raises(InputError, match=r"kernel '.*': .* exceed the 64-bit counters tilesim uses \(< 2\*\*61 per "
                                         r"kernel\); use smaller sizes or --fusion none"):
        simulate(schedule, arch)


# ---------------------------------------------------------------- sizes just under the guards: exact, not wrapped

def traffic_by_hand(work: Contraction, mapping: Mapping, acc_bytes: int) -> int:
    """DRAM bytes of a contraction without windows or int4, in Python integers (compiler.cost.dram_traffic sums
    every tile, too many here)."""
    trips = trip_counts(work, mapping)
    a, b, c, acc = (work.m * work.k * 4, work.k * work.n * 4, work.m * work.n * 4, work.m * work.n * acc_bytes)
    spills = reuse_reps(mapping.order, trips, OPERAND_DIMS["output"]) - 1
    return work.g * (reuse_reps(mapping.order, trips, OPERAND_DIMS["input"]) * a
                     + reuse_reps(mapping.order, trips, OPERAND_DIMS["weight"]) * b + 2 * spills * acc + c)


@pytest.mark.parametrize("tiles", [(1, 1, 1), (1, 2**17, 1), (2**18, 1, 2**19 - 1), (7, 3, 5)])
@pytest.mark.parametrize("order", ["mnk", "nkm", "kmn"])
def test_mapper_scores_below_the_mac_guard_do_not_wrap(tiles, order):
    # fp32 operands and psums reloaded for every tile of the other loops: 16 bytes per MAC, the most possible
    work = Contraction(1, 2**18, 2**19, 2**19 - 1, "fp32", "fp32", "fp32")
    assert work.macs < MAX_MACS
    arch = load_arch("edge-npu", ["array.dtype=fp32", "array.acc_dtype=fp32", f"memory.sram.capacity_bytes={PIB}"])
    tm, tn, tk = (np.array([t], dtype=np.int64) for t in tiles)
    cycles, dram, pj, _, _n_tiles = score(work, arch, "pipelined", "ws", tm, tn, tk, order)
    assert int(dram[0]) == traffic_by_hand(work, Mapping("ws", *tiles, order), 4) < 2**62
    assert np.isfinite(cycles).all() and (cycles > 0).all() and np.isfinite(pj).all() and (pj > 0).all()


def test_simulated_traffic_below_the_mac_guard_matches_the_closed_form():
    # few tiles of 2**39 bytes each, A reloaded for every n tile: sums far past 2**32, checked exactly
    work = Contraction(1, 2**19, 2**17, 2**19 - 1, "fp32", "fp32", "fp32")
    arch = load_arch("edge-npu", ["array.dtype=fp32", "array.acc_dtype=fp32", f"memory.sram.capacity_bytes={PIB}"])
    mapping = Mapping("ws", 2**18, 2**12, 2**19 - 1, "nmk")
    schedule = Schedule("near-guard", arch.name, "pipelined", (Kernel("gemm", ("gemm",), work, mapping),))
    result = simulate(schedule, arch)
    t = dram_traffic(work, mapping, "fp32")
    assert (result.dram_read_bytes, result.dram_write_bytes) == (t.read, t.write)
    assert_sane(json.loads(render(result, "json")))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**62 - 1), st.lists(st.floats(0, 1e6, allow_subnormal=False), min_size=1, max_size=20)
       .filter(lambda w: sum(w) > 0))
def test_split_total_is_exact_and_non_negative(total, weights):
    # regression: above 2**53 a float mark could land past the total, leaving the last part at -1
    parts = split_total(total, np.array(weights))
    assert int(parts.sum()) == total and (parts >= 0).all()


def test_split_total_with_a_negligible_last_weight():
    parts = split_total(2**62 - 1, np.array([1.0, 1e-18]))
    assert parts.tolist() == [2**62 - 1, 0]


def test_pipeline_kernel_equals_reference_on_huge_times():
    n = 6
    load = np.array([1e18, 0.0, 3e17, 1.0, 2e18, 5e17])
    store = np.array([2e17, 1e18, 0.0, 4e17, 1.0, 3e18])
    compute = np.array([1e18, 2.0, 4e17, 1e17, 0.0, 7e17])
    engine = np.array([0, 1, 0, 0, 1, 0], dtype=np.int64)
    slots = np.full(n, 2, dtype=np.int64)
    dep = np.array([-1, -1, 1, 1, 1, 3], dtype=np.int64)
    flash = np.array([0.0, 3e18, 0.0, 1.0, 0.0, 2e17])
    gate = np.array([-1, -1, 0, 1, -1, 2], dtype=np.int64)
    args = (load, store, compute, engine, slots, dep, 2.0**32, flash, gate, 2.0**32)
    fast, slow = run_tiles(*args), run_tiles_py(*args)
    for a, b in zip(fast, slow, strict=False):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(a).all() and (a >= 0).all() for a in fast)


# ---------------------------------------------------------------- the report never prints NaN or infinity

@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
@pytest.mark.parametrize("field, value", [("mbu", float("nan")), ("latency_s", float("inf")),
                                          ("energy_breakdown_pj", {"dram": float("-inf")})])
def test_report_refuses_nan_and_infinity(fmt, field, value):
    arch = load_arch("edge-npu")
    g = GraphBuilder("g")
    y = g.add("MatMul", [g.input("x", (8, 8)), g.param("w", (8, 8))])
    result = replace(simulate(lower(g.build([y]), arch), arch), **{field: value})
    with pytest.raises(InputError, match=rf"result\.{field}.*is not a finite number"):
        render(result, fmt)
