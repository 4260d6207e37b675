"""Mapping search: legal, deterministic, monotone in buffer size, consistent with the cost model, never worse than naive."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arch import load_arch
from compiler import mapper
from compiler.cost import OPERAND_DIMS, Mapping, dram_traffic, reuse_reps
from compiler.lowering import Contraction, ConvWindow
from compiler.schedule import CompileOptions, Kernel, Schedule, lower
from compiler.tiling import fits, naive_mapping
from sim import kernel_evaluator, simulate
from workloads import load_workload

from archs import tiny_arch


@st.composite
def works(draw):
    window = None
    m, n, k = (draw(st.integers(1, 400)) for _ in range(3))
    if draw(st.booleans()):
        out_w = draw(st.integers(1, 14))
        m = out_w * draw(st.integers(1, 14))
        r = draw(st.sampled_from([1, 3]))
        window = ConvWindow(out_w=out_w, stride_h=1, span_h=r, in_h=m // out_w + r - 1, in_w=out_w + r - 1,
                            window=r * r)
        k = r * r * draw(st.integers(1, 40))
    return Contraction(draw(st.integers(1, 3)), m, n, k, "int8", "int8", draw(st.sampled_from(["int8", "int4"])),
                       window=window)


def small_arch(draw_sram, dataflow="ws", double=True):
    return tiny_arch(rows=8, cols=8, dataflow=dataflow, sram_bytes=draw_sram, double=double, latency=20, bw=8)


@settings(max_examples=60, deadline=None)
@given(works(), st.sampled_from([2048, 16384, 1 << 20]), st.sampled_from(["ws", "os", "is"]), st.booleans(),
       st.sampled_from(["latency", "energy", "edp"]))
def test_search_is_legal_and_never_worse_than_naive_on_its_objective(work, sram, dataflow, double, objective):
    arch = small_arch(sram, dataflow, double)
    choice = mapper.search(work, arch, "pipelined", objective)
    assert fits(work, choice.mapping, arch)
    naive = naive_mapping(work, arch)
    one = lambda m: mapper.score(work, arch, "pipelined", dataflow, np.array([m.tile_m]), np.array([m.tile_n]),  # noqa: E731
                                 np.array([m.tile_k]), m.order)
    c_s, d_s, e_s, _, _ = one(choice.mapping)
    c_n, d_n, e_n, _, _ = one(naive)
    obj = {"latency": (c_s[0], c_n[0]), "energy": (e_s, e_n), "edp": (c_s[0] * e_s, c_n[0] * e_n)}[objective]
    # the search treats objectives within TIE_BAND of its best as equal (then prefers less traffic)
    assert float(np.ravel(obj[0])[0]) <= float(np.ravel(obj[1])[0]) * (1 + mapper.TIE_BAND + 1e-12)


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]))
def test_bigger_buffers_never_make_the_search_worse(work, dataflow):
    estimates = [mapper.search(work, small_arch(sram, dataflow), "pipelined").cycles
                 for sram in (4096, 8192, 65536, 1 << 20)]
    assert all(b <= a * (1 + mapper.TIE_BAND) + 1e-9 for a, b in zip(estimates, estimates[1:]))


@settings(max_examples=80, deadline=None)
@given(works(), st.integers(1, 50), st.integers(1, 50), st.integers(1, 50),
       st.sampled_from(mapper.ORDERS))
def test_vectorised_traffic_equals_the_closed_form(work, a, b, c, order):
    tm, tn, tk = min(a, work.m), min(b, work.n), min(c, work.k)
    arch = small_arch(1 << 30)
    _, dram, _, _, _ = mapper.score(work, arch, "pipelined", "ws", np.array([tm]), np.array([tn]), np.array([tk]),
                                    order)
    t = dram_traffic(work, Mapping("ws", tm, tn, tk, order), arch.array.acc_dtype)
    assert int(dram[0]) == t.read + t.write
    trips = {d: -(-getattr(work, d) // s) for d, s in zip("mnk", (tm, tn, tk))}
    for dims in OPERAND_DIMS.values():
        vec = mapper._reps(order, {d: np.array([v]) for d, v in trips.items()}, dims)
        assert int(vec[0]) == reuse_reps(order, trips, dims)


def test_same_inputs_same_mapping():
    arch = load_arch("edge-npu")
    work = Contraction(1, 3136, 64, 576, "int8", "int8", "int8")
    first = mapper.search(work, arch, "pipelined").mapping
    mapper._search_cached.cache_clear()
    assert mapper.search(work, arch, "pipelined").mapping == first


def test_repeated_layers_are_searched_once():
    mapper._search_cached.cache_clear()
    arch = load_arch("gemmini")
    schedule = lower(load_workload("resnet50"), arch)
    distinct = {k.work for k in schedule.kernels if k.on_array}
    assert mapper._search_cached.cache_info().misses == len(distinct) < 54    # 54 contractions
    lower(load_workload("resnet50"), arch)                                      # a second network: all cached
    assert mapper._search_cached.cache_info().hits == len(distinct)


@pytest.mark.parametrize("preset", ["gemmini", "edge-npu"])
def test_every_resnet50_layer_simulates_no_slower_than_naive(preset):
    arch = load_arch(preset)
    schedule = lower(load_workload("resnet50"), arch, evaluate=kernel_evaluator(arch, "pipelined"))
    for k in schedule.kernels:
        if not k.on_array:
            continue
        alone = lambda m: simulate(Schedule("x", arch.name, "pipelined", (Kernel(k.name, k.ops, k.work, m),)),  # noqa: E731
                                   arch).cycles
        assert alone(k.mapping) <= alone(naive_mapping(k.work, arch)), k.name


def test_naive_mapper_is_still_available():
    arch = load_arch("edge-npu")
    s = lower(load_workload("resnet18"), arch, CompileOptions(mapper="naive"))
    assert all(k.mapping.order == "mnk" for k in s.kernels if k.on_array)


def test_show_schedule_explains_each_contraction(capsys):
    from sim.cli import main
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--show-schedule"]) == 0
    out = capsys.readouterr().out
    conv_lines = [line for line in out.splitlines() if line.startswith("layer1.0.conv1 ")]
    assert len(conv_lines) == 2                       # once in the report, once in the schedule
    assert "order=" in conv_lines[1] and ("next m=" in conv_lines[1] or "simulated faster" in conv_lines[1])
    assert main(["run", "--show-schedule", "-f", "json"]) == 2


@settings(max_examples=30, deadline=None)
@given(works())
def test_more_allowed_dataflows_never_make_the_search_worse(work):
    one = small_arch(65536, "ws")
    from arch import arch_from_dict
    from archs import tiny_arch_dict
    d = tiny_arch_dict(rows=8, cols=8, dataflow="ws", sram_bytes=65536, latency=20, bw=8)
    d["array"]["dataflows"] = ["os", "is"]
    three = arch_from_dict(d)
    c1, c3 = mapper.search(work, one, "pipelined"), mapper.search(work, three, "pipelined")
    assert c3.cycles <= c1.cycles * (1 + mapper.TIE_BAND) + 1e-9
    assert c3.mapping.dataflow in ("ws", "os", "is") and c1.mapping.dataflow == "ws"


def test_pinned_mappings_are_used_and_checked(tmp_path, capsys):
    from sim.cli import main
    pin = tmp_path / "pin.yaml"
    pin.write_text("conv1: {dataflow: ws, tile_m: 392, tile_n: 64, tile_k: 147, order: kmn}\n")   # fits half the SRAM
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--mapping", str(pin), "--show-schedule"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("conv1 ") and "order=" in s)
    assert "m=392 n=64 k=147 order=kmn" in line and "pinned" in line
    cases = {
        "conv1: {dataflow: os, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk}": "conv1.dataflow: 'os' is not supported",
        "conv9: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk}": "no contraction kernel of that name",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mmk}": "must be a permutation",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 99, tile_k: 8, order: mnk}": "tile_n: must be between 1 and 64",
        "conv1: {dataflow: ws, tile_m: 12544, tile_n: 64, tile_k: 147, order: mnk}": "tiles do not fit",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk, tile_q: 1}": "conv1.tile_q: unknown field",
        "- 1": "expected a mapping of kernel names",
    }
    for text, expected in cases.items():
        pin.write_text(text + "\n")
        assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--mapping", str(pin)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (text, err)
