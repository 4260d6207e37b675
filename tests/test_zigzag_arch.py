"""ZigZag 3.9.1's tpu_like copied into a tilesim arch (benchmarks/data/zigzag_tpu_like.yaml): the numbers as ZigZag
gives them, and the DRAM traffic its LOMA mapper finds on ResNet-18's layers (docs/zigzag-comparison.md).
ZigZag itself is not needed: benchmarks/zigzag_crosscheck.py runs it by hand."""
from __future__ import annotations

from pathlib import Path

import pytest

from tilesim import kernel_evaluator, simulate
from tilesim.arch import load_arch
from tilesim.compiler import GraphBuilder
from tilesim.compiler.schedule import CompileOptions, lower

ARCH = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "zigzag_tpu_like.yaml"


def test_tpu_like_arch_has_zigzags_sizes_and_per_bit_energies():
    arch = load_arch(str(ARCH))
    assert (arch.array.rows, arch.array.cols, arch.array.dataflow) == (32, 32, "ws")
    assert (arch.array.dtype, arch.array.acc_dtype) == ("int8", "int16")    # ZigZag's ONNX precisions: 8, 16 bit
    levels = {lv.name: lv for lv in arch.memory}
    assert levels["sram"].capacity_bytes == 16777216 // 8 and set(levels["sram"].holds) == {"input", "output"}
    assert levels["weight_rf"].capacity_bytes == 32 * 32 * 1024 // 8 and levels["weight_rf"].holds == ("weight",)
    assert levels["dram"].bandwidth_bytes_per_cycle == 64 / 8
    pj = {name: entry.pj for name, entry in arch.energy.actions.items()}
    # ZigZag's per-access costs over its port widths (bits) -> tilesim's pJ per byte
    assert pj["sram.read_byte"] == pytest.approx(416.16 / (2048 / 8))
    assert pj["sram.write_byte"] == pytest.approx(378.4 / (2048 / 8))
    assert pj["dram.read_byte"] == pytest.approx(700 / (64 / 8))
    assert pj["dram.write_byte"] == pytest.approx(750 / (64 / 8))
    # ... which are the per-bit figures quoted in issue 7 (0.203/0.185 pJ/bit SRAM, 10.9/11.7 pJ/bit DRAM) x 8
    for action, per_bit in (("sram.read_byte", 0.203), ("sram.write_byte", 0.185), ("dram.read_byte", 10.9),
                            ("dram.write_byte", 11.7)):
        assert pj[action] == pytest.approx(per_bit * 8, rel=0.005)
    assert pj["mac.int8"] == 0.04 and pj["array.reg_byte"] == 0.095 and pj["weight_rf.read_byte"] == 0.095
    assert pj["array.hop_byte"] == pytest.approx((0.021 + 0.021) / 2)      # rf_2B read + write per 16 bits
    assert arch.energy.static_mw == 0


@pytest.mark.parametrize("size,channels", [(56, 64), (14, 256), (7, 512)])
def test_resnet18_convs_move_each_operand_once_as_zigzag_loma_does(size, channels):
    """ZigZag 3.9.1's LOMA reads every input and weight byte and writes every output byte exactly once on these
    layers (opt=latency and opt=energy); tilesim's search with the energy objective finds the same traffic."""
    arch = load_arch(str(ARCH))
    b = GraphBuilder("conv")
    x = b.input("x", (1, channels, size, size))
    graph = b.build(b.conv(x, channels, 3, pad=1, name="conv"))
    opts = CompileOptions(fusion="none", objective="energy")
    k = simulate(lower(graph, arch, opts, kernel_evaluator(arch, "pipelined", "energy")), arch).kernels[0]
    assert k.dram_input_read_bytes == channels * size * size
    assert k.dram_weight_read_bytes == channels * channels * 9
    assert k.dram_output_write_bytes == channels * size * size
    assert k.dram_read_bytes == k.dram_input_read_bytes + k.dram_weight_read_bytes      # no partial-sum spills
