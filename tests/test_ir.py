"""IR validation and lowering: shape inference, clear errors, conv and matmul as GEMM loop nests."""
from __future__ import annotations

import pytest

from tilesim.arch import InputError
from tilesim.compiler import Graph, GraphBuilder, Op, Tensor
from tilesim.compiler.lowering import Contraction, VectorWork, graph_macs, lower_op


def test_conv_lowers_to_implicit_gemm_with_padding_and_stride():
    b = GraphBuilder("c")
    x = b.input("x", (1, 3, 224, 224))
    y = b.conv(x, 64, 7, stride=2, pad=3, name="conv1")
    g = b.build(y)
    assert g.tensors[y].shape == (1, 64, 112, 112)
    work = lower_op(g, g.ops[0])
    assert (work.g, work.m, work.n, work.k) == (1, 112 * 112, 64, 3 * 49)


def test_depthwise_conv_is_one_gemm_per_group():
    b = GraphBuilder("dw")
    x = b.input("x", (1, 32, 56, 56))
    g = b.build(b.conv(x, 32, 3, pad=1, groups=32))
    work = lower_op(g, g.ops[0])
    assert (work.g, work.m, work.n, work.k) == (32, 56 * 56, 1, 9)


def test_batched_matmul_and_shared_weight_matmul():
    b = GraphBuilder("mm")
    q = b.input("q", (2, 12, 128, 64))
    k = b.input("k", (2, 12, 64, 128))
    s = b.add("MatMul", [q, k])
    x = b.input("x", (2, 128, 768))
    y = b.linear(x, 3072, bias=False)
    g = b.build([s, y])
    att, lin = (lower_op(g, op) for op in g.ops)
    assert (att.g, att.m, att.n, att.k, att.b_is_param) == (24, 128, 128, 64, False)
    assert (lin.g, lin.m, lin.n, lin.k, lin.b_is_param) == (1, 256, 3072, 768, True)
    assert graph_macs(g) == 24 * 128 * 128 * 64 + 256 * 3072 * 768


def test_vector_and_view_ops():
    b = GraphBuilder("v", "bf16")
    x = b.input("x", (4, 1024))
    y = b.add("Softmax", [x], {"axis": -1})
    z = b.add("Reshape", [y], {"shape": (4, 32, 32)})
    g = b.build(z)
    sm, rs = (lower_op(g, op) for op in g.ops)
    assert sm == VectorWork(4096, 5 * 4096, 8192, 8192, row_bytes=8192, row_elems=1024)   # rows of x reduced
    assert rs is None


@pytest.mark.parametrize("op_type, shapes, attrs, expected", [
    ("MatMul", [(4, 5), (6, 7)], {}, "inner dimensions differ"),
    ("Add", [(4, 5), (3, 5)], {}, "do not broadcast"),
    ("Conv", [(1, 3, 8, 8), (4, 2, 3, 3)], {}, "input channels per group"),
    ("Conv", [(1, 3, 2, 2), (4, 3, 3, 3)], {}, "does not fit"),
    ("Reshape", [(4, 5)], {"shape": (3, 7)}, "cannot reshape"),
    ("Frobnicate", [(4,)], {}, "unknown op type 'Frobnicate'"),
])
def test_shape_mismatches_are_clear_errors(op_type, shapes, attrs, expected):
    b = GraphBuilder("bad")
    ins = [b.input(f"x{i}", s) for i, s in enumerate(shapes)]
    with pytest.raises(InputError, match=expected):
        b.add(op_type, ins, attrs, name="culprit")


def test_cycles_and_dangling_inputs_are_rejected():
    t = {n: Tensor(n, (4,)) for n in ("a", "b", "c")}
    with pytest.raises(InputError, match="cycle"):
        Graph("g", t, [Op("x", "Relu", ("a",), ("b",)), Op("y", "Relu", ("b",), ("a",))], (), ("b",))
    with pytest.raises(InputError, match="dangling"):
        Graph("g", t, [Op("x", "Relu", ("a",), ("b",))], (), ("b",))
    with pytest.raises(InputError, match="unknown tensor 'zz'"):
        Graph("g", t, [Op("x", "Relu", ("zz",), ("b",))], ("zz",), ("b",))


def test_contraction_macs():
    assert Contraction(3, 4, 5, 6, "int8", "int8", "int8").macs == 360
