"""A tile program stored by blocks (issue 22): kernels with the same tile commands (repeated layers) share one
block of entries. The pipeline over blocks (run_program) equals the tile-by-tile pipeline bit for bit, the program
holds each distinct kernel's entries once, and simulate over blocks equals the Python tile-by-tile reference on
random archs with repeated layers."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invariants import random_arch_dict, workload_graph
from test_tile_classes import tile_by_tile

import tilesim.core.commands as commands
import tilesim.core.simulate as simulate_module
from tilesim.arch import arch_from_dict, load_arch
from tilesim.arch.errors import InputError
from tilesim.compiler.schedule import lower
from tilesim.core.commands import build_program, repeat_groups
from tilesim.core.kernels.jit import interpreted
from tilesim.core.kernels.pipeline import run_program, run_program_py
from tilesim.core.simulate import level_needs, restretched, simulate
from tilesim.workloads import load_workload

NO_LAYERS = np.zeros((0, 6), dtype=np.int64)


@st.composite
def block_programs(draw):
    """1-3 blocks of runs (each: a few runs, a pattern repeated 1-40 times, a few more; whole- or quarter-cycle
    times) and 1-7 kernels each using one block, with its own engine, slots and dependency."""
    times = st.integers(0, 120).map(lambda x: x / 4)
    run = lambda: (draw(st.integers(1, 6)), draw(times), draw(times), float(draw(st.integers(0, 40))))  # noqa: E731
    rows, block_run, block_groups = [], [0], []
    for _ in range(draw(st.integers(1, 3))):
        rows += [run() for _ in range(draw(st.integers(0, 3)))]
        pattern = [run() for _ in range(draw(st.integers(1, 4)))]
        reps = draw(st.integers(1, 40))
        block_groups.append((len(rows) - block_run[-1], len(pattern), reps))
        rows += pattern * reps + [run() for _ in range(draw(st.integers(0, 3)))]
        block_run.append(len(rows))
    count, load, store, compute = (np.array(c) for c in zip(*rows, strict=True))
    kernels = draw(st.integers(1, 7))
    block = np.array([draw(st.integers(0, len(block_run) - 2)) for _ in range(kernels)], dtype=np.int64)
    engine = np.array([draw(st.integers(0, 1)) for _ in range(kernels)], dtype=np.int64)
    slots = np.array([draw(st.integers(1, 2)) for _ in range(kernels)], dtype=np.int64)
    dep = np.array([draw(st.integers(-1, j - 1)) if j else -1 for j in range(kernels)], dtype=np.int64)
    first_entry = np.array(block_run)[block]
    entries = np.diff(block_run)[block]
    starts = np.concatenate(([0], np.cumsum(entries)))
    groups = np.array([(starts[j] + block_groups[b][0], *block_groups[b][1:]) for j, b in enumerate(block.tolist())],
                      dtype=np.int64).reshape(-1, 3)
    latency = draw(st.sampled_from([0.0, 3.0, 17.5]))
    return (count.astype(np.int64), load.astype(float), store.astype(float), compute.astype(float), first_entry,
            entries, engine, slots, dep, latency), groups


def flat(prog):
    """The block program written out one run per kernel entry (run_classes' arguments)."""
    count, load, store, compute, first_entry, entries, engine, slots, dep, latency = prog
    at = np.concatenate([np.arange(a, a + n) for a, n in zip(first_entry, entries, strict=True)])
    kernel = np.repeat(np.arange(first_entry.shape[0]), entries)
    return (count[at], load[at], store[at], compute[at], engine[kernel], slots[kernel], dep[kernel], kernel,
            first_entry.shape[0], latency)


@settings(max_examples=300, deadline=None)
@given(block_programs())
def test_block_programs_equal_tile_by_tile_bit_for_bit(case):
    prog, groups = case
    end, waits, stepped = run_program(*prog, groups[:, 0].copy(), groups[:, 1].copy(), groups[:, 2].copy(), NO_LAYERS)
    ref_end, ref_waits, tiles = tile_by_tile(flat(prog))
    np.testing.assert_array_equal(end, ref_end)
    np.testing.assert_array_equal(waits, ref_waits)
    py_end, py_waits, _ = run_program_py(*prog, groups[:, 0], groups[:, 1], groups[:, 2], NO_LAYERS)
    np.testing.assert_array_equal(py_end, ref_end)
    np.testing.assert_array_equal(py_waits, ref_waits)
    assert stepped <= 2 * tiles
    with interpreted():                     # the same kernel code run as Python
        slow = run_program(*prog, groups[:, 0].copy(), groups[:, 1].copy(), groups[:, 2].copy(), NO_LAYERS)
    np.testing.assert_array_equal(slow[0], end)
    np.testing.assert_array_equal(slow[1], waits)


@st.composite
def layered_programs(draw):
    """A program of 0-2 kernels, a layer of 1-5 kernels repeated 3-30 times, and 0-2 kernels: 1-2 blocks of a few
    runs each (whole- or quarter-cycle times); in the layer, each kernel's dependency at most one layer back (or
    none), as kernel_groups requires; its row of the kernel-group hint."""
    times = st.integers(0, 80).map(lambda x: x / 4)
    run = lambda: (draw(st.integers(1, 9)), draw(times), draw(times), float(draw(st.integers(0, 30))))  # noqa: E731
    rows, block_run = [], [0]
    for _ in range(draw(st.integers(1, 2))):
        rows += [run() for _ in range(draw(st.integers(1, 4)))]
        block_run.append(len(rows))
    count, load, store, compute = (np.array(c) for c in zip(*rows, strict=True))
    blocks = len(block_run) - 1
    kernel = lambda: (draw(st.integers(0, blocks - 1)), draw(st.integers(0, 1)), draw(st.integers(1, 2)))  # noqa: E731
    head, p, layers, tail = draw(st.integers(0, 2)), draw(st.integers(1, 5)), draw(st.integers(3, 30)), \
        draw(st.integers(0, 2))
    layer = [kernel() for _ in range(p)]
    back = [draw(st.integers(0, min(p, head + i))) for i in range(p)]      # 0: no dependency
    ks = [kernel() for _ in range(head)] + layer * layers + [kernel() for _ in range(tail)]
    n = len(ks)
    dep = [draw(st.integers(-1, j - 1)) if j else -1 for j in range(head)]
    dep += [head + r * p + i - back[i] if back[i] else -1 for r in range(layers) for i in range(p)]
    dep += [draw(st.integers(-1, j - 1)) for j in range(head + p * layers, n)]
    block = np.array([k[0] for k in ks], dtype=np.int64)
    first_entry, entries = np.array(block_run)[block], np.diff(block_run)[block]
    prog = (count.astype(np.int64), load.astype(float), store.astype(float), compute.astype(float), first_entry,
            entries, np.array([k[1] for k in ks], dtype=np.int64), np.array([k[2] for k in ks], dtype=np.int64),
            np.array(dep, dtype=np.int64), draw(st.sampled_from([0.0, 3.0, 17.5])))
    runs_p = int(entries[head:head + p].sum())
    tiles = [count[a:a + e].sum() for a, e in zip(first_entry, entries, strict=True)]
    tile_of = np.concatenate(([0], np.cumsum(tiles)))
    row = np.array([[head, p, layers, runs_p, int(tile_of[head + p] - tile_of[head]), int(tile_of[head])]],
                   dtype=np.int64)
    return prog, row


@settings(max_examples=400, deadline=None)
@given(layered_programs())
def test_repeated_layers_jumped_equal_tile_by_tile_bit_for_bit(case):
    # the kernel-group hint (layers whose state repeats are jumped) changes nothing: every kernel's end and stall
    # cycles as tile by tile, compiled and interpreted
    prog, row = case
    none = np.zeros(0, dtype=np.int64)
    end, waits, _ = run_program(*prog, none, none, none, row)
    ref_end, ref_waits, _ = tile_by_tile(flat(prog))
    np.testing.assert_array_equal(end, ref_end)
    np.testing.assert_array_equal(waits, ref_waits)
    with interpreted():
        slow = run_program(*prog, none, none, none, row)
    np.testing.assert_array_equal(slow[0], end)
    np.testing.assert_array_equal(slow[1], waits)


@pytest.mark.parametrize(("name", "options", "arch_name", "stretches"), [
    ("llama3-8b", {"phase": "prefill", "seq_len": 512, "layers": 8}, "h100", [(0, 8)]),
    ("deepseek-v3", {"phase": "decode", "context": 256, "layers": 8}, "h200", [(0, 3), (3, 5)]),  # dense, then MoE
])
def test_repeated_layers_are_found_and_jumped(name, options, arch_name, stretches):
    # kernel_groups finds each stretch of repeated layers (its first layer, layers); the pipeline then steps
    # through a few layers of each, not all, and gives the same ends and stalls as without the hint
    arch = load_arch(arch_name)
    schedule = lower(workload_graph(name, options), arch)
    prog = simulate_module.on_grid(build_program(schedule, arch))     # transfer times on the pipeline's grid
    found = commands.kernel_groups(prog)
    names = [k.name for k in schedule.kernels]
    assert [(int(names[f].split(".")[0][5:]), n) for f, _, n, *_ in found.tolist()] == stretches
    for first, p, _, runs, tiles, tile0 in found.tolist():
        assert names[first + p].startswith(f"layer{int(names[first].split('.')[0][5:]) + 1}.")
        assert runs == int(prog.first_run[first + p] - prog.first_run[first])
        assert tiles == int(prog.first_tile[first + p] - prog.first_tile[first]) and tile0 == prog.first_tile[first]
    groups = repeat_groups(prog)
    args = (prog.count, prog.load_xfer, prog.store_xfer, prog.compute, prog.block_run[prog.block],
            np.diff(prog.first_run), prog.engine, prog.slots, prog.dep, float(arch.offchip.latency_cycles),
            groups[:, 0].copy(), groups[:, 1].copy(), groups[:, 2].copy())
    end, waits, stepped = run_program(*args, found)
    plain_end, plain_waits, plain_stepped = run_program(*args, NO_LAYERS)
    np.testing.assert_array_equal(end, plain_end)
    np.testing.assert_array_equal(waits, plain_waits)
    assert stepped < plain_stepped * 0.75


def test_layers_are_jumped_only_on_the_time_grid():
    # regression: on this random arch gpt2's level-bound kernels were stretched off the 1/1024-cycle grid; two layer
    # ends agreed while the absolute times had rounded apart, and a jumped layer ended a cycle early. Stretched
    # compute is now on the grid, the layers are jumped, and the run equals the tile-by-tile reference; a program
    # off the grid gets no kernel groups
    arch = arch_from_dict(random_arch_dict(random.Random(1000)))
    schedule = lower(workload_graph("gpt2", {"seq_len": 32, "layers": 6}), arch)
    prog, _ = simulate_module._bound_program(schedule, arch, None, {})
    assert commands.kernel_groups(prog).shape[0] == 1
    assert commands.kernel_groups(replace(prog, compute=prog.compute + 1 / 3)).shape[0] == 0
    assert simulate(schedule, arch).to_dict() == simulate(schedule, arch, reference=True).to_dict()


def test_stretched_kernels_stay_on_the_time_grid():
    # regression: on this random arch resnet18's conv1 is stretched to its on-chip level's need by a ratio that put
    # its tile times off the 1/1024-cycle grid; its repeated runs were jumped with sums rounded apart from the tiles'
    # and it ended a cycle early. Stretched compute is rounded up onto the grid, and the run equals the reference
    arch = arch_from_dict(random_arch_dict(random.Random(1062)))
    schedule = lower(workload_graph("resnet18", {}), arch)
    prog, _ = simulate_module._bound_program(schedule, arch, None, {})
    assert np.array_equal(prog.compute * 1024, np.floor(prog.compute * 1024))
    plain = simulate_module.on_grid(build_program(schedule, arch))
    assert not np.array_equal(prog.compute, plain.compute.astype(np.float64))     # a kernel was stretched
    assert simulate(schedule, arch).to_dict() == simulate(schedule, arch, reference=True).to_dict()


def test_repeated_layers_share_one_block():
    # gpt2 prefill: 12 identical layers; the program holds one layer's kernels' entries (plus the embedding and the
    # head), and each kernel's entries and repeat groups stand at its own place in the whole program
    arch = load_arch("tpu-v1")
    schedule = lower(load_workload("gpt2", seq_len=128), arch)
    prog = build_program(schedule, arch)
    kernels = len(schedule.kernels)
    assert prog.block.shape[0] == kernels and prog.block_run.shape[0] - 1 < kernels / 6
    # the entries are at most the whole program's runs less 11 of the 12 layers' (was "< runs / 6": with fewer runs
    # a layer, the embedding and head's share grew past that proxy)
    layer_runs = sum(int(prog.first_run[j + 1] - prog.first_run[j]) for j, k in enumerate(schedule.kernels)
                     if k.name.startswith("layer1."))
    assert layer_runs > 0 and prog.count.shape[0] <= int(prog.first_run[-1]) - 11 * layer_runs
    for j, cmds in enumerate(prog.per_kernel):
        at = prog.entries(j)
        assert int(prog.first_run[j + 1] - prog.first_run[j]) == at.stop - at.start
        assert int((prog.count[at]).sum()) == cmds.tiles == int(prog.first_tile[j + 1] - prog.first_tile[j])
    groups = repeat_groups(prog)
    index = prog.flat_index()
    for first, period, reps in groups.tolist():
        j = int(np.searchsorted(prog.first_run, first, side="right")) - 1
        assert first + period * reps <= prog.first_run[j + 1]
        span = prog.compute[index[first:first + period * reps]].reshape(reps, period)
        assert (span == span[0]).all()


def test_a_block_whose_kernels_stretch_differently_is_copied():
    # two kernels sharing a block, only the second stretched by level_bound: the first keeps the original compute,
    # the second gets its own copy of the block with the stretched compute; every other per-entry array is unchanged
    arch = load_arch("tpu-v1")
    schedule = lower(load_workload("gpt2", seq_len=128), arch)
    prog = build_program(schedule, arch)
    j0, j1 = (int(j) for j in np.flatnonzero(prog.block == np.bincount(prog.block).argmax())[:2])
    b = int(prog.block[j0])
    needs = level_needs(prog, schedule, arch).copy()
    needs[j1] = needs[j0] + 12345
    at = prog.entries(j1)
    stretched = prog.compute[at] * 2.0
    out = restretched(prog, needs, {(b, int(needs[j1])): stretched})
    assert out.block[j0] == b and out.block[j1] == out.block_run.shape[0] - 2
    np.testing.assert_array_equal(out.compute[out.entries(j0)], prog.compute[at])
    np.testing.assert_array_equal(out.compute[out.entries(j1)], stretched)
    for field in ("count", "load_xfer", "store_xfer", "flash_xfer"):
        for j in range(len(schedule.kernels)):
            np.testing.assert_array_equal(getattr(out, field)[out.entries(j)], getattr(prog, field)[prog.entries(j)])


@pytest.mark.parametrize("seed", range(24))
def test_blocks_equal_the_tile_by_tile_reference_on_random_archs(seed):
    # 2- to 6-layer decoders (prefill and decode) and resnet18 on random archs: repeated layers share blocks (and,
    # from 4 layers on, may be jumped), and the result equals the Python tile-by-tile reference's (every kernel's
    # numbers; seed 21 finds a kernel stretched off the time grid ending a cycle early without the grid rounding)
    rng = random.Random(seed)
    arch = arch_from_dict(random_arch_dict(rng))
    name, options = rng.choice([("gpt2", {"seq_len": 32, "layers": 3}), ("gpt2", {"phase": "decode", "context": 64,
                                                                                  "layers": 2}),
                                ("resnet18", {}), ("gpt2", {"seq_len": 32, "layers": 6}),
                                ("gpt2", {"phase": "decode", "context": 64, "layers": 5})])
    try:
        schedule = lower(workload_graph(name, options), arch)
        fast = simulate(schedule, arch)
    except InputError:
        pytest.skip("the arch cannot hold the workload (a one-line error)")
    if fast.macs * 1.0 > 5e9 and sum(k.tiles for k in fast.kernels) > 200_000:
        pytest.skip("too many tiles for the Python reference")
    assert fast.to_dict() == simulate(schedule, arch, reference=True).to_dict()


def test_commands_are_kept_per_arch_and_built_again_for_another(monkeypatch):
    # a second run on the same arch builds no tile commands; an arch differing in one field (its name) builds its
    # own; the results are those of fresh builds
    built = []
    real = commands.kernel_runs
    monkeypatch.setattr(commands, "kernel_runs", lambda *a, **k: built.append(1) or real(*a, **k))
    monkeypatch.setattr(simulate_module, "_COMMANDS", {})
    arch = load_arch("tpu-v1")
    schedule = lower(load_workload("resnet18"), arch)
    first = simulate(schedule, arch)
    assert built
    built.clear()
    assert simulate(schedule, arch).to_dict() == first.to_dict() and not built
    other = replace(arch, name="tpu-v1b")
    simulate(lower(load_workload("resnet18"), other), other)
    assert built
    fresh = simulate(schedule, arch, memo={})
    assert fresh.to_dict() == first.to_dict()
