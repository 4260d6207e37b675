"""Golden numbers for presets: they change only when the model changes on purpose (update with the reason)."""
from __future__ import annotations

import pytest

from arch import load_arch
from compiler.schedule import lower
from sim import simulate
from workloads import load_workload

GOLDEN = {
    # (workload, arch): cycles, DRAM read bytes, DRAM write bytes — foundation model (naive tiling, no fusion)
    ("resnet50", "tpu-v1"): (2_510_505, 71_243_514, 37_559_784),
    ("resnet18", "edge-npu"): (3_029_270, 23_474_208, 8_230_376),
    ("bert-base", "tpu-v4"): (1_072_812, 268_617_752, 88_278_528),
}


@pytest.mark.parametrize("workload, arch_name", list(GOLDEN))
def test_golden(workload, arch_name):
    arch = load_arch(arch_name)
    r = simulate(lower(load_workload(workload, dtype=arch.array.dtype), arch), arch)
    assert (r.cycles, r.dram_read_bytes, r.dram_write_bytes) == GOLDEN[(workload, arch_name)]
