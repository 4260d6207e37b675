"""Golden numbers for presets: they change only when the model changes on purpose (update with the reason)."""
from __future__ import annotations

import pytest

from arch import load_arch
from compiler.schedule import CompileOptions, lower
from sim import simulate
from workloads import load_workload

GOLDEN = {
    # (workload, arch, mapper, fusion): cycles, DRAM read bytes, DRAM write bytes
    ("resnet50", "tpu-v1", "naive", "none"): (2_510_505, 71_243_514, 37_559_784),
    ("resnet18", "edge-npu", "naive", "none"): (3_029_270, 23_474_208, 8_230_376),
    ("bert-base", "tpu-v4", "naive", "none"): (1_072_812, 268_617_752, 88_278_528),
    ("resnet50", "tpu-v1", "search", "none"): (2_373_911, 68_316_078, 37_559_784),
    ("resnet18", "edge-npu", "search", "none"): (2_870_860, 23_675_914, 8_230_376),
    ("bert-base", "tpu-v4", "search", "none"): (962_896, 268_617_752, 88_278_528),
    ("resnet50", "tpu-v1", "search", "epilogue"): (1_141_256, 41_967_790, 11_317_736),
    ("resnet50", "tpu-v1", "search", "full"): (1_141_256, 41_967_790, 11_317_736),
    ("resnet18", "edge-npu", "search", "epilogue"): (2_099_244, 18_112_266, 2_685_928),
    ("resnet18", "edge-npu", "search", "full"): (2_099_244, 18_112_266, 2_685_928),
    ("bert-base", "tpu-v4", "search", "epilogue"): (723_383, 228_509_720, 48_170_496),
    ("bert-base", "tpu-v4", "search", "full"): (689_428, 209_240_600, 28_901_376),
}


@pytest.mark.parametrize("workload, arch_name, mapper, fusion", list(GOLDEN))
def test_golden(workload, arch_name, mapper, fusion):
    arch = load_arch(arch_name)
    options = CompileOptions(mapper=mapper, fusion=fusion)
    r = simulate(lower(load_workload(workload, dtype=arch.array.dtype), arch, options), arch)
    assert (r.cycles, r.dram_read_bytes, r.dram_write_bytes) == GOLDEN[(workload, arch_name, mapper, fusion)]
