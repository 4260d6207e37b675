"""Issue 20: the per-bit in-array energy, average power against TDP, and the power cap that sets the clock."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invariants import random_arch_dict

from tilesim.arch import arch_from_dict, load_arch
from tilesim.arch.errors import InputError
from tilesim.arch.loader import preset_names
from tilesim.arch.power import at_clock, voltage_ratio
from tilesim.cli.main import main
from tilesim.core.energy import psum_bytes
from tilesim.core.power import BISECTIONS, GUESSES, capped_run
from tilesim.studies import api

UNIT = ["energy.actions.array.reg_byte.pj=1", "energy.actions.array.hop_byte.pj=10"]


def test_psum_width_is_the_sum_the_array_can_reach():
    # int8 x int8 = 16 bits, + log2(256) = 8 bits for 256 rows: 3 bytes, not the int32 accumulator's 4
    assert psum_bytes("int8", "int32", 256) == 3
    assert psum_bytes("int8", "int32", 32) == (16 + 5) / 8
    assert psum_bytes("int16", "int32", 2**20) == 4          # capped at the accumulator
    assert psum_bytes("bf16", "fp32", 128) == 4              # floats move at the accumulator's width


@pytest.mark.parametrize("dataflow, per_mac_pj", [
    ("ws", 1 * 1 + 10 * (1 + 21 / 8)),    # weight read in place; input and a 21-bit partial sum hop
    ("os", 1 * 2 * 4 + 10 * (1 + 1)),     # int32 accumulator read and written in place; both operands hop
    ("is", 1 * 1 + 10 * (1 + 21 / 8)),    # input read in place; weight and partial sum hop
])
def test_in_array_energy_counts_what_moves_per_dataflow(dataflow, per_mac_pj):
    arch = load_arch("edge-npu", [*UNIT, f"array.dataflow={dataflow}", "array.dataflows=[]"])
    r = api.run("gemm:64,64,64", arch, mapper="naive").sim
    assert r.energy_breakdown_pj["array"] == pytest.approx(r.macs * per_mac_pj)


def test_tpu_v1_in_array_energy_is_a_register_and_a_short_wire_not_a_noc_hop():
    # was 4.73 pJ per MAC (Eyeriss's PE-to-PE hop on every operand byte) against a 0.17-0.23 pJ MAC
    # WS int8 on 256 rows: per MAC the weight's register (1 byte) and two hops, the input (1 byte) and the 24-bit
    # partial sum (3 bytes); tpu-v1's measured idle holds the registers' clock, so each bit costs its switching only
    r = api.run("gemm:4096,4096,4096", "tpu-v1").sim
    actions = load_arch("tpu-v1").energy.actions
    array_pj, mac_pj = r.energy_breakdown_pj["array"] / r.macs, r.energy_breakdown_pj["mac"] / r.macs
    assert array_pj == pytest.approx(actions["array.reg_byte"].pj + (1 + 3) * actions["array.hop_byte"].pj)
    assert 0.05 < array_pj < mac_pj


def test_a_measured_idle_with_the_clocks_running_leaves_registers_their_switching():
    # Aladdin (40 nm, 1 GHz): a flip-flop's 9.0 fJ per bit is 7.94 fJ internal (the clock's) + 1.06 fJ switching
    whole = load_arch("tpu-v1", ["energy.defaults.register_clock_in_static=false"]).energy.actions
    switching = load_arch("tpu-v1").energy.actions
    assert switching["array.reg_byte"].pj == pytest.approx(whole["array.reg_byte"].pj * 1.063 / 9.0, rel=1e-4)
    wire = whole["array.hop_byte"].pj - whole["array.reg_byte"].pj
    assert switching["array.hop_byte"].pj == pytest.approx(wire + switching["array.reg_byte"].pj, rel=1e-4)
    # the clock part it leaves to static power fits in the measured idle: 40 register bits a PE at 0.7 GHz
    clock_w = 40 * 65536 * 0.7e9 * (whole["array.reg_byte"].pj - switching["array.reg_byte"].pj) / 8 * 1e-12
    assert 5 < clock_w < load_arch("tpu-v1").energy.static_mw / 1e3
    with pytest.raises(InputError, match=r"register_clock_in_static: needs energy\.static_mw"):
        load_arch("tpu-v1", ["energy.static_mw=0"])


def test_eyeriss_keeps_its_published_relative_table():
    actions = load_arch("eyeriss").energy.actions
    assert (actions["array.reg_byte"].pj, actions["array.hop_byte"].pj) == (0.5, 1.0)


def test_power_is_energy_over_time_per_run_and_per_kernel(capsys):
    r = api.run("resnet18", "edge-npu").sim
    assert r.power_w == pytest.approx(r.energy_pj * 1e-12 / r.latency_s)
    k = r.kernels[0]
    assert k.power_w == pytest.approx(k.energy_pj * 1e-12 * r.clock_hz / max(k.cycles, k.compute_cycles,
                                                                                k.dma_cycles))
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "-f", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["power_w"] == pytest.approx(r.power_w) and "power_w" in d["kernels"][0]


def most_compute_bound(arch: str):
    """The highest-utilization run among a large GEMM and two built-in networks."""
    runs = [api.run(w, arch).sim for w in ("gemm:4096,4096,4096", "vit-b16", "resnet50")]
    return max(runs, key=lambda r: r.pe_utilization)


@pytest.mark.parametrize("arch", preset_names())
def test_the_most_compute_bound_workload_stays_below_the_tdp(arch):
    spec = load_arch(arch).power
    assert spec is not None and spec.tdp_w > 0 and spec.tdp_source
    assert most_compute_bound(arch).power_w <= spec.tdp_w


def test_tpu_v1_compute_bound_gemm_is_near_its_published_busy_power():
    # ISCA 2017 Table 2: die busy 40 W (idle 28 W), TDP 75 W. The die figure leaves out the DDR3 DIMMs, so the
    # off-chip energy is taken out; 10%: "busy" is a production workload, not a GEMM at 78% of peak, and the
    # register energy a 40 nm table value node-scaled to 28 nm (docs/energy.md). The preset's one 34 GB/s channel
    # carries activations and outputs too (the chip's come over PCIe), so the busiest GEMM it runs keeps A's
    # 2048 x 6144 slice in the unified buffer while the weights stream, bound by the buffer's 256 bytes a cycle
    r = api.run("gemm:16384,16384,6144", "tpu-v1").sim
    assert r.pe_utilization > 0.75
    die_w = r.power_w - r.energy_breakdown_pj["dram"] * 1e-12 / r.latency_s
    assert abs(die_w / 40 - 1) <= 0.10
    assert r.power_w < 75


def test_voltage_rule_is_linear_above_the_knee_and_flat_below():
    dvfs = load_arch("h100").power.dvfs
    top = 1.98e9
    assert voltage_ratio(dvfs, top, top) == 1
    assert voltage_ratio(dvfs, top, dvfs.knee_hz) == voltage_ratio(dvfs, top, 0.5 * dvfs.knee_hz) == dvfs.v_floor
    mid = (top + dvfs.knee_hz) / 2
    assert voltage_ratio(dvfs, top, mid) == pytest.approx((1 + dvfs.v_floor) / 2)


def test_at_clock_keeps_seconds_of_off_chip_transfers_and_scales_energy_by_v_squared():
    arch = load_arch("h100")
    slow = at_clock(arch, arch.clock_hz / 2)
    assert slow.offchip.bandwidth_bytes_per_cycle * slow.clock_hz == pytest.approx(
        arch.offchip.bandwidth_bytes_per_cycle * arch.clock_hz)
    v = voltage_ratio(arch.power.dvfs, arch.clock_hz, slow.clock_hz)
    assert slow.energy.actions["mac.bf16"].pj == pytest.approx(arch.energy.actions["mac.bf16"].pj * v * v)
    assert slow.onchip[0].bandwidth_bytes_per_cycle == arch.onchip[0].bandwidth_bytes_per_cycle


def test_the_cap_lowers_a_big_gemm_below_boost_and_leaves_decode_at_boost():
    gemm = api.run("gemm:8192,8192,8192", "h100", dtype="bf16").sim
    assert gemm.clock_capped and gemm.clock_hz < 0.8 * gemm.top_clock_hz
    assert 0.98 * 700 <= gemm.power_w <= 700
    free = api.run("gemm:8192,8192,8192", load_arch("h100", ["power.cap_w=0"]), dtype="bf16").sim
    assert free.power_w > 700 and free.clock_hz == gemm.top_clock_hz and free.latency_s < gemm.latency_s
    decode = api.run("llama2-7b", "h100", phase="decode", context=512).llm.decode[-1].end
    assert not decode.clock_capped and decode.clock_hz == 1.98e9


@pytest.mark.parametrize("chip, measured_ghz", [("h100", 1.23), ("h200", 1.30)])
def test_an_fp8_gemm_at_twice_the_mac_rate_is_capped_near_its_measured_clock(chip, measured_ghz):
    # issue 20: mac.fp8 was the arithmetic alone (0.100 pJ) beside a bf16 MAC fitted with its operand delivery
    # (1.817 pJ), so an fp8 GEMM at 2x the tensor rate ran at 1.93 GHz under the 700 W cap against 1.23 (H100) and
    # 1.30 GHz (H200) measured (benchmarks/hardware/data/<chip>_silicon.csv, power gemm_fp8_8192; not fitted)
    arch = load_arch(chip, ["array.dtype=fp8", "array.macs_per_pe_cycle=2"])
    r = api.run("gemm:8192,8192,8192", arch, dtype="fp8").sim
    assert r.clock_capped
    assert abs(r.clock_hz / (measured_ghz * 1e9) - 1) <= 0.10


def test_a_higher_cap_never_gives_a_lower_clock():
    clocks = [api.run("gemm:4096,4096,4096", load_arch("h100", [f"power.cap_w={w}"]), dtype="bf16").sim.clock_hz
              for w in (500, 600, 700, 800)]
    assert clocks == sorted(clocks)


@pytest.mark.parametrize("override, field", [
    ("power.dvfs=null", "power.dvfs"),
    ("power.dvfs.v_floor=1.5", "power.dvfs.v_floor"),
    ("power.dvfs.knee_hz=3 GHz", "power.dvfs"),
    ("power.tdp_w=-1", "power.tdp_w"),
])
def test_bad_power_fields_are_one_line_errors_naming_the_field(override, field):
    with pytest.raises(InputError) as e:
        load_arch("h100", [override])
    assert field in str(e.value) and "\n" not in str(e.value)


def test_a_run_past_the_tdp_warns_on_one_stderr_line(capsys):
    assert main(["run", "-w", "resnet18", "-a", "tpu-v1", "--set", "energy.actions.mac.int8.pj=100"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exceeds tpu-v1's TDP 75 W" in err
    assert main(["run", "-w", "resnet18", "-a", "tpu-v1"]) == 0
    assert capsys.readouterr().err == ""


@dataclass(frozen=True)
class _Run:
    """The fields capped_run and its power model read, and the one it sets: a run of no kernels (the model takes it
    as compute-bound) whose energy is its static and other dynamic power over a second."""
    clock_hz: float
    power_w: float
    top_clock_hz: float = 0.0
    static_power_mw: dict = field(default_factory=dict)
    latency_s: float = 1.0
    kernels: tuple = ()

    @property
    def energy_breakdown_pj(self) -> dict:
        static_w = self.static_power_mw.get("static", 0.0) * 1e-3
        return {"static": static_w * 1e12, "mac": (self.power_w - static_w) * 1e12}


def _bisection_reference(top, arch, run):
    """The plain 8-step bisection capped_run must agree with when power rises with the clock."""
    cap, lo_hz, hi_hz = arch.power.cap_w, arch.power.dvfs.min_hz, arch.clock_hz
    best = run(at_clock(arch, lo_hz))
    if best.power_w > cap:
        return replace(best, top_clock_hz=arch.clock_hz)
    for _ in range(BISECTIONS):
        mid_hz = (lo_hz + hi_hz) / 2
        result = run(at_clock(arch, mid_hz))
        lo_hz, hi_hz, best = (mid_hz, hi_hz, result) if result.power_w <= cap else (lo_hz, mid_hz, best)
    return replace(best, top_clock_hz=arch.clock_hz)


@settings(max_examples=200, deadline=None)
@given(static_w=st.floats(50, 400), dyn_w=st.floats(100, 2000), exponent=st.floats(0.3, 3.0),
       wiggle=st.floats(0, 0.2))
def test_capped_run_finds_the_bisection_clock_in_fewer_runs(static_w, dyn_w, exponent, wiggle):
    # power rising with the clock in shapes from memory-bound (flat) to compute-bound (V^2 f), with a wiggle that
    # keeps it monotone: the guided search returns the bisection's clock exactly, within its bound on runs
    arch = load_arch("h100")
    top_hz, low_hz = arch.clock_hz, arch.power.dvfs.min_hz

    def power(f):
        x = (f - low_hz) / (top_hz - low_hz)
        return static_w + dyn_w * (x ** exponent + wiggle * x) / (1 + wiggle)

    counts = []

    def runner():
        n = [0]
        counts.append(n)

        def run(a):
            n[0] += 1
            return _Run(a.clock_hz, power(a.clock_hz), static_power_mw={"static": static_w * 1e3})
        return run

    top = _Run(top_hz, power(top_hz), static_power_mw={"static": static_w * 1e3})
    want = top if top.power_w <= arch.power.cap_w else _bisection_reference(top, arch, runner())
    got = capped_run(top, arch, runner())
    assert got == want
    assert len(counts) == 1 or counts[-1][0] <= 1 + GUESSES + BISECTIONS


@pytest.mark.parametrize("seed", range(8))
def test_leaving_the_register_clock_to_static_power_changes_only_the_array_energy(seed):
    # on random archs (tests/invariants.py): the same schedule and cycles; the array's energy is its register and
    # bytes per MAC at the switching-only entries, every other component's the same, the run's total lower
    d = random_arch_dict(random.Random(seed))
    d["energy"]["static_mw"] = 500.0
    runs = []
    for in_static in (False, True):
        d["energy"]["defaults"]["register_clock_in_static"] = in_static
        arch = arch_from_dict(d)
        runs.append((arch, api.run("gemm:96,160,200", arch, mapper="naive").sim))
    (_, whole), (split_arch, split) = runs
    assert split.cycles == whole.cycles
    assert {k: v for k, v in split.energy_breakdown_pj.items() if k != "array"} == \
        {k: v for k, v in whole.energy_breakdown_pj.items() if k != "array"}
    # bytes per MAC read in place and hopped (docs/energy.md "In-array energy"): int8 operands, int32 accumulator
    psum = psum_bytes("int8", "int32", split_arch.array.rows)
    reg, hop = {"ws": (1, 1 + psum), "is": (1, 1 + psum), "os": (2 * 4, 2)}[split_arch.array.dataflow]
    for arch, r in runs:
        table = arch.energy.actions
        assert r.energy_breakdown_pj["array"] == pytest.approx(
            r.macs * (reg * table["array.reg_byte"].pj + hop * table["array.hop_byte"].pj), rel=1e-6)
    assert split.energy_breakdown_pj["array"] < whole.energy_breakdown_pj["array"]
    assert split.energy_pj < whole.energy_pj
