"""Mapping search: legal, deterministic, monotone in buffer size, consistent with the cost model, never worse than
naive."""
from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from archs import tiny_arch, tiny_arch_dict
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tilesim import kernel_evaluator, simulate
from tilesim.arch import InputError, arch_from_dict, load_arch
from tilesim.cli.main import main
from tilesim.compiler import mapper, sorting
from tilesim.compiler.cost import MAX_TILES, OPERAND_DIMS, Mapping, dram_traffic, reuse_reps
from tilesim.compiler.lowering import Contraction, ConvWindow
from tilesim.compiler.mapper import _ArchKey, without_capacities
from tilesim.compiler.schedule import CompileOptions, Schedule, lower
from tilesim.compiler.tiling import alignment, fits, naive_mapping
from tilesim.core.kernels.estimate import estimate_rows
from tilesim.core.kernels.jit import interpreted
from tilesim.core.kernels.rankings import first_fitting, rank_rows
from tilesim.workloads import load_workload


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
                                 np.array([m.tile_k]), m.order, hold=m.hold)
    c_s, _d_s, e_s, _, _ = one(choice.mapping)
    c_n, _d_n, e_n, _, _ = one(naive)
    obj = {"latency": (c_s[0], c_n[0]), "energy": (e_s, e_n), "edp": (c_s[0] * e_s, c_n[0] * e_n)}[objective]
    # the search treats objectives within TIE_BAND of its best as equal (then prefers less traffic)
    assert float(np.ravel(obj[0])[0]) <= float(np.ravel(obj[1])[0]) * (1 + mapper.TIE_BAND + 1e-12)


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]))
def test_bigger_buffers_never_make_the_search_worse(work, dataflow):
    estimates = [mapper.search(work, small_arch(sram, dataflow), "pipelined").cycles
                 for sram in (4096, 8192, 65536, 1 << 20)]
    assert all(b <= a * (1 + mapper.TIE_BAND) + 1e-9 for a, b in itertools.pairwise(estimates))


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
    trips = {d: -(-getattr(work, d) // s) for d, s in zip("mnk", (tm, tn, tk), strict=False)}
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
    # a search per loop nest and fused epilogue's vector ops (its KernelContext; gemmini has one core)
    distinct = {(k.work, k.epilogue.ops if k.epilogue else 0) for k in schedule.kernels if k.on_array}
    assert mapper._search_cached.cache_info().misses == len(distinct) < 54    # 54 contractions
    lower(load_workload("resnet50"), arch)                                      # a second network: all cached
    assert mapper._search_cached.cache_info().hits == len(distinct)


@pytest.mark.parametrize("preset", ["gemmini", "edge-npu"])
def test_every_resnet50_layer_simulates_no_slower_than_naive(preset):
    # no slower beyond the latency objective's tie band: ties within 1% go to less energy (issue 20); each kernel
    # as it runs, with its fused epilogue and the operands kept on chip for it
    arch = load_arch(preset)
    schedule = lower(load_workload("resnet50"), arch, evaluate=kernel_evaluator(arch, "pipelined"))
    for k in schedule.kernels:
        if not k.on_array:
            continue
        alone = lambda m, k=k: simulate(Schedule("x", arch.name, "pipelined", (replace(k, mapping=m, deps=()),)),  # noqa: E731
                                        arch).cycles
        assert alone(k.mapping) <= alone(naive_mapping(k.work, arch)) * (1 + mapper.TIE_BAND), k.name


def test_naive_mapper_is_still_available():
    arch = load_arch("edge-npu")
    s = lower(load_workload("resnet18"), arch, CompileOptions(mapper="naive"))
    assert all(k.mapping.order == "mnk" for k in s.kernels if k.on_array)


def test_show_schedule_explains_each_contraction(capsys):
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

    d = tiny_arch_dict(rows=8, cols=8, dataflow="ws", sram_bytes=65536, latency=20, bw=8)
    d["array"]["dataflows"] = ["os", "is"]
    three = arch_from_dict(d)
    c1, c3 = mapper.search(work, one, "pipelined"), mapper.search(work, three, "pipelined")
    assert c3.cycles <= c1.cycles * (1 + mapper.TIE_BAND) + 1e-9
    assert c3.mapping.dataflow in ("ws", "os", "is") and c1.mapping.dataflow == "ws"


def test_pinned_mappings_are_used_and_checked(tmp_path, capsys):
    pin = tmp_path / "pin.yaml"
    pin.write_text("conv1: {dataflow: ws, tile_m: 392, tile_n: 64, tile_k: 147, order: kmn}\n")   # fits half the SRAM
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--mapping", str(pin), "--show-schedule"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("conv1 ") and "order=" in s)
    assert "m=392 n=64 k=147 order=kmn" in line and "pinned" in line
    pin.write_text("conv1: {dataflow: ws, tile_m: 392, tile_n: 32, tile_k: 49, order: mnk, hold: true}\n")
    assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--mapping", str(pin), "--show-schedule"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("conv1 ") and "order=" in s)
    assert "m=392 n=32 k=49 order=mnk hold=input" in line and "pinned" in line
    cases = {
        "conv1: {dataflow: os, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk}": "conv1.dataflow: 'os' is not supported",
        "conv9: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk}": "no contraction kernel of that name",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mmk}": "must be a permutation",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 99, tile_k: 8, order: mnk}": "tile_n: must be between 1 and 64",
        "conv1: {dataflow: ws, tile_m: 12544, tile_n: 64, tile_k: 147, order: mnk}": "tiles do not fit",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk, tile_q: 1}": "conv1.tile_q: unknown field",
        "conv1: {dataflow: ws, tile_m: 8, tile_n: 8, tile_k: 8, order: mnk, hold: 3}": "conv1.hold: expected true",
        # held, A's tile is 8 x 147 (the whole K): with 784-row tiles that no longer fits
        "conv1: {dataflow: ws, tile_m: 6272, tile_n: 64, tile_k: 8, order: mnk, hold: true}": "tiles do not fit",
        "- 1": "expected a mapping of kernel names",
    }
    for text, expected in cases.items():
        pin.write_text(text + "\n")
        assert main(["run", "-w", "resnet18", "-a", "edge-npu", "--mapping", str(pin)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (text, err)


# ---------------------------------------------------------------- the fast search equals the direct one

def two_level_arch(spad: int, acc: int, dataflow: str = "ws", double: bool = True, latency: int = 20):
    """tiny_arch with the operands split over two levels, as Gemmini's: inputs and weights in a scratchpad,
    outputs in an accumulator."""

    d = tiny_arch_dict(rows=8, cols=8, dataflow=dataflow, sram_bytes=spad, double=double, latency=latency, bw=8)
    d["memory"][1]["holds"] = ["input", "weight"]
    d["memory"].append({"name": "acc", "kind": "sram", "capacity_bytes": acc, "bandwidth_bytes_per_cycle": 64,
                        "double_buffered": double, "holds": ["output"]})
    entry = {"pj": 1.0, "source": "test"}
    d["energy"]["actions"].update({"acc.read_byte": dict(entry), "acc.write_byte": dict(entry)})
    return arch_from_dict(d)


def direct_search(work, arch, timing: str, objective: str):
    """The mapping search as first written: every candidate of every loop order scored one order at a time
    (mapper.score), fitted to the capacities and sorted in full, with tiling.naive_mapping. The search's
    rankings, pruning and remembered footprints must choose exactly what this does (None: nothing fits)."""
    pool, candidates = [], 0
    for dataflow in mapper.dataflows(arch):
        unit = alignment(work, arch, dataflow)
        sizes = [mapper.tile_sizes(getattr(work, d), unit[d]) for d in "mnk"]
        tm, tn, tk = (g.ravel() for g in np.meshgrid(*sizes, indexing="ij"))
        candidates += int(tm.size) * mapper.ROWS
        for hold, order in itertools.product((False, True), mapper.ORDERS):
            cycles, dram, pj, fits_, n_tiles = mapper.score(work, arch, timing, dataflow, tm, tn, tk, order,
                                                            hold=hold)
            obj = {"latency": cycles, "energy": pj, "edp": cycles * pj}[objective]
            idx = np.flatnonzero(fits_ & (n_tiles <= MAX_TILES))
            if idx.size == 0:
                continue
            band = idx[obj[idx] <= obj[idx].min() * (1 + mapper.TIE_BAND)]
            picks = np.concatenate((idx[np.lexsort((idx, n_tiles[idx], dram[idx], obj[idx]))][:mapper.SHORTLIST],
                                    band[np.lexsort((band, obj[band], n_tiles[band], dram[band]))][:mapper.SHORTLIST]))
            pool += [(float(obj[i]), int(dram[i]), int(n_tiles[i]), float(cycles[i]), float(pj[i]),
                      mapper._mapping(work, dataflow, int(tm[i]), int(tn[i]), int(tk[i]),
                                      mapper.ORDERS.index(order) + hold * len(mapper.ORDERS)))
                     for i in dict.fromkeys(picks)]
    if not pool:
        return None
    pool = list({p[-1]: p for p in pool}.values())
    best = min(p[0] for p in pool) * (1 + mapper.TIE_BAND)
    key = lambda m: (m.dataflow, m.tile_m, m.tile_n, m.tile_k, mapper.ORDERS.index(m.order), m.hold)   # noqa: E731
    ranked = sorted(pool, key=lambda p: (p[0] > best, (p[1], p[2], p[0]) if p[0] <= best else (p[0], p[1], p[2]),
                                         key(p[-1])))
    pure = sorted(pool, key=lambda p: (p[0], p[1], p[2], key(p[-1])))
    mappings = [p[-1] for p in ranked]
    keep = mapper.SHORTLIST - 1

    def visits(m):      # orders differing only where one-trip loops sit visit the same tiles: the first stands
        trips = {d: -(-getattr(work, d) // m.tile(d)) for d in "mnk"}
        return (m.dataflow, m.tile_m, m.tile_n, m.tile_k, "".join(d for d in m.order if trips[d] > 1), m.held)
    first = {}
    for m in mappings:
        first.setdefault(visits(m), m)
    distinct = list(first.values())
    shortlist = tuple(dict.fromkeys([*distinct[:keep], first[visits(pure[0][-1])], *distinct[keep:]]))
    shortlist = shortlist[:mapper.SHORTLIST]
    naive = naive_mapping(work, arch)
    shortlist += () if naive in shortlist else (naive,)
    tiles = lambda m: (m.dataflow, m.tile_m, m.tile_n, m.tile_k)   # noqa: E731
    runner = next((i for i, m in enumerate(mappings) if tiles(m) != tiles(mappings[0])),
                  next((i for i, m in enumerate(mappings) if m != mappings[0]), None))
    return mapper.Choice(mapping=mappings[0], cycles=ranked[0][3], dram_bytes=ranked[0][1], energy_pj=ranked[0][4],
                         runner_up=mappings[runner] if runner is not None else None,
                         runner_up_cycles=ranked[runner][3] if runner is not None else 0.0,
                         runner_up_dram_bytes=ranked[runner][1] if runner is not None else 0,
                         candidates=candidates, shortlist=shortlist)


@settings(max_examples=60, deadline=None)
@given(works(), st.sampled_from([512, 2048, 6000, 16384, 1 << 20]), st.sampled_from([256, 1024, 8192, 1 << 20]),
       st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(), st.sampled_from(["latency", "energy", "edp"]))
def test_search_chooses_exactly_what_the_direct_search_does(work, sram, acc, dataflow, double, split, objective):
    arch = two_level_arch(sram, acc, dataflow, double) if split else small_arch(sram, dataflow, double)
    expected = direct_search(work, arch, "pipelined", objective)
    if expected is None:
        with pytest.raises(InputError):
            mapper.search(work, arch, "pipelined", objective)
    else:
        assert mapper.search(work, arch, "pipelined", objective) == expected


@settings(max_examples=60, deadline=None)
@given(works(), st.sampled_from([512, 2048, 6000, 16384, 1 << 20]), st.sampled_from([256, 1024, 8192, 1 << 20]),
       st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(), st.sampled_from(["latency", "energy", "edp"]))
def test_a_first_search_picks_from_the_scores_what_a_later_one_picks_from_the_rankings(work, sram, acc, dataflow,
                                                                                       double, split, objective):
    # a single run asks for each ranking once: it picks from the scores (partial sorts) without ranking them
    # (a sweep run in this process before keeps more and ranks at once: keep_rankings)
    arch = two_level_arch(sram, acc, dataflow, double) if split else small_arch(sram, dataflow, double)
    kept = mapper._KEEP[0]
    mapper.keep_rankings(mapper.RANKINGS_BYTES)
    mapper._RANKINGS.clear()
    mapper._search_cached.cache_clear()
    try:
        try:
            first = mapper.search(work, arch, "pipelined", objective)
        except InputError:
            first = None
        assert all("orders" not in vars(r) for r in mapper._RANKINGS.values())
        mapper._search_cached.cache_clear()
        try:
            again = mapper.search(work, arch, "pipelined", objective)
        except InputError:
            again = None
        assert all("orders" in vars(r) for r in mapper._RANKINGS.values())
        assert first == again
    finally:
        mapper.keep_rankings(kept)


@settings(max_examples=60, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(), st.sampled_from([0, 7, 20]),
       st.sampled_from([8, 6.3]), st.sampled_from([0.0, 50.0, 5000.0]), st.tuples(*[st.booleans()] * 3),
       st.sampled_from([1, 3]), st.sampled_from(["pipelined", "scalesim"]), st.integers(0, 2**32 - 1))
def test_the_compiled_estimate_scores_bit_for_bit_as_numpy(work, dataflow, double, split, latency, bw, epilogue,
                                                          kept, sharers, timing, seed):
    # sim/core/kernels/estimate.py estimate_rows, compiled and as Python, against _score_orders (numpy), every row
    d = tiny_arch_dict(rows=8, cols=8, dataflow=dataflow, sram_bytes=4096, double=double, latency=latency, bw=bw)
    d["energy"]["actions"]["dram.read_byte"]["pj"], d["energy"]["actions"]["dram.write_byte"]["pj"] = 3.7, 5.3
    d["memory"][1]["bandwidth_bytes_per_cycle"] = 37.5
    if split:
        d["memory"][1]["holds"] = ["input", "weight"]
        d["memory"].append({"name": "acc", "kind": "sram", "capacity_bytes": 4096, "bandwidth_bytes_per_cycle": 64,
                            "double_buffered": double, "holds": ["output"]})
        d["energy"]["actions"].update({f"acc.{a}_byte": {"pj": 1.0, "source": "test"} for a in ("read", "write")})
    arch = without_capacities(arch_from_dict(d))
    context = mapper.KernelContext(epilogue, sharers, 1, *kept)
    r = mapper._rank(work, _ArchKey(arch), timing, dataflow, "latency", context)
    cols = np.random.default_rng(seed).permutation(r.tm.size)[:40]
    for some in (None, cols):               # every candidate compiled; a few as Python (interpreted: slow)
        tm, tn, tk = (r.tm, r.tn, r.tk) if some is None else (r.tm[some], r.tn[some], r.tk[some])
        base = mapper._base(work, arch, timing, dataflow, tm, tn, tk, context)
        want = [np.concatenate(v) for v in zip(mapper._score_orders(work, arch, base),
                                               mapper._score_orders(work, arch, base, hold=True), strict=True)]
        if some is None:
            got = estimate_rows(*mapper.estimate_inputs(work, arch, base))
        else:
            with interpreted():
                got = estimate_rows(*mapper.estimate_inputs(work, arch, base))
        for name, a, b in zip(("cycles", "dram", "pj"), got, want, strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.sampled_from(["latency", "energy", "edp"]),
       st.sampled_from([0, 20, 400]), st.sampled_from([8, 64, 0.5]), st.sampled_from([0.0, 5000.0]),
       st.tuples(*[st.booleans()] * 3))
@example(Contraction(1, 61, 380, 328, "int8", "int8", "int8"), "ws", "edp", 400, 64, 0.0, (False,) * 3)  # band ties
def test_the_estimate_left_unworked_where_no_search_can_pick_gives_the_same_picks(work, dataflow, objective, latency,
                                                                                 bw, epilogue, kept):
    # estimate_rows given a ranking's walk leaves infinite the cycles of candidates no search can pick
    # (mapper._pickable): every other score is numpy's to the bit, and the picks at every capacity are those of
    # every candidate scored, numpy's or first_fitting's (compiled and as Python)
    d = tiny_arch_dict(rows=8, cols=8, dataflow=dataflow, sram_bytes=4096, double=True, latency=latency, bw=bw)
    d["energy"]["actions"]["dram.read_byte"]["pj"], d["energy"]["actions"]["dram.write_byte"]["pj"] = 3.7, 5.3
    arch = without_capacities(arch_from_dict(d))
    context = mapper.KernelContext(epilogue, 1, 1, *kept)
    r = mapper._rank(work, _ArchKey(arch), "pipelined", dataflow, objective, context)
    assert r.walk is not None
    base = mapper._base(work, arch, "pipelined", dataflow, r.tm, r.tn, r.tk, context)
    cycles, dram, pj = (np.concatenate(v) for v in zip(mapper._score_orders(work, arch, base),
                                                       mapper._score_orders(work, arch, base, hold=True), strict=True))
    whole = mapper._Scores(cycles, dram, pj, mapper._objective(objective, cycles, dram, pj))
    got = [estimate_rows(*mapper.estimate_inputs(work, arch, base, r))]
    if r.tm.size <= 300:                     # the same code as Python (slow): on the smaller loop nests
        with interpreted():
            got.append(estimate_rows(*mapper.estimate_inputs(work, arch, base, r)))
    for c, dr, p in got:
        assert dr.tobytes() == dram.tobytes() and p.tobytes() == pj.tobytes()
        worked = np.isfinite(c)
        assert c[worked].tobytes() == cycles[worked].tobytes() and not np.isinf(cycles).any()
        left = mapper._Scores(c, dr, p, mapper._objective(objective, c, dr, p))
        full, part = (replace(r), replace(r))
        vars(full)["scores"], vars(part)["scores"] = whole, left
        needs = np.unique(np.concatenate([np.asarray(r.need[r.level]).ravel()] + [h[1] for h in r.held]))
        for cap in np.unique(np.concatenate((needs[:: max(1, needs.size // 40)], needs[-3:], [needs[0] - 1]))):
            capped = replace(arch, memory=tuple(replace(lv, capacity_bytes=int(cap)) if lv.kind == "sram" else lv
                                                for lv in arch.memory))
            kernels = dict(mapper._KERNELS)
            try:                             # numpy's picks from every candidate scored; compiled (first_fitting)
                mapper._KERNELS["picks"] = None
                want = mapper._ranked_picks(full, capped)
                mapper._KERNELS["picks"] = first_fitting
                have = [mapper._ranked_picks(part, capped), mapper._ranked_picks(full, capped)]
                if r.tm.size <= 300:
                    with interpreted():
                        have.append(mapper._ranked_picks(part, capped))
            finally:
                mapper._KERNELS.update(kernels)
            for got_picks in have:
                assert (want is None) == (got_picks is None)
                if want is not None and got_picks is not None:
                    assert all(a.tobytes() == b.tobytes() for a, b in zip(want[:2], got_picks[:2], strict=True))
                    assert all(getattr(want[2], k).tobytes() == getattr(got_picks[2], k).tobytes()
                               for k in ("cycles", "dram", "pj", "obj"))


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.sampled_from(["latency", "energy", "edp"]),
       st.sampled_from([0, 20, 400]), st.sampled_from([8, 64, 0.5]), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 5000.0]))
@example(Contraction(1, 61, 380, 328, "int8", "int8", "int8"), "ws", "edp", 400, 64, True, False, 0.0)  # band ties
def test_a_first_search_scores_only_what_it_could_pick_and_picks_the_same(work, dataflow, objective, latency, bw,
                                                                          double, split, epilogue):
    # _direct_picks scores only the candidates whose DRAM floor leaves them a chance (_pickable_scores): at every
    # capacity its picks are those of every fitting candidate scored
    d = tiny_arch_dict(rows=8, cols=8, dataflow=dataflow, sram_bytes=4096, double=double, latency=latency, bw=bw)
    d["energy"]["actions"]["dram.read_byte"]["pj"], d["energy"]["actions"]["dram.write_byte"]["pj"] = 3.7, 5.3
    if split:
        d["memory"][1]["holds"] = ["input", "weight"]
        d["memory"].append({"name": "acc", "kind": "sram", "capacity_bytes": 4096, "bandwidth_bytes_per_cycle": 64,
                            "double_buffered": double, "holds": ["output"]})
        d["energy"]["actions"].update({f"acc.{a}_byte": {"pj": 1.0, "source": "test"} for a in ("read", "write")})
    arch = arch_from_dict(d)
    context = mapper.KernelContext(epilogue) if epilogue else mapper.PLAIN
    r = mapper._rank(work, _ArchKey(without_capacities(arch)), "pipelined", dataflow, objective, context)
    needs = np.unique(np.asarray(r.need[arch.home("input").name]).ravel())
    for cap in np.unique(np.concatenate((needs[:: max(1, needs.size // 12)], needs[-1:]))):
        capped = replace(arch, memory=tuple(replace(lv, capacity_bytes=int(cap)) if lv.kind == "sram" else lv
                                            for lv in arch.memory))
        fits = mapper._ranking_fits(r, capped) & r.eligible
        if not fits[0].any():
            assert mapper._direct_picks(r, capped) is None
            continue
        every = np.flatnonzero(fits.any(axis=0))
        want = mapper._picks_of(r, fits, every, mapper._scores(r, every))
        got = mapper._direct_picks(r, capped)
        assert got is not None
        assert all(a.tobytes() == b.tobytes() for a, b in zip(want[:2], got[:2], strict=True))
        assert all(getattr(want[2], k).tobytes() == getattr(got[2], k).tobytes() for k in ("cycles", "dram", "pj"))


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_the_compiled_rankings_are_numpys(work, dataflow, split, ties, seed):
    # sim/core/kernels/rankings.py rank_rows, compiled and as Python, against _ranked_lists: with one level holding
    # every operand (the pickable candidates) or two (every eligible one); the real scores, or a few values that
    # tie everywhere, so that every key and the index decide somewhere
    arch = two_level_arch(4096, 4096, dataflow) if split else small_arch(4096, dataflow)
    r = mapper._rank(work, _ArchKey(without_capacities(arch)), "pipelined", dataflow, "latency")
    if ties:
        rng = np.random.default_rng(seed)
        obj = rng.integers(0, 4, (mapper.ROWS, r.tm.size)).astype(np.float64)
        vars(r)["scores"] = mapper._Scores(obj, rng.integers(0, 3, obj.shape), obj, obj)
    walk = r.walk
    want = mapper._ranked_lists(r, walk)
    every = np.tile(np.arange(r.tm.size), (mapper.ROWS, 1)) if walk is None else walk
    args = (r.eligible, every, r.scores.obj, r.scores.dram, r.n_tiles, walk is not None, mapper.SHORTLIST,
            1 + mapper.TIE_BAND)
    results = [rank_rows(*args)]
    if r.tm.size <= 1000:                    # the same code as Python (slow): on the smaller loop nests
        with interpreted():
            results.append(rank_rows(*args))
    for got in results:
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 50.0, 5000.0]), st.sampled_from(["latency", "energy", "edp"]), st.integers(0, 2**32 - 1))
def test_a_subset_of_candidates_scores_bit_for_bit_as_in_the_whole(work, dataflow, double, split, epilogue,
                                                                  objective, seed):
    # a first search scores only the candidates that fit: each score must be the candidate's own
    arch = two_level_arch(4096, 4096, dataflow, double) if split else small_arch(4096, dataflow, double)
    context = mapper.KernelContext(epilogue) if epilogue else mapper.PLAIN
    r = mapper._rank(work, _ArchKey(without_capacities(arch)), "pipelined", dataflow, objective, context)
    rng = np.random.default_rng(seed)
    kernels = dict(mapper._KERNELS)
    mapper.search_with(None, None)              # numpy's (the compiled estimate may leave some of all unworked)
    try:
        whole = mapper._scores(r, None)
        # a random subset, and the candidates whose tiles drain within their compute (the others' epilogue ends
        # later)
        extra = np.broadcast_to(mapper._base(work, arch, "pipelined", dataflow, r.tm, r.tn, r.tk,
                                             context).drain_extra, r.tm.shape)
        for cols in (np.flatnonzero(rng.random(r.tm.size) < rng.random()), np.flatnonzero(extra == 0)):
            part = mapper._scores(r, cols)
            for name in ("cycles", "dram", "pj", "obj"):
                assert getattr(part, name).tobytes() == getattr(whole, name)[:, cols].tobytes(), name
    finally:
        mapper._KERNELS.update(kernels)


def test_search_over_several_dataflows_chooses_what_the_direct_search_does():

    d = tiny_arch_dict(rows=8, cols=8, dataflow="ws", sram_bytes=16384, latency=20, bw=8)
    d["array"]["dataflows"] = ["os", "is"]
    arch = arch_from_dict(d)
    for work in (Contraction(1, 300, 70, 90, "int8", "int8", "int8"),
                 Contraction(2, 49, 512, 4608, "int8", "int8", "int8")):
        for objective in ("latency", "edp"):
            assert mapper.search(work, arch, "pipelined", objective) == direct_search(work, arch, "pipelined",
                                                                                        objective)


@settings(max_examples=60, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([0, 20]), st.sampled_from([1, 8, 64]))
def test_all_loop_orders_at_once_equal_one_order_at_a_time_bit_for_bit(work, dataflow, double, split, energy_table,
                                                                        latency, bw):

    arch = two_level_arch(4096, 4096, dataflow, double, latency) if split else tiny_arch(
        rows=8, cols=8, dataflow=dataflow, sram_bytes=4096, double=double, latency=latency, bw=bw)
    if not energy_table:        # no DRAM energy entries: traffic stands in for energy
        d = tiny_arch_dict(rows=8, cols=8, dataflow=dataflow, sram_bytes=4096, double=double, latency=latency, bw=bw)
        d["energy"]["actions"] = {a: v for a, v in d["energy"]["actions"].items() if not a.startswith("dram.")}
        arch = arch_from_dict(d)
    unit = alignment(work, arch, dataflow)
    sizes = [mapper.tile_sizes(getattr(work, d), unit[d]) for d in "mnk"]
    tm, tn, tk = (g.ravel() for g in np.meshgrid(*sizes, indexing="ij"))
    base = mapper._base(work, arch, "pipelined", dataflow, tm, tn, tk)
    cycles, dram, pj = mapper._score_orders(work, arch, base)
    for row, order in enumerate(mapper.ORDERS):
        c, d_, p, _, _ = mapper._score_order(work, arch, base, order)
        assert cycles[row].tobytes() == c.tobytes() and dram[row].tobytes() == d_.tobytes()
        assert pj[row].tobytes() == np.broadcast_to(p, c.shape).astype(np.float64).tobytes()


@settings(max_examples=80, deadline=None)
@given(works(), st.sampled_from([64, 300, 2048, 5000, 16384]), st.sampled_from([64, 512, 4096, 1 << 20]),
       st.sampled_from(["ws", "os", "is"]), st.booleans(), st.booleans())
def test_remembered_naive_tiling_equals_the_tilers(work, sram, acc, dataflow, double, split):
    arch = two_level_arch(sram, acc, dataflow, double) if split else small_arch(sram, dataflow, double)
    try:
        expected = naive_mapping(work, arch, name="conv1")
    except InputError as e:             # the same error, naming the op and the level
        with pytest.raises(InputError, match=__import__("re").escape(str(e))):
            mapper.naive(work, arch, name="conv1")
        return
    assert mapper.naive(work, arch, name="conv1") == expected


@pytest.mark.parametrize("split", [False, True])
def test_search_over_a_range_of_buffer_sizes_chooses_what_the_direct_search_does(split):
    """Sweeps reuse one ranking over many capacities: each must pick what the direct search picks."""
    window = ConvWindow(out_w=28, stride_h=1, span_h=3, in_h=30, in_w=30, window=9)
    layers = (Contraction(1, 784, 128, 1152, "int8", "int8", "int8", window=window),
              Contraction(1, 196, 1024, 256, "int8", "int8", "int8"),
              Contraction(1, 1, 1000, 2048, "int8", "int8", "int8"))
    for work in layers:
        for kib in (3, 5, 8, 12, 20, 32, 48, 80, 128, 200, 320, 512, 800, 1280, 2048):
            arch = two_level_arch(kib * 1024, kib * 512) if split else small_arch(kib * 1024)
            assert mapper.search(work, arch, "pipelined") == direct_search(work, arch, "pipelined", "latency"), kib


@pytest.mark.parametrize("objective", ["latency", "edp"])
def test_report_header_names_the_objective(objective, capsys):
    main(["run", "-w", "gemm:64,64,64", "-a", "edge-npu", "--objective", objective])
    assert capsys.readouterr().out.splitlines()[0].endswith(f", objective {objective})")


KEY = st.one_of(st.lists(st.integers(0, 4), min_size=12, max_size=12).map(np.array),
                st.lists(st.sampled_from([0.5, 1.0, 1.5, np.inf, -np.inf, np.nan]), min_size=12, max_size=12)
                .map(np.array),
                st.lists(st.floats(allow_nan=False), min_size=12, max_size=12).map(np.array))


@settings(max_examples=300, deadline=None)
@given(st.lists(KEY, min_size=1, max_size=4), st.lists(st.integers(0, 3), min_size=12, max_size=12).map(np.array))
def test_the_rankings_sort_is_numpys_lexsort(keys, extra):
    """compiler.sorting (the search's rankings): the same permutations as np.lexsort, ties and NaNs included."""
    assert (sorting.lexsort(keys) == np.lexsort(keys)).all()
    assert (sorting.then_by(np.lexsort(keys), extra) == np.lexsort((*keys, extra))).all()


@settings(max_examples=40, deadline=None)
@given(works(), st.sampled_from(["ws", "os", "is"]), st.integers(1, 10**6))
def test_a_fused_epilogue_floors_the_estimate_and_only_raises_it(work, dataflow, epilogue_cycles):
    # issue 21 (long profile case 903): the estimate floors each draining tile at its share of the epilogue's
    # vector cycles, as sim/core/commands.py does; so no tiling is estimated below the epilogue's cycles, and a
    # tiling's estimate never drops because an epilogue was added
    # (per tiling: the search's choice within its 1% tie band may move to a tiling estimated lower)
    arch = small_arch(1 << 20, dataflow)
    plain = mapper.search(work, arch, "pipelined")
    fused = mapper.search(work, arch, "pipelined", context=mapper.KernelContext(epilogue_cycles))
    assert fused.cycles >= epilogue_cycles
    for m in {*plain.shortlist, *fused.shortlist}:
        one = np.array([1])
        tiles = (m.dataflow, one * m.tile_m, one * m.tile_n, one * m.tile_k, m.order)
        with_epilogue = mapper.score(work, arch, "pipelined", *tiles, mapper.KernelContext(epilogue_cycles),
                                     hold=m.hold)[0][0]
        assert with_epilogue >= epilogue_cycles
        assert with_epilogue >= mapper.score(work, arch, "pipelined", *tiles, hold=m.hold)[0][0] * (1 - 1e-12), m


def test_rankings_kept_are_bounded_and_an_evicted_one_comes_back_the_same():
    # a single run never asks for a ranking twice (ResNet-50 on tpu-v1: 75 rankings, 0 reused), and kept, llama3-8b's
    # took 180 MB; a sweep keeps more (keep_rankings), for archs that differ only in buffer sizes
    arch = load_arch("edge-npu")
    works = [Contraction(1, 3136, 64, 576, "int8", "int8", "int8"),
             Contraction(1, 784, 128, 1152, "int8", "int8", "int8")]
    first = [mapper.search(w, arch, "pipelined") for w in works]
    one = list(mapper._RANKINGS.values())[-1].nbytes
    mapper.keep_rankings(one)            # room for about one
    try:
        for w in works * 2:
            mapper._search_cached.cache_clear()
            mapper.search(w, arch, "pipelined")
            assert len(mapper._RANKINGS) == 1 or sum(r.nbytes for r in mapper._RANKINGS.values()) <= one
        mapper._search_cached.cache_clear()
        assert [mapper.search(w, arch, "pipelined") for w in works] == first
    finally:
        mapper.keep_rankings(mapper.RANKINGS_BYTES)


def test_rankings_are_shared_safely_between_threads():
    # a Dask worker may run a sweep's points in threads: the kept rankings are one dict, evicted as they go
    arch = load_arch("edge-npu")
    works = [Contraction(1, m, 64, 576, "int8", "int8", "int8") for m in (196, 392, 784, 1568, 3136, 6272)]
    alone = [mapper.search(w, arch, "pipelined").mapping for w in works]
    mapper._search_cached.cache_clear()
    mapper.keep_rankings(1)              # every insertion evicts
    try:
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda w: mapper.search(w, arch, "pipelined").mapping, works * 3))
    finally:
        mapper.keep_rankings(mapper.RANKINGS_BYTES)
    assert together == alone * 3
