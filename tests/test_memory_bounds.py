"""Peak memory stays bounded (issue 21): kept tile commands and pipelines by entries, tile programs by their
estimated bytes (benchmarks/peak_memory.py measures whole runs: resnet50 at batch 100,000 on edge-npu took 18 GB
and 96 s before it was refused; now 0.86 GB and 8 s)."""
from __future__ import annotations

import pytest

import tilesim.core.commands as commands
import tilesim.core.simulate as simulate_module
from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.compiler.cost import Mapping
from tilesim.compiler.schedule import CompileOptions, lower, pick
from tilesim.core.commands import build_program
from tilesim.core.simulate import kernel_evaluator, simulate
from tilesim.workloads import load_workload


def test_a_shared_commands_memo_keeps_at_most_its_entries(monkeypatch):
    # the memo a search shares with the run grew with every candidate it simulated: 18 GB of commands for resnet50
    # at batch 100,000
    arch = load_arch("edge-npu")
    schedule = lower(load_workload("resnet18"), arch, CompileOptions(fusion="none"))
    whole: dict = {}
    build_program(schedule, arch, memo=whole)
    sizes = sorted(c.compute.shape[0] for c in whole.values())
    bound = sum(sizes[-3:])
    monkeypatch.setattr(commands, "MEMO_ENTRIES", bound)
    memo: dict = {}
    prog = build_program(schedule, arch, memo=memo)
    assert sum(c.compute.shape[0] for c in memo.values()) <= bound < sum(sizes)
    assert simulate(schedule, arch).cycles == simulate(schedule, arch, memo={}).cycles       # same program
    assert prog.first_run[-1] == build_program(schedule, arch).first_run[-1]


def test_an_evaluator_keeps_pipelines_of_at_most_its_entries(monkeypatch):
    arch = load_arch("edge-npu")
    schedule = lower(load_workload("resnet18"), arch, CompileOptions(fusion="none"))
    monkeypatch.setattr(simulate_module, "PIPED_ENTRIES", 1)
    evaluate = kernel_evaluator(arch, "pipelined")
    for k in schedule.kernels[:6]:
        evaluate(k)
    assert len(evaluate.piped) == 1                      # the latest only


def test_a_program_past_the_memory_limit_is_refused_in_one_line(monkeypatch):
    arch = load_arch("edge-npu")
    schedule = lower(load_workload("resnet18"), arch, CompileOptions(fusion="none"))
    monkeypatch.setattr(simulate_module, "MAX_PROGRAM_BYTES", 1000)
    with pytest.raises(InputError, match=r"would take ~0 MB, more than the simulator's limit of 0 MB") as e:
        simulate(schedule, arch)
    assert "\n" not in str(e.value)


def test_pick_leaves_out_candidates_the_simulator_refuses():
    shortlist = (Mapping("ws", 8, 8, 8), Mapping("ws", 16, 16, 16), Mapping("ws", 32, 32, 32))

    def evaluate(m):
        if m.tile_m == 16:
            raise InputError("too big")
        return float(m.tile_m)
    assert pick(shortlist, lambda m: m, evaluate, "latency") == shortlist[0]
    assert pick(shortlist[1:], lambda m: m, evaluate, "energy") == shortlist[2]
    with pytest.raises(InputError, match="too big"):
        pick(shortlist[1:2], lambda m: m, evaluate, "latency")
