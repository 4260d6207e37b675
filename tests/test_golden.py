"""Golden numbers for presets: they change only when the model changes on purpose (update with the reason)."""
from __future__ import annotations

import pytest

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.workloads import load_workload

GOLDEN = {
    # (workload, arch, mapper, fusion): cycles, DRAM read bytes, DRAM write bytes
    ("resnet50", "tpu-v1", "naive", "none"): (2_487_835, 70_142_400, 37_559_784),
    ("resnet18", "edge-npu", "naive", "none"): (3_017_424, 22_303_424, 8_230_376),
    ("bert-base", "tpu-v4", "naive", "none"): (1_072_812, 268_617_752, 88_278_528),
    ("resnet50", "tpu-v1", "search", "none"): (2_369_101, 68_059_452, 37_559_784),
    ("resnet18", "edge-npu", "search", "none"): (2_865_221, 23_439_472, 8_230_376),
    ("bert-base", "tpu-v4", "search", "none"): (962_896, 268_617_752, 88_278_528),
    ("resnet50", "tpu-v1", "search", "epilogue"): (1_136_446, 41_711_164, 11_317_736),
    ("resnet50", "tpu-v1", "search", "full"): (665_056, 25_653_440, 1_000),
    ("resnet18", "edge-npu", "search", "epilogue"): (2_093_517, 17_875_824, 2_685_928),
    ("resnet18", "edge-npu", "search", "full"): (2_034_760, 15_474_592, 1_506_280),
    ("bert-base", "tpu-v4", "search", "epilogue"): (723_383, 228_509_720, 48_170_496),
    # 563_252 -> 458_876 cycles: pipelined fused attention pays one fill and drain per kernel, not per block product
    ("bert-base", "tpu-v4", "search", "full"): (458_876, 171_098_648, 196_608),
}


@pytest.mark.parametrize("workload, arch_name, mapper, fusion", list(GOLDEN))
def test_golden(workload, arch_name, mapper, fusion):
    arch = load_arch(arch_name)
    options = CompileOptions(mapper=mapper, fusion=fusion)
    r = simulate(lower(load_workload(workload, dtype=arch.array.dtype), arch, options), arch)
    assert (r.cycles, r.dram_read_bytes, r.dram_write_bytes) == GOLDEN[(workload, arch_name, mapper, fusion)]
