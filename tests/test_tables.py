"""The one-per-concept tables (arch/dtypes.py, arch/dataflow.py), the one footprint rule and the kernel variants."""
from __future__ import annotations

import numpy as np
import pytest
from archs import tiny_arch

from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.dtypes import DTYPE_BYTES, DTYPES, tensor_bytes
from tilesim.compiler.attention import AttentionMapping, AttentionWork
from tilesim.compiler.cost import Mapping, nbytes, spatial_dims
from tilesim.compiler.lowering import Contraction, VectorWork
from tilesim.compiler.schedule import Kernel
from tilesim.compiler.tiling import VectorMapping, footprint, level_footprint


def test_dtype_bytes_follow_bits():
    assert DTYPE_BYTES == {"int4": 0.5, "int8": 1, "fp8": 1, "int16": 2, "bf16": 2, "fp16": 2, "int32": 4, "fp32": 4}
    assert all(isinstance(DTYPE_BYTES[d], int) for d in DTYPES if d != "int4")     # exact integer byte counts
    assert DTYPES["bf16"].significand_bits == 8 and DTYPES["fp8"].is_float


def test_tensor_bytes_round_up_and_stay_exact():
    assert [tensor_bytes(e, "int4") for e in (0, 1, 2, 3)] == [0, 1, 1, 2]
    assert tensor_bytes(3, "fp16") == 6
    assert tensor_bytes(2**61, "int4") == 2**60            # no product past 2**63 on the way
    assert nbytes(np.array([1, 3, 5]), "int4").tolist() == [1, 2, 3]


@pytest.mark.parametrize(("dataflow", "dims", "streamed"), [("os", (2, 3, 5), "k"), ("ws", (5, 3, 2), "m"),
                                                            ("is", (5, 2, 3), "n")])
def test_dataflow_table(dataflow, dims, streamed):
    work = Contraction(1, 2, 3, 5, "int8", "int8", "int32")     # m=2, n=3, k=5
    assert spatial_dims(work, dataflow) == dims
    assert DATAFLOWS[dataflow].streamed == streamed
    assert DATAFLOWS[dataflow].preloads == (dataflow != "os")
    assert Mapping(dataflow, 2, 3, 4).t_tile == {"m": 2, "n": 3, "k": 4}[streamed]


def test_level_footprint_doubles_double_buffered_levels():
    arch = tiny_arch()
    tiles = {"input": 10, "weight": 20, "output": 30}
    need = level_footprint(tiles, arch)
    expected = {lv.name: 0 for lv in arch.onchip}
    for operand, size in tiles.items():
        home = arch.home(operand)
        expected[home.name] += size * (2 if home.double_buffered else 1)
    assert need == expected
    work = Contraction(1, 4, 4, 4, "int8", "int8", "int32")
    got = footprint(work, Mapping("ws", 2, 3, 4), arch)       # A 2x4 int8, B 4x3 int8, C 2x3 int32
    assert got == level_footprint({"input": 8, "weight": 12, "output": 24}, arch)


def test_kernel_variants_describe_and_refuse_a_foreign_mapping():
    gemm = Contraction(1, 8, 8, 8, "int8", "int8", "int32")
    kernel = Kernel("k", ("k",), gemm, Mapping("ws", 4, 8, 8, "nmk"), split="m")
    assert kernel.describe() == "ws m=4 n=8 k=8 order=nmk split=m"
    assert Kernel("v", ("v",), VectorWork(10, 10, 10, 10), VectorMapping(4)).tile_count(1) == 3
    attn = AttentionWork(2, 5, 7, 4, 4, "fp16")
    k_attn = Kernel("a", ("a",), attn, AttentionMapping("ws", 2, 4))
    assert k_attn.describe() == "ws attention q=2 kv=4" and k_attn.tile_count(1) == 2 * 3 * 2
    assert [p for p, _ in k_attn.array_parts(1)] == list(attn.parts())
    with pytest.raises(TypeError, match="Contraction is mapped by a Mapping"):
        Kernel("k", ("k",), gemm, VectorMapping(4))
