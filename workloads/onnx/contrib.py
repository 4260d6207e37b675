"""ONNX Runtime contrib ops (domain com.microsoft) that exporters and ORT's optimizer write: fused norms and GELUs
become the IR's norm and activation ops (with the Adds they fold in), quantized ops run on their int8 operands
(scales and zero points cost nothing, as for QLinearConv)."""
from __future__ import annotations

from collections.abc import Callable

from tilesim.workloads.onnx.importer import Importer
from tilesim.workloads.onnx.model import node_attrs


def _input(node, i: int) -> str | None:
    """Optional input `i`, None when absent or empty."""
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _output(node, i: int) -> list[str] | None:
    """Optional output `i` as an outputs list, None when absent or empty."""
    return [node.output[i]] if len(node.output) > i and node.output[i] else None


def _skip_norm(norm: str) -> Callable[[Importer, object], None]:
    """SkipLayerNormalization / SkipSimplifiedLayerNormalization(input, skip, gamma, [beta,] bias): the residual
    Add (and bias Add) then the norm; output 3 (input + skip + bias) is the sum, outputs 1-2 (statistics) are
    training-only."""
    def run(imp: Importer, node) -> None:
        simplified = norm == "RMSNormalization"
        bias = _input(node, 3 if simplified else 4)
        total = imp.op(node, "Add", [node.input[0], node.input[1]], outputs=None if bias else _output(node, 3))[0]
        if bias:
            total = imp.op(node, "Add", [total, bias], outputs=_output(node, 3))[0]
        params = [node.input[2]] + ([] if simplified or not _input(node, 3) else [node.input[3]])
        imp.op(node, norm, [total, *params], {"axis": -1, "epsilon": node_attrs(node).get("epsilon", 1e-5)},
               outputs=[node.output[0]])
    return run


def h_simplified_norm(imp: Importer, node) -> None:
    """SimplifiedLayerNormalization(X, scale): RMSNorm."""
    a = node_attrs(node)
    imp.op(node, "RMSNormalization", [node.input[0], node.input[1]],
           {"axis": a.get("axis", -1), "epsilon": a.get("epsilon", 1e-5)}, outputs=[node.output[0]])


def _bias_gelu(approximate: str) -> Callable[[Importer, object], None]:
    """FastGelu(X, [bias]) (tanh form) and BiasGelu(A, B) (erf form): an optional bias Add, then Gelu."""
    def run(imp: Importer, node) -> None:
        x = node.input[0]
        if _input(node, 1):
            x = imp.op(node, "Add", [x, node.input[1]])[0]
        imp.op(node, "Gelu", [x], {"approximate": approximate}, outputs=[node.output[0]])
    return run


def h_qgemm(imp: Importer, node) -> None:
    """QGemm(A, a_scale, a_zp, B, b_scale, b_zp, [C, y_scale, y_zp]): Gemm on the int8 operands (C an int32 bias)."""
    a = node_attrs(node)
    ins = [node.input[0], node.input[3]] + ([node.input[6]] if _input(node, 6) else [])
    imp.op(node, "Gemm", ins, {"transA": a.get("transA", 0), "transB": a.get("transB", 0)},
           outputs=[node.output[0]])


def _qlinear_binary(op_type: str) -> Callable[[Importer, object], None]:
    """QLinearAdd / QLinearMul(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp): the op on the int8 operands."""
    def run(imp: Importer, node) -> None:
        imp.op(node, op_type, [node.input[0], node.input[3]], outputs=[node.output[0]])
    return run


def _qlinear_unary(op_type: str, keep: tuple[str, ...] = ()) -> Callable[[Importer, object], None]:
    """QLinearSigmoid / QLinearLeakyRelu(X, X_scale, X_zp, Y_scale, Y_zp): the op on the int8 operand."""
    def run(imp: Importer, node) -> None:
        a = node_attrs(node)
        imp.op(node, op_type, [node.input[0]], {k: a[k] for k in keep if k in a}, outputs=[node.output[0]])
    return run


def h_qlinear_global_pool(imp: Importer, node) -> None:
    """QLinearGlobalAveragePool(X, x_scale, x_zp, y_scale, y_zp): the global pool (channels_last: a mean over the
    spatial axes of NHWC)."""
    x = node.input[0]
    if node_attrs(node).get("channels_last", 0):
        rank = len(imp.shape(x))
        imp.op(node, "ReduceMean", [x], {"axes": tuple(range(1, rank - 1)), "keepdims": 1}, outputs=[node.output[0]])
    else:
        imp.op(node, "GlobalAveragePool", [x], outputs=[node.output[0]])


def h_qlinear_concat(imp: Importer, node) -> None:
    """QLinearConcat(Y_scale, Y_zp, (X, X_scale, X_zp)...): Concat of the int8 inputs."""
    imp.op(node, "Concat", list(node.input[2::3]), {"axis": node_attrs(node)["axis"]}, outputs=[node.output[0]])


CONTRIB: dict[str, Callable[[Importer, object], None]] = {
    "SkipLayerNormalization": _skip_norm("LayerNormalization"),
    "SkipSimplifiedLayerNormalization": _skip_norm("RMSNormalization"),
    "SimplifiedLayerNormalization": h_simplified_norm,
    "FastGelu": _bias_gelu("tanh"), "BiasGelu": _bias_gelu("none"),
    "QGemm": h_qgemm, "QLinearAdd": _qlinear_binary("Add"), "QLinearMul": _qlinear_binary("Mul"),
    "QLinearSigmoid": _qlinear_unary("Sigmoid"), "QLinearLeakyRelu": _qlinear_unary("LeakyRelu", ("alpha",)),
    "QLinearGlobalAveragePool": h_qlinear_global_pool, "QLinearConcat": h_qlinear_concat,
}
