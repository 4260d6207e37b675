"""Weight sparsity of a workload: one pattern for every weight matrix (`--weight-sparsity`), or counted from an ONNX
initializer's actual zeros; the byte and cycle rules are in compiler/sparsity.py."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.lowering import Contraction, lower_op
from tilesim.compiler.ops import OpKind, spec
from tilesim.compiler.sparsity import WeightSparsity, b_tile_bytes, nm_sparsity

DETECTED_NM = ((1, 4), (2, 4), (4, 8))    # N:M patterns recognised in an initializer's zeros, sparsest first


def weight_operands(graph: Graph) -> set[str]:
    """Names of the parameters that are a contraction's B operand (the weights the array multiplies by)."""
    return {op.inputs[1] for op in graph.ops if spec(op.op_type).kind is OpKind.CONTRACTION
            and len(op.inputs) > 1 and graph.tensors[op.inputs[1]].is_param}


def with_tensor_sparsity(graph: Graph, pruned: dict[str, WeightSparsity]) -> Graph:
    """The graph with the named tensors' sparsity set (the graph itself when none is named)."""
    if not pruned:
        return graph
    tensors = {name: replace(t, sparsity=pruned[name]) if name in pruned else t for name, t in graph.tensors.items()}
    return Graph(graph.name, tensors, list(graph.ops), graph.inputs, graph.outputs)


def apply_weight_sparsity(graph: Graph, sp: WeightSparsity | None) -> Graph:
    """The graph with every weight operand pruned as `sp` (the graph itself when sp is None)."""
    return graph if sp is None else with_tensor_sparsity(graph, dict.fromkeys(weight_operands(graph), sp))


def initializer_sparsity(values: npt.ArrayLike, k_axis: int, fmt: str = "bitmask") -> WeightSparsity | None:
    """Sparsity of weight data with the reduction dim K on `k_axis`: None without zeros; N:M when every group of
    M consecutive weights along K holds at most N non-zeros (DETECTED_NM, K a multiple of M); else unstructured
    at the counted density."""
    w = np.moveaxis(np.asarray(values), k_axis, -1)
    w = w.reshape(-1, w.shape[-1]) if w.ndim else w.reshape(1, 1)
    nonzero = int(np.count_nonzero(w))
    if w.size == 0 or nonzero == w.size:
        return None
    k = w.shape[-1]
    for n, m in DETECTED_NM:
        if k % m == 0 and (np.count_nonzero(w.reshape(w.shape[0], k // m, m), axis=-1) <= n).all():
            return nm_sparsity(n, m)
    return WeightSparsity(density=nonzero / w.size, format=fmt)   # type: ignore[arg-type]


def conv_weight_sparsity(values: npt.ArrayLike, fmt: str = "bitmask") -> WeightSparsity | None:
    """An ONNX Conv weight (C_out, C_in/g, kH, kW): K = C_in/g * kH * kW, groups along the input channels."""
    w = np.asarray(values)
    if w.ndim < 2:
        return initializer_sparsity(w, -1, fmt)
    return initializer_sparsity(np.moveaxis(w, 1, -1).reshape(w.shape[0], -1), -1, fmt)


def with_predictor(graph: Graph, ffn: int, rank: int) -> Graph:
    """A decoder graph with a low-rank predictor of active MLP neurons before every MLP (seed 003; "LLM in a
    flash"): scores = sigmoid((x @ P1[d, r]) @ P2[r, ffn]) over all `ffn` neurons from the MLP's input x, so each
    token pays d*r + r*ffn MACs, reads P1 and P2, and 4 vector ops per score. The MLP's first matmul (`*.mlp.gate`,
    or `*.mlp.up` without a gate) marks where. The graph itself when rank is 0."""
    if rank <= 0:
        return graph
    names = {op.name for op in graph.ops}
    tensors, ops, outputs = dict(graph.tensors), [], list(graph.outputs)
    for op in graph.ops:
        mlp = op.name.rsplit(".", 1)[0]
        anchor = op.op_type == "MatMul" and (op.name.endswith(".mlp.gate") or (
            op.name.endswith(".mlp.up") and f"{mlp}.gate" not in names))
        if anchor:
            x, w = tensors[op.inputs[0]], tensors[op.inputs[1]]
            lead, d, q = x.shape[:-1], x.shape[-1], f"{mlp}.predictor"
            new = [Tensor(f"{q}.down.w", (d, rank), w.dtype, is_param=True),
                   Tensor(f"{q}.down", (*lead, rank), x.dtype),
                   Tensor(f"{q}.up.w", (rank, ffn), w.dtype, is_param=True),
                   Tensor(f"{q}.up", (*lead, ffn), x.dtype), Tensor(f"{q}.score", (*lead, ffn), x.dtype)]
            tensors.update({t.name: t for t in new})
            ops += [Op(f"{q}.down", "MatMul", (x.name, f"{q}.down.w"), (f"{q}.down",)),
                    Op(f"{q}.up", "MatMul", (f"{q}.down", f"{q}.up.w"), (f"{q}.up",)),
                    Op(f"{q}.score", "Sigmoid", (f"{q}.up",), (f"{q}.score",))]
            outputs.append(f"{q}.score")
        ops.append(op)
    return Graph(graph.name, tensors, ops, graph.inputs, tuple(outputs))


def predictor_bytes(graph: Graph) -> int:
    """Bytes of the predictor weights with_predictor added."""
    return sum(t.nbytes for name, t in graph.tensors.items() if t.is_param and ".predictor." in name)


def pruned_savings_bytes(graph: Graph) -> int:
    """Bytes the pruned weight operands save against dense storage: dense bytes minus stored bytes (values plus
    metadata, compiler/sparsity.py), each tensor counted once."""
    saved, seen, weights = 0, set(), weight_operands(graph)
    for op in graph.ops:
        name = op.inputs[1] if len(op.inputs) > 1 else ""
        if name not in weights or name in seen or graph.tensors[name].sparsity is None:
            continue
        seen.add(name)
        work = lower_op(graph, op)
        if isinstance(work, Contraction):
            saved += graph.tensors[name].nbytes - work.g * int(b_tile_bytes(work, work.k, work.n))
    return saved


def counted_sparsity(graph: Graph, values_of: Callable[[str], npt.ArrayLike | None]) -> Graph:
    """The graph with each weight operand's sparsity counted from its values (`values_of(name)`, None when the
    file does not hold them): Conv weights (C_out, C_in/g, kH, kW), ConvTranspose (C_in, C_out/g, kH, kW), MatMul
    (K, N), Gemm (K, N) or (N, K) with transB."""
    found: dict[str, WeightSparsity] = {}
    for op in graph.ops:
        if spec(op.op_type).kind is not OpKind.CONTRACTION or len(op.inputs) < 2:
            continue
        name = op.inputs[1]
        if not graph.tensors[name].is_param or name in found:
            continue
        values = values_of(name)
        if values is None:
            continue
        w = np.asarray(values)
        if op.op_type == "Conv":
            sp = conv_weight_sparsity(w)
        elif op.op_type == "ConvTranspose":
            sp = conv_weight_sparsity(np.swapaxes(w, 0, 1)) if w.ndim >= 2 else None
        else:
            sp = initializer_sparsity(w, -1 if op.op_type == "Gemm" and op.attrs.get("transB", 0) else
                                      max(w.ndim - 2, 0))
        if sp is not None:
            found[name] = sp
    return with_tensor_sparsity(graph, found)


__all__ = ["DETECTED_NM", "apply_weight_sparsity", "conv_weight_sparsity", "counted_sparsity", "initializer_sparsity",
           "predictor_bytes", "pruned_savings_bytes", "weight_operands", "with_predictor", "with_tensor_sparsity"]
