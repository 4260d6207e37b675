"""Golden numbers for presets: they change only when the model changes on purpose (update with the reason)."""
from __future__ import annotations

import pytest

from arch import load_arch
from compiler.schedule import CompileOptions, lower
from sim import simulate
from workloads import load_workload

GOLDEN = {
    # (workload, arch, mapper): cycles, DRAM read bytes, DRAM write bytes (no fusion)
    ("resnet50", "tpu-v1", "naive"): (2_510_505, 71_243_514, 37_559_784),
    ("resnet18", "edge-npu", "naive"): (3_029_270, 23_474_208, 8_230_376),
    ("bert-base", "tpu-v4", "naive"): (1_072_812, 268_617_752, 88_278_528),
    ("resnet50", "tpu-v1", "search"): (2_373_911, 68_316_078, 37_559_784),
    ("resnet18", "edge-npu", "search"): (2_870_860, 23_675_914, 8_230_376),
    ("bert-base", "tpu-v4", "search"): (962_896, 268_617_752, 88_278_528),
}


@pytest.mark.parametrize("workload, arch_name, mapper", list(GOLDEN))
def test_golden(workload, arch_name, mapper):
    arch = load_arch(arch_name)
    r = simulate(lower(load_workload(workload, dtype=arch.array.dtype), arch, CompileOptions(mapper=mapper)), arch)
    assert (r.cycles, r.dram_read_bytes, r.dram_write_bytes) == GOLDEN[(workload, arch_name, mapper)]
