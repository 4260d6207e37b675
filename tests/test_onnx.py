"""ONNX import (workloads/onnx/): every mapped op on small onnx.helper models, the decomposed LayerNorm
and GELU patterns, malformed files through the CLI, and torch-exported fixtures against the built-in workloads.

The fixtures in tests/data/onnx/ are written by benchmarks/export_onnx_fixtures.py (torch 2.15, random weights,
eval mode) without weight data: their initializers keep shapes only, which is all the importer reads.
"""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tilesim import simulate  # noqa: E402
from tilesim.arch import load_arch  # noqa: E402
from tilesim.arch.errors import InputError  # noqa: E402
from tilesim.cli.main import main  # noqa: E402
from tilesim.compiler.fusion import AttentionWork  # noqa: E402
from tilesim.compiler.lowering import conv_transpose_macs, graph_macs, lower_op  # noqa: E402
from tilesim.compiler.schedule import lower, make_kernels  # noqa: E402
from tilesim.workloads import llm, load_workload  # noqa: E402
from tilesim.workloads.onnx import INSTALL_HINT, load_onnx  # noqa: E402
from tilesim.workloads.onnx.routing import Picks  # noqa: E402
from tilesim.workloads.transformer import BERT_BASE, encoder  # noqa: E402

DATA = Path(__file__).parent / "data" / "onnx"
F, I64 = TensorProto.FLOAT, TensorProto.INT64


# ---------------------------------------------------------------- model-building helpers

def vi(name: str, shape, elem=F):
    """A value info (shape None: left to inference)."""
    return helper.make_tensor_value_info(name, elem, shape)


def weight(name: str, *shape, dtype=np.float32):
    """An initializer of zeros."""
    return numpy_helper.from_array(np.zeros(shape, dtype), name)


def const(name: str, values, dtype=np.int64):
    """A small initializer with values (shapes, axes, scalars)."""
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def node(op: str, ins, outs, name: str | None = None, **attrs):
    """A node named after its first output unless named."""
    return helper.make_node(op, list(ins), list(outs), name=name or outs[0], **attrs)


def model(nodes, inputs, outputs, inits=(), opset: int = 18):
    """A ModelProto over the default domain at `opset`; output types and shapes (which onnx.checker wants, as
    exporters write them) come from ONNX shape inference."""
    graph = helper.make_graph(nodes, "m", inputs, [vi(o, None, TensorProto.UNDEFINED) for o in outputs],
                              initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m = onnx.shape_inference.infer_shapes(m)
    del m.graph.value_info[:]
    return m


def load(tmp_path, m, **kw):
    """Save `m` and import it."""
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    return load_onnx(str(path), **kw)


def kinds(g) -> list[str]:
    """IR op types in order."""
    return [op.op_type for op in g.ops]


def out_shape(g) -> tuple:
    """Shape of the (first) graph output."""
    return g.tensors[g.outputs[0]].shape


# ---------------------------------------------------------------- contractions

def conv_model(x, w, bias=False, opset=18, **attrs):
    """One Conv."""
    ins = ["x", "w"] + (["b"] if bias else [])
    inits = [weight("w", *w)] + ([weight("b", w[0])] if bias else [])
    return model([node("Conv", ins, ["y"], **attrs)], [vi("x", x)], ["y"], inits, opset)


CONVS = [  # (id, input, weight, attrs, output, MACs = out elements * C/g * R * S)
    ("strided_padded_bias", (1, 3, 32, 32), (8, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "bias": True},
     (1, 8, 16, 16), 8 * 16 * 16 * 3 * 9),
    ("grouped_dilated", (1, 4, 16, 16), (6, 2, 3, 3), {"group": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2]},
     (1, 6, 16, 16), 6 * 256 * 2 * 9),
    ("depthwise", (1, 8, 16, 16), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, (1, 8, 16, 16), 8 * 256 * 9),
    ("asymmetric_pads", (1, 2, 10, 10), (4, 2, 3, 3), {"pads": [0, 1, 2, 0]}, (1, 4, 10, 9), 4 * 90 * 18),
    ("same_upper", (1, 2, 15, 15), (4, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (1, 4, 8, 8),
     4 * 64 * 18),
    ("same_lower", (1, 2, 16, 16), (4, 2, 4, 4), {"auto_pad": "SAME_LOWER"}, (1, 4, 16, 16), 4 * 256 * 32),
    ("valid", (1, 2, 16, 16), (4, 2, 5, 5), {"auto_pad": "VALID"}, (1, 4, 12, 12), 4 * 144 * 50),
    ("conv1d", (1, 4, 20), (8, 4, 3), {"pads": [1, 0]}, (1, 8, 19), 8 * 19 * 12),
]


@pytest.mark.parametrize("x, w, attrs, out, macs", [c[1:] for c in CONVS], ids=[c[0] for c in CONVS])
def test_conv(tmp_path, x, w, attrs, out, macs):
    g = load(tmp_path, conv_model(x, w, **attrs))
    assert out_shape(g) == out
    assert graph_macs(g) == macs
    assert "Conv" in kinds(g) and len(make_kernels(g)) == 1   # 1-d convs add free Reshape views only


def test_conv_transpose_counts_useful_macs_and_reports_the_zero_stuffed_ones(tmp_path):
    """ConvTranspose: out = s(H-1) + k - pads (or output_shape); MACs = input pixels x C_in x C_out/g x R x S (torch's
    FlopCounterMode count), not the zero-insertion GEMM's H_out W_out x C_out x C_in/g x R S (+300% at stride 2)."""
    m = model([node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
              [vi("x", (1, 4, 8, 8))], ["y"], [weight("w", 4, 2, 4, 4)])
    g = load(tmp_path, m)
    assert out_shape(g) == (1, 2, 16, 16)
    useful = 8 * 8 * 4 * 2 * 16
    assert graph_macs(g) == useful
    assert conv_transpose_macs((1, 4, 8, 8), (4, 2, 4, 4), g.ops[0].attrs) == (useful, 16 * 16 * 2 * 4 * 16 - useful)
    work = lower_op(g, g.ops[0])
    assert (work.m, work.n, work.k) == (16 * 16, 2, 4 * 2 * 2)        # sub-pixel form: 2 x 2 taps per output
    m = model([node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[15, 15], group=2)],
              [vi("x", (1, 4, 8, 8))], ["y"], [weight("w", 4, 3, 3, 3)])
    g = load(tmp_path, m)
    assert out_shape(g) == (1, 6, 15, 15) and graph_macs(g) == 8 * 8 * 4 * 3 * 9     # uneven: scatter form
    assert conv_transpose_macs((1, 4, 8, 8), (4, 3, 3, 3), g.ops[0].attrs)[1] == 2 * 15 * 15 * 3 * 2 * 9 - 6912


def test_gemm_and_matmul(tmp_path):
    m = model([node("MatMul", ["x", "w1"], ["h"]),                     # (2, 5, 16) @ (16, 32): batch folds into M
               node("Transpose", ["h"], ["ht"], perm=[0, 2, 1]),
               node("MatMul", ["h", "ht"], ["s"]),                     # (2, 5, 32) @ (2, 32, 5): batched
               node("Reshape", ["s", "shape"], ["flat"]),
               node("Gemm", ["flat", "w2", "b2"], ["y"], transB=1, alpha=0.5)],
              [vi("x", (2, 5, 16))], ["y"],
              [weight("w1", 16, 32), const("shape", [2, 25]), weight("w2", 7, 25), weight("b2", 7)])
    g = load(tmp_path, m)
    assert out_shape(g) == (2, 7)
    assert graph_macs(g) == 10 * 32 * 16 + 2 * 5 * 5 * 32 + 2 * 7 * 25
    assert kinds(g) == ["MatMul", "Transpose", "MatMul", "Reshape", "Gemm"]


# ---------------------------------------------------------------- vector ops, one model each, table-driven

X = (1, 4, 8, 8)
VECTOR_OPS = [  # (id, nodes, extra initializers, opset, IR op types, output shape)
    ("batchnorm_relu", [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
                        node("Relu", ["bn"], ["y"])],
     [weight(n, 4) for n in "sbmv"], 18, ["BatchNormalization", "Relu"], X),
    ("clip_inputs", [node("Clip", ["x", "lo", "hi"], ["y"])], [const("lo", 0.0, np.float32),
                                                              const("hi", 6.0, np.float32)], 18, ["Clip"], X),
    ("clip_attrs_opset6", [node("Clip", ["x"], ["y"], min=0.0, max=6.0)], [], 6, ["Clip"], X),
    ("activations", [node("Sigmoid", ["x"], ["a"]), node("Tanh", ["a"], ["b"]), node("Erf", ["b"], ["c"]),
                     node("HardSwish", ["c"], ["d"]), node("Sqrt", ["d"], ["e"]), node("Gelu", ["e"], ["f"]),
                     node("HardSigmoid", ["f"], ["g"]), node("LeakyRelu", ["g"], ["y"], alpha=0.1)],
     [], 20, ["Sigmoid", "Tanh", "Erf", "HardSwish", "Sqrt", "Gelu", "HardSigmoid", "LeakyRelu"], X),
    ("binary_broadcast", [node("Add", ["x", "c"], ["a"]), node("Sub", ["a", "x"], ["b"]),
                          node("Mul", ["b", "c"], ["d"]), node("Div", ["d", "c"], ["e"]),
                          node("Pow", ["e", "two"], ["y"])],
     [weight("c", 4, 1, 1), const("two", 2.0, np.float32)], 18, ["Add", "Sub", "Mul", "Div", "Pow"], X),
    ("maxpool_ceil", [node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], [], 18,
     ["MaxPool"], (1, 4, 4, 4)),
    ("avgpool_same", [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                           auto_pad="SAME_UPPER")], [], 18, ["AveragePool"], (1, 4, 4, 4)),
    ("global_pool_flatten", [node("GlobalAveragePool", ["x"], ["p"]), node("Flatten", ["p"], ["y"], axis=-3)],
     [], 18, ["GlobalAveragePool", "Flatten"], (1, 4)),
    ("reduce_mean_axes_input", [node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], [const("ax", [2, 3])], 18,
     ["ReduceMean"], (1, 4)),
    ("reduce_mean_axes_attr", [node("ReduceMean", ["x"], ["y"], axes=[-1])], [], 13, ["ReduceMean"], (1, 4, 8, 1)),
    ("softmax_layernorm", [node("Softmax", ["x"], ["s"], axis=1),
                           node("LayerNormalization", ["s", "g", "b"], ["y"], axis=-2, epsilon=1e-5)],
     [weight("g", 8, 8), weight("b", 8, 8)], 18, ["Softmax", "LayerNormalization"], X),
    ("where_cast", [node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16), node("Where", ["cond", "h", "z"], ["y"])],
     [const("cond", np.ones((8, 8)), bool), weight("z", 1, dtype=np.float16)], 18, ["Cast", "Where"], X),
]


@pytest.mark.parametrize("nodes, inits, opset, ops, out", [c[1:] for c in VECTOR_OPS], ids=[c[0] for c in VECTOR_OPS])
def test_vector_ops(tmp_path, nodes, inits, opset, ops, out):
    g = load(tmp_path, model(nodes, [vi("x", X)], ["y"], inits, opset))
    assert kinds(g) == ops and out_shape(g) == out
    assert graph_macs(g) == 0 and len(make_kernels(g)) == sum(op not in ("Flatten",) for op in ops)


# ---------------------------------------------------------------- data movement and views, shape folding

def test_reshape_from_a_folded_shape_subgraph(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape and Expand, as exporters write them with dynamic dims."""
    m = model([node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "i0"], ["n"], axis=0),
               node("Unsqueeze", ["n", "ax0"], ["n1"]), node("Cast", ["n1"], ["n2"], to=TensorProto.INT64),
               node("Concat", ["n2", "rest"], ["target"], axis=0),
               node("Reshape", ["x", "target"], ["r"]),
               node("Shape", ["r"], ["rs"], start=0, end=1), node("Concat", ["rs", "four"], ["eshape"], axis=0),
               node("Expand", ["bias", "eshape"], ["eb"]),            # constant: folds away
               node("Add", ["r", "eb"], ["y"])],
              [vi("x", ("batch", 4, 8, 8))], ["y"],
              [const("i0", 0), const("ax0", [0]), const("rest", [4, 64]), const("four", [4, 1]), weight("bias", 1)])
    g = load(tmp_path, m, batch=3)
    assert kinds(g) == ["Reshape", "Add"] and out_shape(g) == (3, 4, 64)


def test_movement_ops(tmp_path):
    m = model([node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),                     # (1, 8, 8, 4)
               node("Squeeze", ["t", "ax0"], ["sq"]),                                   # (8, 8, 4)
               node("Unsqueeze", ["sq", "ax0"], ["us"]),                                # (1, 8, 8, 4)
               node("Split", ["us", "sizes"], ["p1", "p2"], axis=3),                   # (1,8,8,1), (1,8,8,3)
               node("Concat", ["p2", "p1"], ["c"], axis=3),
               node("Slice", ["c", "st", "en", "axs", "stp"], ["sl"]),                 # rows 1, 3, 5, 7
               node("Gather", ["sl", "idx"], ["ga"], axis=2),                           # scalar index: (1, 4, 4)
               node("Expand", ["ga", "eshape"], ["ex"]),                                 # (2, 4, 4)
               node("Identity", ["ex"], ["id"]),
               node("Dropout", ["id", "ratio"], ["y"])],
              [vi("x", X)], ["y"],
              [const("ax0", [0]), const("sizes", [1, 3]), const("st", [1]), const("en", [100]), const("axs", [1]),
               const("stp", [2]), const("idx", 2), const("eshape", [2, 1, 1]), const("ratio", 0.1, np.float32)])
    g = load(tmp_path, m)
    assert kinds(g) == ["Transpose", "Squeeze", "Unsqueeze", "Split", "Concat", "Slice", "Gather", "Expand",
                        "Identity", "Dropout"]
    assert out_shape(g) == (2, 4, 4)
    assert len(make_kernels(g)) == 6                      # views (Squeeze, Unsqueeze, Identity, Dropout) are free


def test_split_equal_parts_and_opset11_attributes(tmp_path):
    m = model([node("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3),        # 8 -> 3, 3, 2 (opset 18)
               node("Concat", ["a", "b", "c"], ["y"], axis=2)], [vi("x", X)], ["y"])
    assert kinds(load(tmp_path, m)) == ["Split", "Concat"]
    m = model([node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]),
               node("Squeeze", ["a"], ["s"], axes=[1]), node("Unsqueeze", ["s"], ["u"], axes=[0]),
               node("Slice", ["u"], ["y"], starts=[0], ends=[4], axes=[-1])], [vi("x", X)], ["y"], opset=9)
    g = load(tmp_path, m)
    assert out_shape(g) == (1, 1, 8, 4) and kinds(g) == ["Split", "Squeeze", "Unsqueeze", "Slice"]


def test_constant_nodes_and_weight_transforms_fold(tmp_path):
    """Constant values feed ops; a Transpose of a weight happens offline: the MatMul reads a parameter."""
    m = model([node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((1, 4), np.float32))),
               node("Transpose", ["w"], ["wt"], perm=[1, 0]),
               node("MatMul", ["x", "wt"], ["h"]), node("Add", ["h", "c"], ["y"])],
              [vi("x", (3, 6))], ["y"], [weight("w", 4, 6)])
    g = load(tmp_path, m)
    assert kinds(g) == ["MatMul", "Add"] and g.tensors["wt"].is_param and g.tensors["wt"].shape == (6, 4)


# ---------------------------------------------------------------- decomposed LayerNorm and GELU

def layernorm_nodes(x: str, out: str, axes_as_input: bool = True, eps: bool = True):
    """The exporters' decomposed LayerNorm over the last axis, with scale and bias (dynamo drops a zero eps)."""
    rm = (lambda i, o: node("ReduceMean", [i, "axes"], [o])) if axes_as_input else \
        (lambda i, o: node("ReduceMean", [i], [o], axes=[-1]))
    return [rm(x, "mu"), node("Sub", [x, "mu"], ["d"]), node("Pow", ["d", "two"], ["sq"]), rm("sq", "var")] + \
        ([node("Add", ["var", "eps"], ["ve"])] if eps else []) + \
        [node("Sqrt", ["ve" if eps else "var"], ["sd"]), node("Div", ["d", "sd"], ["n"]),
         node("Mul", ["gamma", "n"], ["sc"]), node("Add", ["sc", "beta"], [out])]


LN_INITS = [const("axes", [-1]), const("two", 2.0, np.float32), const("eps", 1e-6, np.float32),
            weight("gamma", 16), weight("beta", 16)]


@pytest.mark.parametrize("opset, eps", [(13, 1e-6), (18, 1e-6), (18, 0.0)])
def test_decomposed_layernorm_is_one_op(tmp_path, opset, eps):
    nodes = layernorm_nodes("x", "y", axes_as_input=opset >= 18, eps=eps > 0)
    g = load(tmp_path, model(nodes, [vi("x", (2, 5, 16))], ["y"], LN_INITS, opset))
    assert kinds(g) == ["LayerNormalization"]
    assert g.ops[0].attrs == {"axis": -1, "epsilon": pytest.approx(eps)} and len(g.ops[0].inputs) == 3


def test_layernorm_pattern_with_an_extra_consumer_is_left_alone(tmp_path):
    nodes = [*layernorm_nodes("x", "y"), node("Relu", ["var"], ["z"])]    # the variance is used elsewhere
    g = load(tmp_path, model(nodes, [vi("x", (2, 16))], ["y", "z"], LN_INITS))
    assert "LayerNormalization" not in kinds(g) and kinds(g).count("ReduceMean") == 2


GELUS = {  # 0.5 * x * (1 + erf(x / sqrt 2)) in the association orders exporters use
    "dynamo": [node("Div", ["x", "sqrt2"], ["a"]), node("Erf", ["a"], ["e"]), node("Add", ["e", "one"], ["p"]),
               node("Mul", ["half", "p"], ["h"]), node("Mul", ["x", "h"], ["y"])],
    "torchscript": [node("Div", ["x", "sqrt2"], ["a"]), node("Erf", ["a"], ["e"]), node("Add", ["e", "one"], ["p"]),
                    node("Mul", ["x", "p"], ["h"]), node("Mul", ["h", "half"], ["y"])],
    "hf_half_first": [node("Mul", ["x", "half"], ["hx"]), node("Mul", ["x", "rsqrt2"], ["a"]),
                      node("Erf", ["a"], ["e"]), node("Add", ["one", "e"], ["p"]), node("Mul", ["hx", "p"], ["y"])],
    # GPT-2's gelu_new as the legacy exporter writes it: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    "tanh_gpt2": [node("Mul", ["x", "half"], ["hx"]), node("Pow", ["x", "three"], ["x3"]),
                  node("Mul", ["x3", "c044"], ["cx"]), node("Add", ["x", "cx"], ["in"]),
                  node("Mul", ["in", "s2pi"], ["a"]), node("Tanh", ["a"], ["th"]), node("Add", ["th", "one"], ["p"]),
                  node("Mul", ["hx", "p"], ["y"])],
}
GELU_INITS = [const("sqrt2", 2 ** 0.5, np.float32), const("rsqrt2", 2 ** -0.5, np.float32),
              const("one", 1.0, np.float32), const("half", 0.5, np.float32), const("three", 3.0, np.float32),
              const("c044", 0.044715, np.float32), const("s2pi", (2 / np.pi) ** 0.5, np.float32)]


@pytest.mark.parametrize("form", list(GELUS))
def test_decomposed_gelu_is_one_op(tmp_path, form):
    nodes = [node("MatMul", ["t", "w"], ["x"])] + GELUS[form]
    g = load(tmp_path, model(nodes, [vi("t", (4, 8))], ["y"], [*GELU_INITS, weight("w", 8, 16)]))
    assert kinds(g) == ["MatMul", "Gelu"]
    assert g.ops[1].attrs["approximate"] == ("tanh" if form.startswith("tanh") else "none")
    assert g.ops[1].inputs == ("x",) and g.ops[1].outputs == ("y",)
    assert len(make_kernels(g, "epilogue")) == 1                            # the MatMul's epilogue


def test_wrong_constant_is_not_gelu(tmp_path):
    nodes = GELUS["dynamo"]
    inits = [const("sqrt2", 3.0, np.float32), *GELU_INITS[1:]]
    assert "Gelu" not in kinds(load(tmp_path, model(nodes, [vi("x", (4, 8))], ["y"], inits)))
    inits = [*GELU_INITS[:-2], const("c044", 0.05, np.float32), GELU_INITS[-1]]
    assert "Gelu" not in kinds(load(tmp_path, model(GELUS["tanh_gpt2"], [vi("x", (4, 8))], ["y"], inits)))


# ---------------------------------------------------------------- data types

def test_dtypes_from_the_model_and_overridden(tmp_path):
    m = model([node("MatMul", ["x", "w"], ["h"]), node("Gather", ["h", "ids"], ["y"], axis=0)],
              [vi("x", (4, 8), TensorProto.FLOAT16), vi("ids", (2,), I64)], ["y"],
              [weight("w", 8, 8, dtype=np.float16)])
    g = load(tmp_path, m)
    assert {n: g.tensors[n].dtype for n in ("x", "w", "h", "ids")} == \
        {"x": "fp16", "w": "fp16", "h": "fp16", "ids": "int32"}
    g = load(tmp_path, m, dtype="int8")
    assert {n: g.tensors[n].dtype for n in ("x", "w", "h", "ids")} == \
        {"x": "int8", "w": "int8", "h": "int8", "ids": "int32"}


def test_qdq_runs_the_conv_on_int8(tmp_path):
    """QuantizeLinear -> DequantizeLinear around a Conv whose weight is int8 behind a DequantizeLinear."""
    m = model([node("QuantizeLinear", ["x", "s", "zp"], ["xq"]), node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
               node("DequantizeLinear", ["wq", "s", "zp"], ["wd"]), node("Conv", ["xd", "wd"], ["y"])],
              [vi("x", (1, 4, 8, 8))], ["y"],
              [const("s", 0.1, np.float32), const("zp", 0, np.int8), weight("wq", 8, 4, 1, 1, dtype=np.int8)])
    g = load(tmp_path, m)
    conv = g.ops[-1]
    assert kinds(g) == ["Cast", "Identity", "Conv"]
    assert [g.tensors[t].dtype for t in conv.inputs] == ["int8", "int8"] and graph_macs(g) == 64 * 8 * 4


def test_qlinear_ops(tmp_path):
    q = [const("s", 0.1, np.float32), const("zp", 0, np.int8)]
    m = model([node("QLinearConv", ["x", "s", "zp", "w", "s", "zp", "s", "zp"], ["c"], pads=[1, 1, 1, 1]),
               node("Reshape", ["c", "shape"], ["r"]),
               node("QLinearMatMul", ["r", "s", "zp", "w2", "s", "zp", "s", "zp"], ["y"])],
              [vi("x", (1, 4, 8, 8), TensorProto.INT8)], ["y"],
              [*q, weight("w", 8, 4, 3, 3, dtype=np.int8), const("shape", [8, 64]),
               weight("w2", 64, 10, dtype=np.int8)])
    g = load(tmp_path, m, dtype=None)
    assert kinds(g) == ["Conv", "Reshape", "MatMul"] and graph_macs(g) == 64 * 8 * 36 + 8 * 10 * 64
    assert {t.dtype for t in g.tensors.values() if t.name in ("x", "w", "c", "y")} == {"int8"}


# ---------------------------------------------------------------- symbolic dims

def test_symbolic_dims_bind_from_dim_batch_and_seq_len(tmp_path):
    m = model([node("MatMul", ["x", "w"], ["y"])], [vi("x", ("batch_size", "seq_len", 8))], ["y"], [weight("w", 8, 4)])
    assert out_shape(load(tmp_path, m, batch=2, seq_len=5)) == (2, 5, 4)
    assert out_shape(load(tmp_path, m, dims={"seq_len": 7, "batch_size": 3})) == (3, 7, 4)


# ---------------------------------------------------------------- malformed input: one line, exit 2

def cli_error(capsys, *argv) -> str:
    """Run the CLI, expect exit status 2 and return its one-line stderr."""
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tilesim: error: "), err
    return err


def save(tmp_path, m, name="m.onnx") -> str:
    path = tmp_path / name
    onnx.save(m, str(path))
    return str(path)


def test_truncated_file(tmp_path, capsys):
    path = tmp_path / "half.onnx"
    data = (DATA / "resnet18.onnx").read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert "is not a readable ONNX model (truncated or corrupt file?)" in cli_error(capsys, "-w", str(path))


def test_random_bytes(tmp_path, capsys):
    path = tmp_path / "noise.onnx"
    path.write_bytes(random.Random(0).randbytes(4096))
    assert "is not a readable ONNX model" in cli_error(capsys, "-w", str(path))


def test_missing_file(capsys):
    assert "no such file 'nope.onnx'" in cli_error(capsys, "-w", "nope.onnx")


def test_unbound_dims_are_listed(capsys):
    err = cli_error(capsys, "-w", str(DATA / "bert2.onnx"))
    assert "unbound symbolic dimensions: seq (input 'input_ids' dim 1); give each as --dim NAME=VALUE" in err


@pytest.mark.parametrize("argv, expected", [
    (["--dim", "seq"], "--dim seq: expected NAME=VALUE"),
    (["--dim", "seq=0"], "--dim seq: the value must be a positive integer, got '0'"),
    (["--dim", "seq=8", "--dim", "seq=9"], "--dim seq: given twice"),
    (["--dim", "sequence=8"], "--dim sequence: model bert2.onnx has no symbolic dimension 'sequence' "
                              "(its symbolic dims: batch, seq)"),
])
def test_bad_dims(capsys, argv, expected):
    assert expected in cli_error(capsys, "-w", str(DATA / "bert2.onnx"), *argv)


def test_dim_and_dtype_model_need_an_onnx_workload(capsys):
    assert "--dim: only ONNX models have symbolic dimensions" in cli_error(capsys, "-w", "resnet18", "--dim", "a=1")
    assert "--dtype model: only .onnx workloads" in cli_error(capsys, "-w", "resnet18", "--dtype", "model")


def test_batch_without_a_batch_dim(capsys):
    assert "--batch: model resnet18.onnx has no symbolic batch dimension" in \
        cli_error(capsys, "-w", str(DATA / "resnet18.onnx"), "--batch", "2")


def test_unsupported_ops_are_listed_together(tmp_path, capsys):
    m = model([node("Resize", ["x", "", "scales"], ["r1"]), node("Relu", ["r1"], ["a"]),
               node("Hardmax", ["x"], ["v"]), node("Resize", ["v", "", "scales"], ["r2"]),
               node("Relu", ["x"], ["y"])],
              [vi("x", (1, 2, 4, 4))], ["a", "r2", "y"],
              [const("scales", [1, 1, 2, 2], np.float32)])
    err = cli_error(capsys, "-w", save(tmp_path, m))
    assert "unsupported ONNX ops: Hardmax x1 (first: 'v'), Resize x2 (first: 'r1'); supported: " in err


def test_dangling_input(tmp_path, capsys):
    m = model([node("Add", ["x", "ghost"], ["y"])], [vi("x", (2, 2))], ["y"])
    assert "input 'ghost' of node 'y' (Add) is dangling" in cli_error(capsys, "-w", save(tmp_path, m))


def test_cycle(tmp_path, capsys):
    m = model([node("Add", ["x", "b"], ["a"]), node("Relu", ["a"], ["b"]), node("Relu", ["a"], ["y"])],
              [vi("x", (2, 2))], ["y"])
    assert "the graph has a cycle through nodes a -> b -> a" in cli_error(capsys, "-w", save(tmp_path, m))


def test_invalid_model_fails_the_checker(tmp_path, capsys):
    m = model([node("Relu", ["x"], ["y"], alpha=1.0)], [vi("x", (2, 2))], ["y"])   # Relu has no attributes
    assert "invalid ONNX model: " in cli_error(capsys, "-w", save(tmp_path, m))


def test_without_the_onnx_package(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    assert INSTALL_HINT in cli_error(capsys, "-w", str(DATA / "resnet18.onnx"))


# ---------------------------------------------------------------- torch-exported fixtures

def conv_layers(g) -> list[tuple]:
    """Per-layer conv shapes: input, weight, output, strides, pads, group."""
    t = g.tensors
    return [(t[op.inputs[0]].shape, t[op.inputs[1]].shape, t[op.outputs[0]].shape, tuple(op.attrs["strides"]),
             tuple(op.attrs["pads"]), op.attrs["group"]) for op in g.ops if op.op_type == "Conv"]


def test_resnet18_matches_the_builtin_op_for_op():
    """TorchScript export with BatchNorm kept (training=PRESERVE, no constant folding): the same ops with the same
    shapes as the built-in resnet18, so the same MACs (the hand count), cycles and energy on every preset."""
    onnx_graph, builtin = load_workload(str(DATA / "resnet18.onnx")), load_workload("resnet18")
    assert graph_macs(onnx_graph) == graph_macs(builtin) == 1_814_073_344
    assert kinds(onnx_graph) == kinds(builtin)
    assert conv_layers(onnx_graph) == conv_layers(builtin)
    assert [onnx_graph.tensors[o].shape for op in onnx_graph.ops for o in op.outputs] == \
        [builtin.tensors[o].shape for op in builtin.ops for o in op.outputs]
    for name in ("tpu-v1", "gemmini"):
        arch = load_arch(name)
        a, b = (simulate(lower(load_workload(w, dtype=arch.array.dtype), arch), arch)
                for w in (str(DATA / "resnet18.onnx"), "resnet18"))
        assert (a.cycles, a.energy_pj, a.macs) == (b.cycles, b.energy_pj, b.macs)


def test_mobilenet_v2_dynamo_export():
    """The dynamo exporter folds each BatchNorm into its Conv (which gains a bias) and writes ReLU6 as Clip with
    min/max inputs, so only the convs compare with the built-in: the same per-layer shapes and MACs."""
    g = load_workload(str(DATA / "mobilenet_v2.onnx"))
    builtin = load_workload("mobilenet_v2")
    assert graph_macs(g) == graph_macs(builtin) == 300_774_272
    assert conv_layers(g) == conv_layers(builtin)
    assert "BatchNormalization" not in kinds(g) and kinds(g).count("Clip") == 35


def test_bert2_dynamo_export_matches_a_two_layer_builtin_encoder():
    """Dynamo export (opset 18) of a two-layer BERT-base encoder with symbolic batch and seq: its Reshape targets
    come from folded Shape/Concat subgraphs, GELU arrives decomposed (Div/Erf/Add/Mul/Mul) and is fused."""
    g = load_workload(str(DATA / "bert2.onnx"), seq_len=128)
    builtin = encoder("bert2", replace(BERT_BASE, layers=2), 1, 128, "int8")
    assert graph_macs(g) == graph_macs(builtin) == 1_862_270_976
    assert kinds(g).count("Gelu") == 2 and kinds(g).count("LayerNormalization") == 5
    assert "Erf" not in kinds(g) and "Shape" not in kinds(g)
    g2 = load_workload(str(DATA / "bert2.onnx"), batch=2, dims={"seq": 64})
    assert out_shape(g2) == (2, 64, 768)


@pytest.mark.parametrize("workload, extra", [("mobilenet_v2.onnx", []), ("bert2.onnx", ["--dim", "seq=32"])])
def test_fixtures_simulate_end_to_end(capsys, workload, extra):
    assert main(["run", "-w", str(DATA / workload), "-a", "edge-npu", "-f", "json", *extra]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cycles"] > 0 and report["energy_pj"] > 0 and report["macs"] > 0


def test_dtype_model_keeps_the_model_types(tmp_path, capsys):
    """dtype None (--dtype model) keeps a bf16 model's types, a dtype replaces them; through the CLI, --dtype model
    gives the same report as --dtype bf16."""
    w = helper.make_tensor("w", TensorProto.BFLOAT16, (256, 128), bytes(256 * 128 * 2), raw=True)
    onnx.external_data_helper.set_external_data(w, "absent.bin", length=len(w.raw_data))
    w.data_location = TensorProto.EXTERNAL          # weight-less, as in the fixtures: the data file is not there
    w.ClearField("raw_data")
    m = model([node("MatMul", ["x", "w"], ["y"])], [vi("x", (64, 256), TensorProto.BFLOAT16)], ["y"], [w])
    path = save(tmp_path, m)
    assert {t.dtype for t in load_workload(path).tensors.values()} == {"bf16"}
    assert {t.dtype for t in load_workload(path, dtype="int8").tensors.values()} == {"int8"}
    reports = []
    for dtype in ("model", "bf16"):
        assert main(["run", "-w", path, "-a", "tpu-v4", "--dtype", dtype, "-f", "json"]) == 0
        reports.append(capsys.readouterr().out)
    assert reports[0] == reports[1]


def test_fixtures_are_small():
    assert sorted(p.name for p in DATA.glob("*.onnx")) == ["bert2.onnx", "mobilenet_v2.onnx", "resnet18.onnx"]
    assert all(p.stat().st_size < 1 << 20 for p in DATA.glob("*.onnx"))


def test_torch_export_imports(tmp_path):
    """Only where torch is installed (not in CI): a fresh dynamo export of a small CNN."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU6(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(path), dynamo=True, opset_version=18, verbose=False)
    g = load_workload(str(path))
    assert out_shape(g) == (1, 10) and graph_macs(g) == 16 * 16 * 8 * 27 + 80   # BatchNorm folded into the Conv


# ---------------------------------------------------------------- issue 23: ops exporters of HF models write

MORE_VECTOR_OPS = [  # (id, nodes, extra initializers, opset, IR op types, output shape): one vector kernel each
    ("unary_math", [node("Neg", ["x"], ["a"]), node("Reciprocal", ["a"], ["b"]), node("Exp", ["b"], ["c"]),
                    node("Abs", ["c"], ["d"]), node("Sin", ["d"], ["e"]), node("Cos", ["e"], ["y"])],
     [], 18, ["Neg", "Reciprocal", "Exp", "Abs", "Sin", "Cos"], X),
    ("compare_logic", [node("Greater", ["x", "c"], ["g"]), node("Less", ["x", "c"], ["l"]),
                       node("And", ["g", "l"], ["a"]), node("Not", ["a"], ["n"]), node("IsNaN", ["x"], ["nan"]),
                       node("Or", ["n", "nan"], ["o"]), node("Where", ["o", "x", "c"], ["y"])],
     [weight("c", 4, 1, 1)], 18, ["Greater", "Less", "And", "Not", "IsNaN", "Or", "Where"], X),
    ("max_min", [node("Max", ["x", "c"], ["m"]), node("Min", ["m", "x", "c"], ["y"])], [weight("c", 8)], 18,
     ["Max", "Min"], X),
    ("reductions", [node("ReduceSum", ["x", "ax"], ["s"]), node("ReduceMax", ["s"], ["y"], axes=[1], keepdims=0)],
     [const("ax", [2, 3])], 13, ["ReduceSum", "ReduceMax"], (1, 1, 1)),
]


EPILOGUE_OPS = [("Neg", []), ("Reciprocal", []), ("Exp", []), ("Log", []), ("Abs", []), ("Sin", []),
                ("Cos", []), ("Floor", []), ("Ceil", []), ("IsNaN", []), ("IsInf", []), ("HardSigmoid", []),
                ("LeakyRelu", []), ("Max", ["c"]), ("Min", ["c"]), ("Mod", ["c"]), ("Equal", ["c"]), ("Less", ["c"]),
                ("Greater", ["c"]), ("LessOrEqual", ["c"]), ("GreaterOrEqual", ["c"])]


@pytest.mark.parametrize("op, extra", EPILOGUE_OPS, ids=[o for o, _ in EPILOGUE_OPS])
def test_imported_elementwise_ops_fuse_as_a_matmuls_epilogue(tmp_path, op, extra):
    """MatMul -> elementwise op is one kernel under --fusion epilogue: the op runs on each output tile as it drains
    (its second operand, if any, read alongside), as Relu or Add do."""
    attrs = {"fmod": 1} if op == "Mod" else {}
    m = model([node("MatMul", ["x", "w"], ["h"]), node(op, ["h", *extra], ["y"], **attrs)], [vi("x", (4, 16))],
              ["y"], [weight("w", 16, 32), weight("c", 32)])
    g = load(tmp_path, m)
    kernels = make_kernels(g, "epilogue")
    per_element = {"HardSigmoid": 4, "LeakyRelu": 2}.get(op, 1)                 # compiler/ops.py SPECS
    assert len(kernels) == 1 and kernels[0].epilogue.ops == per_element * 4 * 32
    assert kernels[0].epilogue.read_bytes == (32 * 4 if extra else 0)
    assert len(make_kernels(g, "none")) == 2


@pytest.mark.parametrize("nodes, inits, opset, ops, out", [c[1:] for c in MORE_VECTOR_OPS],
                         ids=[c[0] for c in MORE_VECTOR_OPS])
def test_more_vector_ops(tmp_path, nodes, inits, opset, ops, out):
    g = load(tmp_path, model(nodes, [vi("x", X)], ["y"], inits, opset))
    assert kinds(g) == ops and out_shape(g) == out
    assert graph_macs(g) == 0 and len(make_kernels(g)) == len(ops)
    for op in g.ops:   # one lane op per element, on the larger of input and output
        work = lower_op(g, op)
        assert work.ops == max(g.tensors[op.inputs[0]].elements, g.tensors[op.outputs[0]].elements)


def test_data_movement_ops(tmp_path):
    """Pad (opset 18, axes input), Tile, GatherND, GatherElements, ScatterND: no arithmetic; gathers read only
    the elements they pick and their indices."""
    m = model([node("Pad", ["x", "pads", "", "axes"], ["p"]),                                   # (1, 4, 10, 12)
               node("Tile", ["p", "reps"], ["t"]),                                               # (1, 8, 10, 12)
               node("GatherElements", ["t", "ge"], ["e"], axis=1),                              # (1, 2, 10, 12)
               node("GatherND", ["e", "nd"], ["n"], batch_dims=1),                               # (1, 3, 12)
               node("ScatterND", ["n", "si", "su"], ["y"])],
              [vi("x", X)], ["y"],
              [const("pads", [1, 2, 1, 2]), const("axes", [2, 3]), const("reps", [1, 2, 1, 1]),
               const("ge", np.zeros((1, 2, 10, 12))), const("nd", np.zeros((1, 3, 2))),
               const("si", np.zeros((1, 1))), weight("su", 1, 3, 12)])
    g = load(tmp_path, m)
    assert kinds(g) == ["Pad", "Tile", "GatherElements", "GatherND", "ScatterND"]
    assert [g.tensors[op.outputs[0]].shape for op in g.ops] == [(1, 4, 10, 12), (1, 8, 10, 12), (1, 2, 10, 12),
                                                                (1, 3, 12), (1, 3, 12)]
    works = {op.op_type: lower_op(g, op) for op in g.ops}
    assert all(w.ops == 0 for w in works.values()) and graph_macs(g) == 0
    assert works["GatherElements"].read_bytes == 240 * 4 + 240 * 4          # picked fp32 elements + int32 indices
    assert works["GatherND"].read_bytes == 36 * 4 + 6 * 4
    assert works["Pad"].read_bytes == 256 * 4 and works["Pad"].write_bytes == 480 * 4


def test_rmsnorm_decomposition_is_recognised(tmp_path):
    """x * 1/sqrt(mean(x^2) + eps) * w (torch.rsqrt as Sqrt + Reciprocal), and the Div form, become
    RMSNormalization; opset 23's RMSNormalization maps directly."""
    nodes = [node("Pow", ["x", "two"], ["sq"]), node("ReduceMean", ["sq", "axes"], ["var"]),
             node("Add", ["var", "eps"], ["ve"]), node("Sqrt", ["ve"], ["rs"]), node("Reciprocal", ["rs"], ["inv"]),
             node("Mul", ["x", "inv"], ["n"]), node("Mul", ["w", "n"], ["y"])]
    inits = [const("two", 2.0, np.float32), const("axes", [-1]), const("eps", 1e-6, np.float32), weight("w", 16)]
    g = load(tmp_path, model(nodes, [vi("x", (2, 5, 16))], ["y"], inits))
    assert kinds(g) == ["RMSNormalization"] and g.ops[0].attrs["epsilon"] == pytest.approx(1e-6)
    div = [*nodes[:4], node("Div", ["x", "rs"], ["y"])]
    assert kinds(load(tmp_path, model(div, [vi("x", (2, 5, 16))], ["y"], inits[:3]))) == ["RMSNormalization"]
    m = model([node("RMSNormalization", ["x", "w"], ["y"], epsilon=1e-5)], [vi("x", (2, 5, 16))], ["y"],
              [weight("w", 16)], opset=23)
    assert kinds(load(tmp_path, m)) == ["RMSNormalization"]


def test_silu_decomposition_is_recognised(tmp_path):
    """SwiGLU's gate x * sigmoid(x), in either operand order, is one Silu; a sigmoid used elsewhere is left alone."""
    for ins in (["x", "s"], ["s", "x"]):
        m = model([node("Sigmoid", ["x"], ["s"]), node("Mul", ins, ["y"])], [vi("x", (2, 8))], ["y"])
        assert kinds(load(tmp_path, m)) == ["Silu"]
    m = model([node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"]), node("Relu", ["s"], ["z"])],
              [vi("x", (2, 8))], ["y", "z"])
    assert kinds(load(tmp_path, m)) == ["Sigmoid", "Mul", "Relu"]


def test_rope_decomposition_is_recognised(tmp_path):
    """x * cos + Concat(-x[..., h:], x[..., :h]) * sin (HF apply_rotary_pos_emb) is one RotaryEmbedding, as is
    opset 23's RotaryEmbedding node."""
    shape = (1, 2, 4, 8)
    m = model([node("Slice", ["x", "z", "h", "last"], ["x1"]), node("Slice", ["x", "h", "e", "last"], ["x2"]),
               node("Neg", ["x2"], ["n"]), node("Concat", ["n", "x1"], ["rot"], axis=-1),
               node("Mul", ["rot", "sin"], ["rs"]), node("Mul", ["x", "cos"], ["xc"]),
               node("Add", ["xc", "rs"], ["y"])],
              [vi("x", shape)], ["y"],
              [const("z", [0]), const("h", [4]), const("e", [8]), const("last", [-1]), weight("sin", 4, 8),
               weight("cos", 4, 8)])
    g = load(tmp_path, m)
    assert kinds(g) == ["RotaryEmbedding"] and out_shape(g) == shape
    m = model([node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])], [vi("x", shape)], ["y"],
              [weight("cos", 8, 4), weight("sin", 8, 4), const("pos", np.zeros((1, 4)))], opset=23)
    assert kinds(load(tmp_path, m)) == ["RotaryEmbedding"]


def attention_model(hq: int, hkv: int, s: int, d: int, mask: bool = False, opset: int = 23):
    """One opset-23 Attention node on 4-d Q (1, hq, s, d), K and V (1, hkv, s, d)."""
    ins = ["q", "k", "v"] + (["mask"] if mask else [])
    inits = [const("mask", np.tril(np.ones((s, s))), bool)] if mask else []
    return model([node("Attention", ins, ["y"])], [vi("q", (1, hq, s, d)), vi("k", (1, hkv, s, d)),
                                                   vi("v", (1, hkv, s, d))], ["y"], inits, opset)


def test_attention_op_groups_query_heads_and_fuses(tmp_path):
    """GQA 8 query heads over 2 KV heads: Q viewed as (1, 2, 4 * S, d) as the built-in decoders do, so one
    flash-attention kernel under --fusion full runs over the 2 KV heads with 4 * S query rows each (K and V read
    once per KV head); MACs 2 * H * S^2 * d either way."""
    g = load(tmp_path, attention_model(8, 2, 16, 32, mask=True))
    assert kinds(g) == ["Transpose", "Reshape", "MatMul", "Mul", "Add", "Softmax", "MatMul", "Reshape"]
    assert graph_macs(g) == 2 * 8 * 16 * 16 * 32
    assert g.tensors[g.ops[2].outputs[0]].shape == (1, 2, 64, 16)
    attention = [k for k in make_kernels(g, "full") if isinstance(k.work, AttentionWork)]
    assert len(attention) == 1 and (attention[0].work.g, attention[0].work.sq, attention[0].work.skv) == (2, 64, 16)


def exported_attention(s: int, d: int, hq: int, hkv: int, guard: bool = True):
    """Attention as torch's legacy exporter writes HF's eager attention: repeat_kv (Unsqueeze -> Expand ->
    Reshape) of K and V when hq > hkv, MatMul(q, K^T) -> Mul(scale) -> Where(mask, s, -inf) -> Softmax ->
    [Where(IsNaN(p), 0, p)] -> MatMul(p, V)."""
    nodes, inits = [], [const("scale", d ** -0.5, np.float32), const("mask", np.tril(np.ones((s, s))), bool),
                        const("ninf", -np.inf, np.float32), const("zero", 0.0, np.float32),
                        const("ax2", [2]), const("rep", [1, hkv, hq // hkv, s, d]), const("heads", [1, hq, s, d])]
    for t in "kv":
        if hq > hkv:
            nodes += [node("Unsqueeze", [t, "ax2"], [f"{t}5"]), node("Expand", [f"{t}5", "rep"], [f"{t}e"]),
                      node("Reshape", [f"{t}e", "heads"], [f"{t}r"])]
    k, v = ("kr", "vr") if hq > hkv else ("k", "v")
    nodes += [node("Transpose", [k], ["kt"], perm=[0, 1, 3, 2]), node("MatMul", ["q", "kt"], ["qk"]),
              node("Mul", ["qk", "scale"], ["sc"]), node("Where", ["mask", "sc", "ninf"], ["mk"]),
              node("Softmax", ["mk"], ["p"], axis=-1)]
    nodes += [node("IsNaN", ["p"], ["nan"]), node("Where", ["nan", "zero", "p"], ["pg"])] if guard else []
    nodes += [node("MatMul", ["pg" if guard else "p", v], ["y"])]
    return model(nodes, [vi("q", (1, hq, s, d)), vi("k", (1, hkv, s, d)), vi("v", (1, hkv, s, d))], ["y"], inits)


@pytest.mark.parametrize("hq, hkv, guard", [(2, 2, True), (2, 2, False), (8, 2, True)])
def test_exported_attention_is_recognised(tmp_path, hq, hkv, guard):
    """The exported chain becomes one Attention: K and V un-repeated and query heads grouped over KV heads, the
    mask tiled to the grouped rows; --fusion full then makes one flash-attention kernel, with the same MACs and
    the same kernels as the opset-23 Attention node."""
    s, d = 16, 8
    g = load(tmp_path, exported_attention(s, d, hq, hkv, guard))
    assert "Expand" not in kinds(g) and "IsNaN" not in kinds(g)
    assert kinds(g) == ["Transpose", "Reshape", "MatMul", "Mul", "Add", "Softmax", "MatMul", "Reshape"]
    assert graph_macs(g) == 2 * hq * s * s * d
    fused = [k.work for k in make_kernels(g, "full") if isinstance(k.work, AttentionWork)]
    assert len(fused) == 1 and (fused[0].g, fused[0].sq, fused[0].skv) == (hkv, hq // hkv * s, s)
    direct = load(tmp_path, attention_model(hq, hkv, s, d, mask=True))
    assert [k.work for k in make_kernels(direct, "full")] == [k.work for k in make_kernels(g, "full")]


def test_attention_with_a_computed_mask_tiles_it_over_grouped_heads(tmp_path):
    m = model([node("Attention", ["q", "k", "v", "m"], ["y"])],
              [vi("q", (1, 8, 16, 8)), vi("k", (1, 2, 16, 8)), vi("v", (1, 2, 16, 8)),
               vi("m", (1, 1, 16, 16), TensorProto.BOOL)], ["y"], opset=23)
    g = load(tmp_path, m)
    tile = next(op for op in g.ops if op.op_type == "Tile")
    assert g.tensors[tile.outputs[0]].shape == (1, 1, 64, 16) and out_shape(g) == (1, 8, 16, 8)


def test_causal_mask_subgraph_folds_with_bound_dims(tmp_path):
    """A causal mask built from the sequence length (Shape -> Gather -> Range -> Unsqueeze -> LessOrEqual ->
    Where(., 0, -inf)) folds to a constant once --seq-len binds the dim: only the score Add reaches the IR."""
    m = model([node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "one"], ["s"], axis=0),
               node("Range", ["zero_i", "s", "one"], ["r"]), node("Unsqueeze", ["r", "ax0"], ["row"]),
               node("Unsqueeze", ["r", "ax1"], ["col"]), node("LessOrEqual", ["row", "col"], ["keep"]),
               node("Where", ["keep", "zero", "ninf"], ["mask"]), node("Add", ["x", "mask"], ["y"])],
              [vi("x", (1, "seq", "seq"))], ["y"],
              [const("one", 1), const("zero_i", 0), const("ax0", [0]), const("ax1", [1]),
               const("zero", 0.0, np.float32), const("ninf", -np.inf, np.float32)])
    g = load(tmp_path, m, seq_len=16)
    assert kinds(g) == ["Add"] and g.tensors["mask"].is_param and g.tensors["mask"].shape == (16, 16)


EINSUMS = [  # (equation, shapes, output shape, MACs)
    ("bhid,bhjd->bhij", [(2, 3, 5, 8), (2, 3, 7, 8)], (2, 3, 5, 7), 2 * 3 * 5 * 7 * 8),
    ("bij,bjk->bik", [(2, 5, 8), (2, 8, 4)], (2, 5, 4), 2 * 5 * 4 * 8),
    ("...ij,jk->...ik", [(2, 5, 8), (8, 4)], (2, 5, 4), 2 * 5 * 4 * 8),
    ("bn,anm,bm->ba", None, None, None),                    # three operands: refused
]


@pytest.mark.parametrize("eq, shapes, out, macs", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum_as_contraction(tmp_path, eq, shapes, out, macs):
    if shapes is None:
        m = model([node("Einsum", ["a", "b", "c"], ["y"], equation=eq)],
                  [vi("a", (2, 3)), vi("b", (4, 3, 5)), vi("c", (2, 5))], ["y"])
        with pytest.raises(InputError, match="only two-operand contractions"):
            load(tmp_path, m)
        return
    m = model([node("Einsum", ["a", "b"], ["y"], equation=eq)], [vi("a", shapes[0]), vi("b", shapes[1])], ["y"])
    g = load(tmp_path, m)
    assert out_shape(g) == out and graph_macs(g) == macs and kinds(g).count("MatMul") == 1


def test_einsum_that_is_not_a_contraction_is_refused(tmp_path):
    m = model([node("Einsum", ["a", "b"], ["y"], equation="ij,jk->i")], [vi("a", (2, 3)), vi("b", (3, 4))], ["y"])
    with pytest.raises(InputError, match="not a single contraction"):
        load(tmp_path, m)


def ms_model(nodes, inputs, outputs, inits=()):
    """A model using com.microsoft ops (ONNX shape inference does not know them: outputs typed by hand)."""
    graph = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])


def ms(op: str, ins, outs, **attrs):
    return helper.make_node(op, list(ins), list(outs), name=outs[0], domain="com.microsoft", **attrs)


def test_onnxruntime_contrib_ops(tmp_path):
    """SkipLayerNormalization (residual Add, bias Add, LayerNorm), FastGelu (bias Add, Gelu), BiasGelu, QGemm,
    QLinearAdd, QLinearGlobalAveragePool."""
    m = ms_model([ms("SkipLayerNormalization", ["x", "skip", "g", "b", "bias"], ["ln", "", "", "sum"]),
                  ms("FastGelu", ["ln", "bias"], ["fg"]), ms("BiasGelu", ["fg", "bias"], ["bg"]),
                  node("Add", ["bg", "sum"], ["y"])],
                 [vi("x", (2, 4, 16)), vi("skip", (2, 4, 16))], [vi("y", (2, 4, 16))],
                 [weight(n, 16) for n in ("g", "b", "bias")])
    g = load(tmp_path, m)
    assert kinds(g) == ["Add", "Add", "LayerNormalization", "Add", "Gelu", "Add", "Gelu", "Add"]
    assert [op.attrs.get("approximate") for op in g.ops if op.op_type == "Gelu"] == ["tanh", "none"]
    q = [const("s", 0.1, np.float32), const("zp", 0, np.int8)]
    m = ms_model([ms("QGemm", ["a", "s", "zp", "w", "s", "zp"], ["h"], transB=1),
                  ms("QLinearAdd", ["h", "s", "zp", "h", "s", "zp", "s", "zp"], ["y"])],
                 [vi("a", (4, 32), TensorProto.INT8)], [vi("y", (4, 8), TensorProto.INT8)],
                 [*q, weight("w", 8, 32, dtype=np.int8)])
    g = load(tmp_path, m, dtype=None)
    assert kinds(g) == ["Gemm", "Add"] and graph_macs(g) == 4 * 8 * 32 and g.tensors["y"].dtype == "int8"
    m = ms_model([ms("QLinearGlobalAveragePool", ["x", "s", "zp", "s", "zp"], ["y"], channels_last=0)],
                 [vi("x", X, TensorProto.INT8)], [vi("y", (1, 4, 1, 1), TensorProto.INT8)], q)
    assert kinds(load(tmp_path, m, dtype=None)) == ["GlobalAveragePool"]


def test_dynamic_quantize_linear_is_quantize_work(tmp_path):
    """DynamicQuantizeLinear -> MatMulInteger: a min and a max over x, scalar scale and zero point, the int8 cast,
    then the int8 MatMul."""
    m = model([node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
               node("MatMulInteger", ["xq", "w", "xz"], ["y"])],
              [vi("x", (4, 16))], ["y"], [weight("w", 16, 8, dtype=np.uint8)])
    g = load(tmp_path, m)
    assert kinds(g) == ["ReduceMin", "ReduceMax", "Sub", "Cast", "Cast", "MatMul"]
    assert g.tensors["xq"].dtype == "int8" and graph_macs(g) == 4 * 8 * 16


def test_if_with_a_constant_condition_is_inlined(tmp_path):
    then = helper.make_graph([node("Relu", ["x"], ["t"])], "then", [], [vi("t", (2, 3))])
    other = helper.make_graph([node("Sigmoid", ["x"], ["e"])], "else", [], [vi("e", (2, 3))])
    for flag, op in ((True, "Relu"), (False, "Sigmoid")):
        m = model([node("If", ["c"], ["h"], then_branch=then, else_branch=other), node("Tanh", ["h"], ["y"])],
                  [vi("x", (2, 3))], ["y"], [const("c", flag, bool)])
        assert kinds(load(tmp_path, m)) == [op, "Identity", "Tanh"]


def branches(heavy_first: bool):
    """Two If branches over x (4, 16): a MatMul with w (16, 16) then Relu, and a lone Sigmoid."""
    heavy = helper.make_graph([node("MatMul", ["x", "w"], ["hm"]), node("Relu", ["hm"], ["hr"])], "heavy", [],
                              [vi("hr", (4, 16))])
    light = helper.make_graph([node("Sigmoid", ["x"], ["ls"])], "light", [], [vi("ls", (4, 16))])
    return (heavy, light) if heavy_first else (light, heavy)


@pytest.mark.parametrize("heavy_first", [True, False])
def test_if_with_a_computed_condition_costs_its_more_expensive_branch(tmp_path, heavy_first):
    then, other = branches(heavy_first)
    m = model([node("ReduceSum", ["x"], ["s"], keepdims=0), node("Greater", ["s", "zero"], ["c"]),
               node("If", ["c"], ["h"], then_branch=then, else_branch=other), node("Tanh", ["h"], ["y"])],
              [vi("x", (4, 16))], ["y"], [const("zero", 0.0, np.float32), weight("w", 16, 16)])
    taken = "then_branch" if heavy_first else "else_branch"
    with pytest.warns(UserWarning, match=rf"node 'h' \(If\): condition computed at run time; costed as its more "
                      rf"expensive branch, {taken} \(then_branch: {1024 if heavy_first else 0:,} MACs"):
        g = load(tmp_path, m)
    assert kinds(g) == ["ReduceSum", "Greater", "MatMul", "Relu", "Identity", "Tanh"]
    assert graph_macs(g) == 4 * 16 * 16


def loop_model(trips: list | None, scan: bool = True):
    """y = Loop over x (4, 16): each trip x <- Relu(x @ w); the scan output stacks every trip's x. `trips` None:
    the trip count is a graph input (computed at run time)."""
    body = helper.make_graph(
        [node("Identity", ["cond_in"], ["cond_out"]), node("MatMul", ["x_in", "w"], ["bm"]),
         node("Relu", ["bm"], ["x_out"])] + ([node("Identity", ["x_out"], ["x_scan"])] if scan else []),
        "body", [vi("i", (), I64), vi("cond_in", (), TensorProto.BOOL), vi("x_in", (4, 16))],
        [vi("cond_out", (), TensorProto.BOOL), vi("x_out", (4, 16))] + ([vi("x_scan", (4, 16))] if scan else []))
    inputs = [vi("x", (4, 16))] + ([vi("m", (), I64)] if trips is None else [])
    inits = [weight("w", 16, 16)] + ([const("m", trips)] if trips is not None else [])
    outs = [vi("y", (4, 16))] + ([vi("stack", (trips or 1, 4, 16))] if scan else [])
    graph = helper.make_graph([node("Loop", ["m", "", "x"], [o.name for o in outs], body=body)], "m", inputs, outs,
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])   # as exporters write shapes


def test_loop_with_a_constant_trip_count_is_unrolled(tmp_path):
    g = load(tmp_path, loop_model(3))
    assert graph_macs(g) == 3 * 4 * 16 * 16
    assert [op.op_type for op in g.ops if op.op_type in ("MatMul", "Relu")] == ["MatMul", "Relu"] * 3
    assert g.tensors["y"].shape == (4, 16) and g.tensors["stack"].shape == (3, 4, 16)
    chain = [op for op in g.ops if op.op_type == "MatMul"]
    assert chain[1].inputs[0] != chain[0].inputs[0]                  # trip 2 reads trip 1's result
    assert len(make_kernels(g, "epilogue")) < len(make_kernels(g, "none"))


def test_loop_with_a_run_time_trip_count_is_one_error_or_free_data_movement(tmp_path, capsys):
    m = loop_model(None, scan=False)
    err = cli_error(capsys, "-w", save(tmp_path, m))
    assert "node 'y' (Loop): its trip count is computed at run time" in err and "--unknown-ops free" in err
    with pytest.warns(UserWarning, match="Loop x1"):
        g = load(tmp_path, m, unknown_ops="free")
    assert kinds(g) == ["Opaque"] and graph_macs(g) == 0


def test_unsupported_counts_downstream_ops_that_only_fold(tmp_path, capsys):
    """Sign folds with constant inputs but has no handler: after an unsupported Resize it counts; the Shape
    subgraph over the Resize's output does not (its values are known once Resize is)."""
    m = model([node("Resize", ["x", "", "scales"], ["r"]), node("Sign", ["r"], ["s"]),
               node("Shape", ["r"], ["sh"]), node("Reshape", ["s", "sh"], ["y"])],
              [vi("x", (1, 2, 4, 4))], ["y"], [const("scales", [1, 1, 2, 2], np.float32)])
    err = cli_error(capsys, "-w", save(tmp_path, m))
    assert "unsupported ONNX ops: Resize x1 (first: 'r'), Sign x1 (first: 's'); supported: " in err


def test_unknown_ops_free_costs_data_movement(tmp_path):
    m = model([node("Resize", ["x", "", "scales"], ["r"]), node("Relu", ["r"], ["y"])],
              [vi("x", (1, 2, 4, 4))], ["y"], [const("scales", [1, 1, 2, 2], np.float32)])
    path = save(tmp_path, m)
    with pytest.warns(UserWarning, match=r"costed as data movement of their outputs \(--unknown-ops free\): "
                                         r"Resize x1"):
        g = load_workload(path, unknown_ops="free")
    assert kinds(g) == ["Opaque", "Relu"] and g.tensors["r"].shape == (1, 2, 8, 8)
    work = lower_op(g, g.ops[0])
    assert work.ops == 0 and work.write_bytes == 128 * 4
    with pytest.raises(InputError, match="unsupported ONNX ops: Resize x1"):
        load_workload(path)
    with pytest.raises(InputError, match="unknown_ops: got 'skip', allowed: error, free"):
        load_workload(path, unknown_ops="skip")


def test_constant_external_data_resolves_against_the_model_folder(tmp_path, monkeypatch):
    """A Constant whose value lives in an external file next to the model: read from the model's folder, not the
    working directory."""
    folder = tmp_path / "model"
    folder.mkdir()
    shape = np.array([4, 16], np.int64)
    (folder / "shape.bin").write_bytes(shape.tobytes())
    value = numpy_helper.from_array(shape, "shape_value")
    onnx.external_data_helper.set_external_data(value, "shape.bin", length=16)
    value.data_location = TensorProto.EXTERNAL
    value.ClearField("raw_data")
    graph = helper.make_graph([node("Constant", [], ["shape"], value=value), node("Reshape", ["x", "shape"], ["y"])],
                              "m", [vi("x", (8, 8))], [vi("y", (4, 16))])
    path = save(folder, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    monkeypatch.chdir(tmp_path)
    assert out_shape(load_workload(str(path))) == (4, 16)


class LlamaBlock:
    """One Llama decoder layer as torch's legacy exporter writes HF's LlamaDecoderLayer (eager attention, no KV
    cache): RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul/Mul, q/k/v projections viewed (B, S, H, d) and
    transposed, RoPE as x cos + Concat(-x2, x1) sin, repeat_kv as Unsqueeze/Expand/Reshape, MatMul -> Mul(scale)
    -> Add(causal mask) -> Softmax -> MatMul, heads merged, o projection and residual, RMSNorm, SwiGLU MLP with SiLU
    as x * sigmoid(x), residual. Weights carry shapes only (external data that is not there). `casts`: as
    transformers 5 writes it, RMSNorm in float32 (Cast x; rsqrt as Div(1, Sqrt); Cast back before the weight) and
    the softmax's result cast twice before the PV MatMul."""

    def __init__(self, cfg, seq: int, casts: bool = False):
        self.cfg, self.seq, self.nodes, self.inits, self.casts = cfg, seq, [], [], casts
        hd, s = cfg.head_dim, seq
        for name, values, dt in (("two", 2.0, np.float32), ("eps", 1e-5, np.float32), ("last", [-1], np.int64),
                                 ("zero", [0], np.int64), ("half", [hd // 2], np.int64), ("end", [hd], np.int64),
                                 ("ax2", [2], np.int64), ("scale", hd ** -0.5, np.float32), ("one", 1.0, np.float32),
                                 ("cos", np.ones((1, 1, s, hd)), np.float32),
                                 ("sin", np.ones((1, 1, s, hd)), np.float32),
                                 ("mask", np.triu(np.full((1, 1, s, s), -np.inf), 1), np.float32),
                                 ("merge", [1, s, cfg.heads * hd], np.int64)):
            self.inits.append(numpy_helper.from_array(np.asarray(values, dt), name))

    def weight(self, name: str, *shape) -> str:
        t = numpy_helper.from_array(np.zeros(1, np.float32), name)
        onnx.external_data_helper.set_external_data(t, "absent.bin", length=4 * int(np.prod(shape)))
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        t.dims[:] = shape
        self.inits.append(t)
        return name

    def op(self, op_type: str, ins, out: str, **attrs) -> str:
        self.nodes.append(node(op_type, ins, [out], **attrs))
        return out

    def rms(self, x: str, p: str) -> str:
        if self.casts:
            x = self.op("Cast", [x], f"{p}.f32", to=TensorProto.FLOAT)
        var = self.op("ReduceMean", [self.op("Pow", [x, "two"], f"{p}.sq")], f"{p}.var", axes=[-1])
        rs = self.op("Sqrt", [self.op("Add", [var, "eps"], f"{p}.ve")], f"{p}.rs")
        inv = self.op("Div", ["one", rs], f"{p}.inv") if self.casts else self.op("Reciprocal", [rs], f"{p}.inv")
        n = self.op("Mul", [x, inv], f"{p}.n")
        if self.casts:
            n = self.op("Cast", [n], f"{p}.back", to=TensorProto.FLOAT)
        return self.op("Mul", [self.weight(f"{p}.w", self.cfg.hidden), n], p)

    def heads(self, x: str, n: int, p: str) -> str:
        self.inits.append(numpy_helper.from_array(np.array([1, self.seq, n, self.cfg.head_dim]), f"{p}.shape"))
        return self.op("Transpose", [self.op("Reshape", [x, f"{p}.shape"], f"{p}.r")], p, perm=[0, 2, 1, 3])

    def rope(self, x: str, p: str) -> str:
        x1 = self.op("Slice", [x, "zero", "half", "last"], f"{p}.x1")
        x2 = self.op("Slice", [x, "half", "end", "last"], f"{p}.x2")
        rot = self.op("Concat", [self.op("Neg", [x2], f"{p}.neg"), x1], f"{p}.rot", axis=-1)
        return self.op("Add", [self.op("Mul", [x, "cos"], f"{p}.c"), self.op("Mul", [rot, "sin"], f"{p}.s")], p)

    def repeat_kv(self, x: str, p: str) -> str:
        c = self.cfg
        for name, values in ((f"{p}.rep", [1, c.kv_heads, c.group, self.seq, c.head_dim]),
                             (f"{p}.all", [1, c.heads, self.seq, c.head_dim])):
            self.inits.append(numpy_helper.from_array(np.array(values), name))
        e = self.op("Expand", [self.op("Unsqueeze", [x, "ax2"], f"{p}.u"), f"{p}.rep"], f"{p}.e")
        return self.op("Reshape", [e, f"{p}.all"], p)

    def model(self):
        c, d = self.cfg, self.cfg.hidden
        x = "x"
        h = self.rms(x, "ln1")
        q = self.rope(self.heads(self.op("MatMul", [h, self.weight("wq", d, c.heads * c.head_dim)], "q"), c.heads,
                                 "qh"), "q_rope")
        k = self.rope(self.heads(self.op("MatMul", [h, self.weight("wk", d, c.kv_heads * c.head_dim)], "k"),
                                 c.kv_heads, "kh"), "k_rope")
        v = self.heads(self.op("MatMul", [h, self.weight("wv", d, c.kv_heads * c.head_dim)], "v"), c.kv_heads, "vh")
        kt = self.op("Transpose", [self.repeat_kv(k, "k_rep")], "kt", perm=[0, 1, 3, 2])
        scores = self.op("Add", [self.op("Mul", [self.op("MatMul", [q, kt], "qk"), "scale"], "sc"), "mask"], "mk")
        probs = self.op("Softmax", [scores], "p", axis=-1)
        if self.casts:
            probs = self.op("Cast", [self.op("Cast", [probs], "p32", to=TensorProto.FLOAT)], "pc", to=TensorProto.FLOAT)
        ctx = self.op("MatMul", [probs, self.repeat_kv(v, "v_rep")], "ctx")
        ctx = self.op("Reshape", [self.op("Transpose", [ctx], "ctx.t", perm=[0, 2, 1, 3]), "merge"], "ctx.m")
        x = self.op("Add", [x, self.op("MatMul", [ctx, self.weight("wo", c.heads * c.head_dim, d)], "o")], "res1")
        h = self.rms(x, "ln2")
        gate = self.op("MatMul", [h, self.weight("wg", d, c.ffn)], "gate")
        silu = self.op("Mul", [gate, self.op("Sigmoid", [gate], "sg")], "silu")
        up = self.op("MatMul", [h, self.weight("wu", d, c.ffn)], "up")
        down = self.op("MatMul", [self.op("Mul", [silu, up], "gated"), self.weight("wd", c.ffn, d)], "down")
        self.op("Add", [x, down], "y")
        graph = helper.make_graph(self.nodes, "llama_block", [vi("x", (1, self.seq, d))], [vi("y", (1, self.seq, d))],
                                  initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("casts", [False, True], ids=["transformers4", "transformers5_casts"])
def test_exported_llama_block_matches_the_builtin_llama3_8b(tmp_path, casts):
    """A Llama-3-8B layer (GQA 32/8, d 4096, SwiGLU 14336) as the legacy exporter writes it imports into the same
    kernels as layer 0 of the built-in llama3-8b under --fusion full (RMSNorm, SiLU and RoPE recognised, RoPE moved
    before the heads transpose, repeat_kv undone, one flash-attention kernel per block), with the same MACs and
    cycles within 2% (the causal mask, which the built-in does not model, is the only extra read)."""
    cfg, seq = replace(llm.LLAMA3_8B, layers=1), 128
    path = save(tmp_path, LlamaBlock(cfg, seq, casts).model())
    for name in ("tpu-v4", "edge-npu"):
        arch = load_arch(name)
        exported = load_workload(path, dtype=arch.array.dtype)
        builtin = llm.prefill_graph(cfg, 1, seq, arch.array.dtype)
        block = [k for k in make_kernels(builtin, "full") if any(o.startswith("layer0.") for o in k.ops)]
        assert [(type(k.work), k.work.macs) for k in make_kernels(exported, "full")] == \
            [(type(k.work), k.work.macs) for k in block]
        a, b = simulate(lower(exported, arch), arch), simulate(lower(builtin, arch), arch)
        ours = sum(k.cycles for k in b.kernels if any(o.startswith("layer0.") for o in k.ops))
        assert a.macs == sum(k.macs for k in b.kernels if any(o.startswith("layer0.") for o in k.ops))
        assert abs(a.cycles / ours - 1) < 0.02, (name, a.cycles, ours)


INT64_MAX = 2**63 - 1     # torch's legacy exporter writes x[..., a:] as Slice(x, a, INT64_MAX)


def test_partial_rotary_with_an_empty_pass_through_slice(tmp_path):
    """Phi-3 as torch's legacy exporter writes it: q_rot = q[..., :rotary_dim], q_pass = q[..., rotary_dim:]
    with rotary_dim = head_dim, rope(q_rot), then Concat(q_embed, q_pass). ONNX clamps the pass-through Slice's
    start 8 to its axis of 8 (ends INT64_MAX to 8), so it is empty (size 0, no values to move); the whole-range
    Slice is the tensor itself. Both are views, the Concat adds nothing: RotaryEmbedding then MatMul, with the MACs
    of the MatMul alone (this import used to fail: "non-positive dimension (1, 2, 4, 0)")."""
    shape = (1, 2, 4, 8)
    m = model([node("Slice", ["q", "z", "rd", "last"], ["rot"]), node("Slice", ["q", "rd", "big", "last"], ["pas"]),
               node("Slice", ["rot", "z", "h", "last"], ["x1"]), node("Slice", ["rot", "h", "big", "last"], ["x2"]),
               node("Neg", ["x2"], ["n"]), node("Concat", ["n", "x1"], ["rh"], axis=-1),
               node("Mul", ["rh", "sin"], ["rs"]), node("Mul", ["rot", "cos"], ["xc"]),
               node("Add", ["xc", "rs"], ["emb"]), node("Concat", ["emb", "pas"], ["qe"], axis=-1),
               node("MatMul", ["qe", "kt"], ["y"])],
              [vi("q", shape)], ["y"],
              [const("z", [0]), const("h", [4]), const("rd", [8]), const("big", [INT64_MAX]), const("last", [-1]),
               weight("sin", 4, 8), weight("cos", 4, 8), weight("kt", 1, 2, 8, 4)])
    g = load(tmp_path, m)
    assert [k for k in kinds(g) if k != "Identity"] == ["RotaryEmbedding", "MatMul"]
    assert out_shape(g) == (1, 2, 4, 4) and graph_macs(g) == 2 * 4 * 4 * 8
    assert all(0 not in t.shape for t in g.tensors.values())
    assert all(lower_op(g, op) is None for op in g.ops if op.op_type == "Identity")     # views: no work


@pytest.mark.parametrize("starts, ends, steps, out, moved", [
    ([-100], [INT64_MAX], [1], (2, 8), False),      # both ends clamped: every element, a view
    ([3], [-INT64_MAX], [-1], (2, 4), True),        # reversed, clamped to -1: elements 3, 2, 1, 0
    ([-3], [INT64_MAX], [1], (2, 3), True),         # the last three
    ([INT64_MAX], [INT64_MAX], [1], (2, 0), False),  # empty
])
def test_slice_clamps_starts_and_ends_as_onnx_does(tmp_path, starts, ends, steps, out, moved):
    """Slice bounds are clamped to the axis (ONNX: start to [0, dim] or [0, dim - 1] for negative steps, end to
    [0, dim] or [-1, dim - 1]); numpy's folding of the same Slice on a constant gives the same shape."""
    inits = [const("s", starts), const("e", ends), const("a", [-1]), const("st", steps)]
    m = model([node("Slice", ["x", "s", "e", "a", "st"], ["sl"]), node("Concat", ["sl", "x"], ["y"], axis=-1)],
              [vi("x", (2, 8))], ["y"], inits)
    g = load(tmp_path, m)
    assert out_shape(g) == (2, 8 + out[1])
    assert ("Slice" in kinds(g)) == moved
    folded = model([node("Slice", ["c", "s", "e", "a", "st"], ["sl"]), node("Shape", ["sl"], ["sh"]),
                    node("Reshape", ["x", "sh"], ["y"])], [vi("x", out)], ["y"],
                   [const("c", np.arange(16).reshape(2, 8), np.float32), *inits])
    if out[1]:
        assert out_shape(load(tmp_path, folded)) == out


@pytest.mark.parametrize("op, ir", [("ReduceL2", ["Mul", "ReduceSum", "Sqrt"]), ("ReduceL1", ["Abs", "ReduceSum"]),
                                    ("ReduceSumSquare", ["Mul", "ReduceSum"]), ("ReduceLogSum", ["ReduceSum", "Log"]),
                                    ("ReduceLogSumExp", ["Exp", "ReduceSum", "Log"])])
def test_reductions_made_of_a_sum(tmp_path, op, ir):
    """F.normalize as exported (swin_v2's cosine attention) reduces with ReduceL2: x*x, a row sum, a square root;
    the other ONNX reductions likewise around a ReduceSum, each elementwise op one op per element it writes."""
    m = model([node(op, ["x", "axes"], ["y"], keepdims=1)], [vi("x", (2, 3, 8))], ["y"], [const("axes", [-1])])
    g = load(tmp_path, m)
    assert kinds(g) == ir and out_shape(g) == (2, 3, 1)
    ops = {o.op_type: lower_op(g, o).ops for o in g.ops}
    assert ops["ReduceSum"] == 48 and ops.get("Mul", 48) == 48 and ops.get("Sqrt", ops.get("Log", 6)) == 6


def exported_moe(tokens: int, d: int, f: int, experts: int, top_k: int, traced_hits: int):
    """An MoE layer as torch's legacy exporter writes HF's MixtralSparseMoeBlock (experts_implementation="eager"):
    router, TopK, OneHot(experts + 1) mask, the hit experts' NonZero split into `traced_hits` loop copies (the
    experts the traced input hit), each with its token NonZero, Gather, gate_up MatMul chunked by a Slice whose
    ends come from Shape, SiLU, down MatMul, routing weight, and index_add_ as ScatterElements into zeros + Add."""
    nodes = [node("MatMul", ["x", "w_router"], ["logits"]), node("Softmax", ["logits"], ["p"], axis=-1),
             node("TopK", ["p", "k"], ["top_v", "top_i"], axis=-1),
             node("ReduceSum", ["top_v", "ax1"], ["top_sum"], keepdims=1), node("Div", ["top_v", "top_sum"], ["w"]),
             node("OneHot", ["top_i", "depth", "onoff"], ["hot"], axis=-1),
             node("Transpose", ["hot"], ["mask"], perm=[2, 1, 0]),
             node("ReduceSum", ["mask", "ax_tk"], ["per_expert"], keepdims=0),
             node("Greater", ["per_expert", "zero"], ["hit"]), node("NonZero", ["hit"], ["hit_nz"]),
             node("Transpose", ["hit_nz"], ["hit_t"], perm=[1, 0]),
             node("Split", ["hit_t", "ones"], [f"hit{e}" for e in range(traced_hits)], axis=0),
             node("Unsqueeze", ["w", "ax2"], ["w3"]), node("Flatten", ["w3"], ["w_flat"], axis=2)]
    acc = None
    for e in range(traced_hits):
        p = f"e{e}/"
        nodes += [node("Squeeze", [f"hit{e}", "ax1"], [p + "e1"]), node("Gather", [p + "e1", "zero"], [p + "e"]),
                  node("Gather", ["mask", p + "e"], [p + "m"], axis=0), node("Cast", [p + "m"], [p + "mb"], to=9),
                  node("NonZero", [p + "mb"], [p + "nz"]), node("Transpose", [p + "nz"], [p + "nzt"], perm=[1, 0]),
                  node("Split", [p + "nzt", "one_one"], [p + "pos2", p + "tok2"], axis=1),
                  node("Squeeze", [p + "pos2", "ax1"], [p + "pos"]), node("Squeeze", [p + "tok2", "ax1"], [p + "tok"]),
                  node("Gather", ["x", p + "tok"], [p + "xs"], axis=0),
                  node("Gather", ["w_gate_up", p + "e"], [p + "wgu"], axis=0),
                  node("Transpose", [p + "wgu"], [p + "wgu_t"], perm=[1, 0]),
                  node("MatMul", [p + "xs", p + "wgu_t"], [p + "h"]), node("Shape", [p + "h"], [p + "hs"]),
                  node("Gather", [p + "hs", "one"], [p + "h2f"], axis=0), node("Div", [p + "h2f", "two"], [p + "hf"]),
                  node("Mul", [p + "hf", "two"], [p + "h2"]),
                  node("Slice", [p + "h", "zero1", p + "hf", "one1"], [p + "gate"]),
                  node("Slice", [p + "h", p + "hf", p + "h2", "one1"], [p + "up"]),
                  node("Sigmoid", [p + "gate"], [p + "sg"]), node("Mul", [p + "gate", p + "sg"], [p + "act"]),
                  node("Mul", [p + "act", p + "up"], [p + "gu"]),
                  node("Gather", ["w_down", p + "e"], [p + "wd"], axis=0),
                  node("Transpose", [p + "wd"], [p + "wd_t"], perm=[1, 0]),
                  node("MatMul", [p + "gu", p + "wd_t"], [p + "y"]),
                  node("Mul", [p + "tok", "k"], [p + "tk"]), node("Add", [p + "pos", p + "tk"], [p + "slot"]),
                  node("Gather", ["w_flat", p + "slot"], [p + "ws"], axis=0),
                  node("Mul", [p + "y", p + "ws"], [p + "yw"]),
                  node("Unsqueeze", [p + "tok", "ax1"], [p + "tok_c"]), node("Shape", [p + "yw"], [p + "ys"]),
                  node("Expand", [p + "tok_c", p + "ys"], [p + "tok_e"]),
                  node("ScatterElements", ["zeros", p + "tok_e", p + "yw"], [p + "scat"], axis=0)]
        nodes.append(node("Add", [acc, p + "scat"], [p + "acc"]) if acc else
                     node("Identity", [p + "scat"], [p + "acc"]))
        acc = p + "acc"
    nodes.append(node("Identity", [acc], ["out"]))
    inits = [weight("w_router", d, experts), weight("w_gate_up", experts, 2 * f, d), weight("w_down", experts, d, f),
             weight("zeros", tokens, d), const("k", [top_k]), const("depth", [experts + 1]), const("onoff", [0, 1]),
             const("ax1", [1]), const("ax2", [2]), const("ax_tk", [-1, -2]), const("zero", 0), const("one", 1),
             const("two", 2), const("zero1", [0]), const("one1", [1]), const("ones", [1] * traced_hits),
             const("one_one", [1, 1])]
    return model(nodes, [vi("x", (tokens, d))], ["out"], inits, opset=17)


def test_exported_moe_experts_loop_costs_every_token_to_its_top_k_experts(tmp_path):
    """8 tokens, 4 experts, top-2: E[hit experts] = 4 (1 - 0.5^8) = 3.98 -> 4 loop copies, each expert's tokens
    given that it is hit 8 x 0.5 / (1 - 0.5^8) = 4.02 -> 4, so 16 = T k token-expert pairs: the router's MACs plus
    T k x 3 d f, as the built-in MoE layer counts them; the experts' weights are read as parameters."""
    t, d, f, e, k = 8, 4, 6, 4, 2
    g = load(tmp_path, exported_moe(t, d, f, e, k, traced_hits=4), dtype="bf16")
    assert graph_macs(g) == t * d * e + t * k * 3 * d * f
    nz = [op for op in g.ops if op.op_type == "NonZero"]
    assert [g.tensors[op.outputs[0]].shape for op in nz] == [(1, 4)] + [(2, 4)] * 4
    mms = [op for op in g.ops if op.op_type == "MatMul"]
    assert all(g.tensors[op.inputs[1]].is_param for op in mms)        # an expert's weights, not a gathered copy
    assert {g.tensors[op.outputs[1]].dtype for op in g.ops if op.op_type == "TopK"} == {"int32"}
    cfg = llm.config_from_hf({"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96,
                              "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                              "num_local_experts": e, "num_experts_per_tok": k, "vocab_size": 100}, "m.json")
    builtin = llm.prefill_graph(cfg, 1, t, "bf16")
    moe = [op for op in builtin.ops if ".mlp." in op.name]
    big = load(tmp_path, exported_moe(t, 64, 96, e, k, traced_hits=4), dtype="bf16")
    assert graph_macs(big) == sum(lower_op(builtin, op).macs for op in moe if lower_op(builtin, op))


def test_routing_expectations():
    """One token at top-2 of 8 hits 2 experts with one token each; many tokens hit all 8 with T k / E each."""
    one, many = Picks(1, 2, 8), Picks(4096, 2, 8)
    assert one.hit_experts == pytest.approx(2) and one.tokens_per_hit_expert == pytest.approx(1)
    assert many.hit_experts == pytest.approx(8) and many.tokens_per_hit_expert == pytest.approx(1024)


def test_non_zero_outside_the_routing_pattern_is_one_error(tmp_path, capsys):
    m = model([node("Greater", ["x", "zero"], ["pos"]), node("NonZero", ["pos"], ["nz"]),
               node("Cast", ["nz"], ["y"], to=1)], [vi("x", (2, 3))], ["y"], [const("zero", 0.0, np.float32)])
    err = cli_error(capsys, "-w", save(tmp_path, m))
    assert "node 'nz' (NonZero): its output size depends on the values of 'pos' (shape (2, 3))" in err
    assert "routed-experts pattern" in err and "Traceback" not in err
