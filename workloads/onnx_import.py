"""ONNX model -> compiler.ir.Graph (`tilesim run --workload model.onnx`); needs the optional `onnx` package.

Steps, each failing with one InputError line:
1. read the file without external weight data (the simulator needs shapes, not weight values: initializer
   shapes come from TensorProto dims, so a model whose `.onnx.data` file is missing imports all the same);
2. structural checks of our own (dangling inputs, duplicate producers, cycles, with clear messages), a
   topological sort, local functions inlined, then `onnx.checker` on a copy in which weights stored outside the
   file are graph inputs of the same type and shape;
3. symbolic dimensions of the graph inputs bound from `--dim NAME=VALUE`, `--batch` (a dim whose name contains
   'batch') and `--seq-len` (a name containing 'seq' or 'sequence'); unbound ones are listed in one error;
4. ONNX shape inference for every tensor's element type (and as a cross-check of the shapes computed here);
   a negative dimension reaching a Slice is refused first (ONNX's Slice inference asserts on one, which aborts
   the process in onnx builds with C++ assertions), and the Size of a huge tensor is not propagated (it would
   take hours);
5. decomposed LayerNorm and GELU subgraphs rewritten into the fused ops;
6. one walk in topological order: constant shape computations (Shape/Gather/Concat/Unsqueeze/Cast/... feeding
   Reshape/Expand/Slice...) are evaluated with numpy; nodes whose inputs are all constants become constants
   (weights pre-transformed offline); every other node goes through HANDLERS, one table from ONNX op type to
   the function that emits IR ops. Op types with no handler are collected and reported together.

Data types: ONNX element types map onto the IR's (float -> fp32, float16 -> fp16, bfloat16 -> bf16, float8 ->
fp8, (u)int8 -> int8, (u)int16 -> int16, int4 -> int4; int32/int64 indices -> int32 and bool -> int8, the IR
having no wider integer; double -> fp32). `dtype` (from --dtype) replaces every numeric type but those index
types; None keeps the model's. QDQ models: DequantizeLinear is free and keeps its int8 input type, so a Conv or
MatMul fed by DQ runs on int8 operands; QuantizeLinear is a Cast to int8 (an epilogue a runtime would fuse).
QLinearConv / QLinearMatMul / ConvInteger / MatMulInteger become Conv / MatMul on their int8 operands.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil, isclose, prod
from pathlib import Path

import networkx as nx
import numpy as np
from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError
from tilesim.compiler import Graph
from tilesim.compiler.ir import Op, Tensor
from tilesim.compiler.ops import infer_shapes

INSTALL_HINT = "--workload: reading .onnx files needs the onnx package: pip install 'tilesim[onnx]'"
MAX_FOLD_ELEMS = 1 << 16      # constants up to this size are evaluated with numpy; larger ones keep shapes only
BATCH_WORDS = ("batch",)
SEQ_WORDS = ("seq", "sequence")


def _onnx():
    """The onnx module, or the InputError telling how to install it."""
    try:
        import onnx
        import onnx.numpy_helper
        import onnx.shape_inference
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return onnx


# ---------------------------------------------------------------- data types

_F, _I, _INDEX = "float", "int", "index"
# ONNX TensorProto element type -> (IR dtype, class). Index-class types keep their IR type under --dtype.
_ELEM_TYPES = {
    1: ("fp32", _F), 10: ("fp16", _F), 11: ("fp32", _F), 16: ("bf16", _F),
    17: ("fp8", _F), 18: ("fp8", _F), 19: ("fp8", _F), 20: ("fp8", _F),
    2: ("int8", _I), 3: ("int8", _I), 4: ("int16", _I), 5: ("int16", _I), 21: ("int4", _I), 22: ("int4", _I),
    6: ("int32", _INDEX), 7: ("int32", _INDEX), 12: ("int32", _INDEX), 13: ("int32", _INDEX),
    9: ("int8", _INDEX),
}


def ir_dtype(elem_type: int, override: str | None, where: str) -> str:
    """The IR dtype of an ONNX element type, with `override` applied to numeric (non-index) types."""
    if elem_type not in _ELEM_TYPES:
        raise InputError(f"{where}: ONNX element type {elem_type} is not supported (no IR data type)")
    dtype, cls = _ELEM_TYPES[elem_type]
    return override if override and cls != _INDEX else dtype


# ---------------------------------------------------------------- reading and checking

def _read(path: str):
    """The ModelProto of `path` without external data; one clear line when it cannot be read."""
    onnx = _onnx()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--workload: no such file '{path}'")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise InputError(f"--workload: '{path}' is not a readable ONNX model (truncated or corrupt file?): "
                         f"{_first_line(e)}") from None
    if not model.ir_version or not model.HasField("graph") or not len(model.graph.node):
        raise InputError(f"--workload: '{path}' is not an ONNX model (no IR version or no graph nodes; "
                         "truncated or corrupt file?)")
    return model


def _first_line(e: Exception) -> str:
    """The first non-empty line of an exception's message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _node_names(graph) -> list[str]:
    """A unique, non-empty name per node (ONNX allows empty and repeated names)."""
    seen: dict[str, int] = {}
    names = []
    for i, node in enumerate(graph.node):
        base = node.name or f"{node.op_type}_{i}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n}")
    return names


def _check_structure(model, where: str) -> None:
    """Dangling inputs, duplicate producers and cycles, one clear line each; then sort the nodes topologically."""
    g = model.graph
    names = _node_names(g)
    for node, name in zip(g.node, names, strict=False):
        node.name = name
    known = {i.name for i in g.input} | {t.name for t in g.initializer}
    producer: dict[str, str] = {}
    for node in g.node:
        for t in node.output:
            if t and t in producer:
                raise InputError(f"{where}: tensor '{t}' is produced by both '{producer[t]}' and '{node.name}'")
            if t:
                producer[t] = node.name
    dag = nx.DiGraph()
    dag.add_nodes_from(names)
    for node in g.node:
        for t in node.input:
            if t and t not in producer and t not in known:
                raise InputError(f"{where}: input '{t}' of node '{node.name}' ({node.op_type}) is dangling: no node "
                                 "produces it and it is neither a graph input nor an initializer")
            if t in producer:
                dag.add_edge(producer[t], node.name)
    for out in g.output:
        if out.name not in producer and out.name not in known:
            raise InputError(f"{where}: graph output '{out.name}' is produced by no node")
    if not nx.is_directed_acyclic_graph(dag):
        cycle = [a for a, _ in nx.find_cycle(dag)]
        raise InputError(f"{where}: the graph has a cycle through nodes {' -> '.join(cycle + cycle[:1])}")
    index = {n: i for i, n in enumerate(names)}
    order = list(nx.lexicographical_topological_sort(dag, key=lambda n: f"{index[n]:09d}"))
    nodes = {n.name: n for n in g.node}
    sorted_nodes = [type(g.node[0])() for _ in order]
    for proto, name in zip(sorted_nodes, order, strict=False):
        proto.CopyFrom(nodes[name])
    del g.node[:]
    g.node.extend(sorted_nodes)


def _has_data(tensor) -> bool:
    """True when an initializer carries its values in the file itself."""
    return tensor.data_location != 1 and any(
        len(getattr(tensor, f)) for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                                          "uint64_data", "string_data"))


def _weights_as_inputs(model):
    """A light copy for onnx.checker and shape inference: initializers that are not small inline constants
    become graph inputs of the same type and shape. Files whose external weight data is absent pass, and large
    inline weights are not copied."""
    onnx = _onnx()
    m = onnx.ModelProto(ir_version=model.ir_version)
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    g, copy = model.graph, m.graph
    copy.name = g.name
    for name in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(copy, name).extend(getattr(g, name))
    inputs = {i.name for i in g.input}
    for t in g.initializer:
        if _has_data(t) and prod(t.dims) <= MAX_FOLD_ELEMS:   # shape computations may need their values
            copy.initializer.append(t)
        elif t.name not in inputs:
            copy.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def _check(model, where: str) -> None:
    """onnx.checker on the model (weights as inputs), as one line."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(_weights_as_inputs(model))
    except Exception as e:   # onnx.checker.ValidationError, mostly
        raise InputError(f"{where}: invalid ONNX model: {_first_line(e)}") from None


def _inline_functions(model, where: str):
    """Model-local functions (some exporters emit them) inlined into the main graph."""
    if not len(model.functions):
        return model
    try:
        from onnx.inliner import inline_local_functions
    except ImportError:
        raise InputError(f"{where}: the model has local functions; inlining them needs onnx>=1.16") from None
    return inline_local_functions(model)


# ---------------------------------------------------------------- symbolic dimensions

def _symbolic_dims(model, initializers: set[str], where: str) -> dict[str, list[str]]:
    """Symbolic dimension name -> the places ('input x dim 0') it appears, over the graph inputs."""
    dims: dict[str, list[str]] = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                if d.dim_value < 1:
                    raise InputError(f"{where}: input '{inp.name}' dim {i} is {d.dim_value}; every dimension must "
                                     "be >= 1")
                continue
            if not d.dim_param:
                raise InputError(f"{where}: input '{inp.name}' dim {i} has neither a size nor a name; re-export "
                                 "with fixed or named dynamic dimensions")
            dims.setdefault(d.dim_param, []).append(f"input '{inp.name}' dim {i}")
    return dims


def bind_dims(symbolic: dict[str, list[str]], dims: dict[str, int], batch: int, seq_len: int | None,
              model: str) -> dict[str, int]:
    """Values for every symbolic dim: --dim first, then --batch and --seq-len by name; one error lists the rest."""
    where = f"model {model}"
    unknown = sorted(set(dims) - set(symbolic))
    if unknown:
        have = ", ".join(symbolic) or "none"
        raise InputError(f"--dim {unknown[0]}: {where} has no symbolic dimension '{unknown[0]}' (its symbolic "
                         f"dims: {have})")
    values = dict(dims)
    batch_dims = [n for n in symbolic if any(w in n.lower() for w in BATCH_WORDS)]
    seq_dims = [n for n in symbolic if n not in batch_dims and any(w in n.lower() for w in SEQ_WORDS)]
    for n in batch_dims:
        values.setdefault(n, batch)
    if seq_len is not None:
        if not seq_dims:
            raise InputError(f"--seq-len: {where} has no symbolic sequence dimension (a name containing 'seq'); "
                             f"its symbolic dims: {', '.join(symbolic) or 'none'}; use --dim NAME=VALUE")
        for n in seq_dims:
            values.setdefault(n, seq_len)
    if batch != 1 and not batch_dims:
        raise InputError(f"--batch: {where} has no symbolic batch dimension (a name containing 'batch'; its "
                         f"symbolic dims: {', '.join(symbolic) or 'none'}); re-export with a dynamic batch axis")
    unbound = [n for n in symbolic if n not in values]
    if unbound:
        listed = "; ".join(f"{n} ({', '.join(symbolic[n])})" for n in unbound)
        raise InputError(f"--dim: {where} has unbound symbolic dimensions: {listed}; give each as --dim NAME=VALUE")
    return values


def _apply_dims(model, values: dict[str, int]) -> None:
    """Graph inputs get concrete sizes; stale intermediate and output shapes are dropped for re-inference."""
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if d.dim_param in values:
                d.dim_value = values[d.dim_param]
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


OPAQUE_DOMAIN = "tilesim.opaque"
# Ops whose ONNX shape inference must not see some inputs: Slice asserts that its input dims are >= 0 (onnx builds
# with C++ assertions abort the whole process on a negative one, which a Pad with negative pads makes), and Size's
# data propagation takes time linear in the element count (hours for 2**40 elements).
GUARDED_INFERENCE = {"Slice", "Size"}
MAX_PROPAGATED_SIZE = 1 << 24


def _guarded_model(m, where: str):
    """The model to run ONNX shape inference on: guarded ops (GUARDED_INFERENCE) are first inferred as opaque nodes
    (unknown outputs); once every guarded op upstream of one is decided, its inputs are checked: a negative dim
    reaching a Slice is refused as one line, and a Size of more than MAX_PROPAGATED_SIZE elements stays opaque
    (tilesim computes sizes itself). One extra pass, unless guarded ops feed each other."""
    onnx = _onnx()
    nodes = list(m.graph.node)
    guarded = [i for i, n in enumerate(nodes) if n.op_type in GUARDED_INFERENCE and _standard(n)]
    if not guarded:
        return m
    producer = {t: i for i, n in enumerate(nodes) for t in n.output if t}
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(nodes)))
    dag.add_edges_from((producer[t], i) for i, n in enumerate(nodes) for t in n.input if t in producer)
    upstream = {i: (nx.ancestors(dag, i) - {i}) & set(guarded) for i in guarded}
    restored: set[int] = set()
    opaque: set[int] = set()

    def with_opaque(keep: set[int]):
        trial = onnx.ModelProto()
        trial.CopyFrom(m)
        for i in keep:
            trial.graph.node[i].domain = OPAQUE_DOMAIN
        trial.opset_import.append(onnx.helper.make_opsetid(OPAQUE_DOMAIN, 1))
        return trial

    while len(restored) + len(opaque) < len(guarded):
        inferred = onnx.shape_inference.infer_shapes(with_opaque(set(guarded) - restored), strict_mode=False,
                                                     data_prop=True)
        shapes = {vi.name: vi.type.tensor_type.shape.dim for vi in
                  list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)}
        decided = restored | opaque
        ready = [i for i in guarded if i not in decided and upstream[i] <= decided]
        if not ready:                 # only in a cyclic graph (refused before inference): keep the rest opaque
            opaque.update(set(guarded) - decided)
            break
        for i in ready:
            node = nodes[i]
            dims = shapes.get(node.input[0]) if len(node.input) else None
            known = [d.dim_value for d in dims if d.HasField("dim_value")] if dims is not None else []
            if node.op_type == "Slice" and any(d < 0 for d in known):
                raise InputError(f"{where}: node '{node.name}' (Slice): input '{node.input[0]}' has a negative "
                                 f"dimension {tuple(known)} by ONNX shape inference; every dimension must be >= 0")
            if node.op_type == "Size" and dims is not None and len(known) == len(dims) and \
                    prod(known) > MAX_PROPAGATED_SIZE:
                opaque.add(i)
            else:
                restored.add(i)
    return with_opaque(opaque) if opaque else m


def infer_shapes_safely(m, where: str):
    """onnx.shape_inference.infer_shapes (not strict, with data propagation) that no input can make abort or
    take hours."""
    onnx = _onnx()
    return onnx.shape_inference.infer_shapes(_guarded_model(m, where), strict_mode=False, data_prop=True)


def _infer(model, where: str) -> dict[str, tuple[int, tuple | None]]:
    """ONNX shape inference: tensor name -> (element type, concrete shape or None)."""
    try:
        inferred = infer_shapes_safely(_weights_as_inputs(model), where)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{where}: ONNX shape inference failed: {_first_line(e)}") from None
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        shape = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        out[vi.name] = (tt.elem_type, shape)
    return out


# ---------------------------------------------------------------- decomposed LayerNorm and GELU

def _near(value, target: float) -> bool:
    """True for a scalar (or one-element) constant close to `target`."""
    return value is not None and np.size(value) == 1 and isclose(float(np.ravel(value)[0]), target, rel_tol=1e-3)


class _Patterns:
    """Finds decomposed LayerNorm and GELU subgraphs in a node list and replaces each with the fused node."""

    def __init__(self, nodes: list, value: Callable[[str], np.ndarray | None], static: Callable[[str], bool],
                 outputs: set[str], make_node):
        self.nodes, self.value, self.static, self.make_node = nodes, value, static, make_node
        self.consumers: dict[str, list] = {}
        self.producer = {}
        for n in nodes:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
            for t in n.output:
                self.producer[t] = n
        self.outputs = outputs

    def only_consumer(self, tensor: str, op_type: str | None = None):
        """The single consumer of `tensor` (of `op_type` if given), or None; graph outputs have none."""
        users = self.consumers.get(tensor, [])
        if tensor in self.outputs or len(users) != 1 or (op_type and users[0].op_type != op_type):
            return None
        return users[0]

    def other(self, node, tensor: str) -> str | None:
        """The input of a binary node that is not `tensor`."""
        if len(node.input) != 2 or tensor not in node.input:
            return None
        return node.input[1] if node.input[0] == tensor else node.input[0]

    def gelu(self, erf):
        """0.5 * x * (1 + erf(x / sqrt(2))) in any association order -> (region, fused node)."""
        div = self.producer.get(erf.input[0])
        if div is None or div.op_type not in ("Div", "Mul") or self.only_consumer(div.output[0]) is not erf:
            return None
        x, c = div.input[0], div.input[1]
        if not _near(self.value(c), 2 ** 0.5 if div.op_type == "Div" else 2 ** -0.5):
            return None
        add = self.only_consumer(erf.output[0], "Add")
        if add is None or not _near(self.value(self.other(add, erf.output[0])), 1.0):
            return None
        region, t, have_x, have_half = [div, erf, add], add.output[0], False, False
        while not (have_x and have_half):
            mul = self.only_consumer(t, "Mul")
            if mul is None:
                return None
            o = self.other(mul, t)
            half = self.producer.get(o)
            if o == x and not have_x:
                have_x = True
            elif _near(self.value(o), 0.5) and not have_half:
                have_half = True
            elif (half is not None and half.op_type == "Mul" and not have_x and not have_half and x in half.input
                  and _near(self.value(self.other(half, x)), 0.5) and self.only_consumer(o) is mul):
                region.append(half)
                have_x = have_half = True
            else:
                return None
            region.append(mul)
            t = mul.output[0]
        return region, self.make_node("Gelu", [x], [t], name=region[-1].name, approximate="none")

    def reduce_axes(self, node) -> list[int] | None:
        """A ReduceMean's axes (attribute before opset 18, input from 18), None if not constant."""
        for a in node.attribute:
            if a.name == "axes":
                return list(a.ints)
        return [int(v) for v in np.ravel(self.value(node.input[1]))] if len(node.input) > 1 and \
            self.value(node.input[1]) is not None else None

    def layernorm(self, mean):
        """(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* gamma [+ beta]] -> (region, fused node)."""
        axes = self.reduce_axes(mean)
        if not axes or any(a >= 0 for a in axes) or sorted(axes) != list(range(-len(axes), 0)):
            return None   # only trailing axes, written negative as exporters do, map onto LayerNormalization
        x = mean.input[0]
        sub = self.only_consumer(mean.output[0], "Sub")
        if sub is None or list(sub.input) != [x, mean.output[0]]:
            return None
        users = self.consumers.get(sub.output[0], [])
        pow_ = next((u for u in users if u.op_type == "Pow" and _near(self.value(u.input[1]), 2.0)), None)
        div = next((u for u in users if u.op_type == "Div" and u.input[0] == sub.output[0]), None)
        if len(users) != 2 or pow_ is None or div is None or sub.output[0] in self.outputs:
            return None
        var = self.only_consumer(pow_.output[0], "ReduceMean")
        if var is None or self.reduce_axes(var) != axes:
            return None
        add = self.only_consumer(var.output[0], "Add")   # + epsilon (exporters drop it when it is 0 in fp32)
        eps = self.value(self.other(add, var.output[0])) if add is not None else np.zeros(1)
        sqrt = self.only_consumer((add or var).output[0], "Sqrt") if eps is not None and np.size(eps) == 1 else None
        if sqrt is None or self.only_consumer(sqrt.output[0]) is not div or div.input[1] != sqrt.output[0]:
            return None
        region, t, params = [mean, sub, pow_, var] + [add] * (add is not None) + [sqrt, div], div.output[0], []
        for op_type in ("Mul", "Add"):   # the optional affine part: * gamma, then + beta
            nxt = self.only_consumer(t, op_type)
            p = self.other(nxt, t) if nxt is not None else None
            if p is None or not self.static(p):
                break
            region.append(nxt)
            params.append(p)
            t = nxt.output[0]
        return region, self.make_node("LayerNormalization", [x, *params], [t], name=region[-1].name,
                                      axis=min(axes), epsilon=float(np.ravel(eps)[0]))

    def rewrite(self) -> list:
        """The node list with every matched region replaced by its fused node (placed where the region ends)."""
        replace, drop = {}, set()
        position = {id(n): i for i, n in enumerate(self.nodes)}
        for node in self.nodes:
            if id(node) in drop:
                continue
            found = self.gelu(node) if node.op_type == "Erf" else \
                self.layernorm(node) if node.op_type == "ReduceMean" else None
            if found and not any(id(n) in drop for n in found[0]):
                region, fused = found
                drop |= {id(n) for n in region}
                last = max(region, key=lambda n: position[id(n)])
                replace[id(last)] = fused
        return [replace.get(id(n), n) for n in self.nodes if id(n) not in drop or id(n) in replace]


# ---------------------------------------------------------------- constant folding (numpy)

def _attrs(node) -> dict:
    """A node's attributes as Python values."""
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes_arg(node, ins: list, index: int) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as input `index` (newer ones)."""
    a = _attrs(node).get("axes")
    if a is not None:
        return [int(v) for v in a]
    if len(ins) > index and ins[index] is not None:
        return [int(v) for v in np.ravel(ins[index])]
    return None


def _np_unsqueeze(node, ins):
    x, axes = ins[0], _axes_arg(node, ins, 1)
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return [x]


def _np_squeeze(node, ins):
    axes = _axes_arg(node, ins, 1)
    return [np.squeeze(ins[0], axis=None if axes is None else tuple(axes))]


def _np_reshape(node, ins):
    x, shape = ins[0], [int(d) for d in ins[1]]
    if not _attrs(node).get("allowzero", 0):   # ONNX Reshape: 0 copies the input's dim unless allowzero
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def _np_slice(node, ins):
    x = ins[0]
    starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
    axes = [int(v) for v in ins[3]] if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = [int(v) for v in ins[4]] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=False):
        index[a] = slice(s, e, st)
    return [x[tuple(index)]]


def _np_div(node, ins):
    a, b = ins
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return [(np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(a.dtype)]   # truncates, like C
    return [a / b]


def _np_reduce(fn):
    def run(node, ins):
        axes = _axes_arg(node, ins, 1)
        keep = bool(_attrs(node).get("keepdims", 1))
        return [fn(ins[0], axis=None if axes is None else tuple(axes), keepdims=keep)]
    return run


def _np_cast(node, ins):
    from onnx import helper
    return [ins[0].astype(helper.tensor_dtype_to_np_dtype(_attrs(node)["to"]))]


def _np_constant_of_shape(node, ins):
    value = _attrs(node).get("value")
    fill = _to_array(value) if value is not None else np.zeros(1, np.float32)
    return [np.full([int(d) for d in ins[0]], fill.ravel()[0], dtype=fill.dtype)]


def _np_split(node, ins):
    a = _attrs(node)
    axis, x = a.get("axis", 0), ins[0]
    sizes = a.get("split") or (list(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
    sizes = sizes or _equal_split(x.shape[axis], len(node.output), a.get("num_outputs"))
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _binary(fn):
    return lambda node, ins: [fn(ins[0], ins[1])]


def _unary(fn):
    return lambda node, ins: [fn(ins[0])]


FOLDERS: dict[str, Callable] = {
    "Identity": lambda node, ins: [ins[0]],
    "Cast": _np_cast,
    "Gather": lambda node, ins: [np.take(ins[0], ins[1], axis=_attrs(node).get("axis", 0))],
    "Concat": lambda node, ins: [np.concatenate(ins, axis=_attrs(node)["axis"])],
    "Unsqueeze": _np_unsqueeze,
    "Squeeze": _np_squeeze,
    "Reshape": _np_reshape,
    "Flatten": lambda node, ins: [ins[0].reshape(prod(ins[0].shape[:_attrs(node).get("axis", 1)]), -1)],
    "Slice": _np_slice,
    "Split": _np_split,
    "Transpose": lambda node, ins: [np.transpose(ins[0], _attrs(node).get("perm"))],
    "Expand": lambda node, ins: [np.broadcast_to(ins[0], np.broadcast_shapes(ins[0].shape, tuple(ins[1])))],
    "Tile": lambda node, ins: [np.tile(ins[0], [int(v) for v in ins[1]])],
    "Range": lambda node, ins: [np.arange(ins[0], ins[1], ins[2]).astype(ins[0].dtype)],
    "ConstantOfShape": _np_constant_of_shape,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _np_div,
    "Pow": _binary(np.power), "Mod": _binary(np.mod),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "LessOrEqual": _binary(np.less_equal), "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and), "Or": _binary(np.logical_or), "Not": _unary(np.logical_not),
    "Neg": _unary(np.negative), "Abs": _unary(np.abs), "Sqrt": _unary(np.sqrt), "Reciprocal": _unary(np.reciprocal),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Sign": _unary(np.sign),
    "Where": lambda node, ins: [np.where(ins[0], ins[1], ins[2])],
    "Min": lambda node, ins: [np.minimum.reduce(np.broadcast_arrays(*ins))],
    "Max": lambda node, ins: [np.maximum.reduce(np.broadcast_arrays(*ins))],
    "ReduceProd": _np_reduce(np.prod), "ReduceSum": _np_reduce(np.sum),
    "ReduceMax": _np_reduce(np.max), "ReduceMin": _np_reduce(np.min),
}


def _equal_split(size: int, parts: int, num_outputs: int | None) -> list[int]:
    """Split sizes without a `split` input: equal parts, the last smaller (ONNX Split-18 num_outputs rule)."""
    n = num_outputs or parts
    chunk = ceil(size / n)
    return [chunk] * (n - 1) + [size - chunk * (n - 1)]


# ---------------------------------------------------------------- the import walk

@dataclass
class _Static:
    """A constant tensor: shape, ONNX element type, and its values when known (small ones only)."""
    shape: tuple[int, ...]
    elem_type: int
    value: np.ndarray | None = None


@dataclass
class _Importer:
    """State of one import: constants, IR tensors and ops, and the unsupported nodes found."""
    where: str
    override: str | None
    opset: int
    types: dict[str, tuple[int, tuple | None]]
    base_dir: Path
    static: dict[str, _Static] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    lazy: dict = field(default_factory=dict)          # initializer name -> TensorProto (values read on demand)
    poisoned: set[str] = field(default_factory=set)   # outputs of unsupported nodes
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    op_names: set[str] = field(default_factory=set)
    _count: int = 0

    # ---- tensors

    def is_static(self, name: str) -> bool:
        """True for constants (initializers, Constant nodes, folded results)."""
        return name in self.static

    def value(self, name: str) -> np.ndarray | None:
        """The values of a constant when known and small (read from the file on first use), else None."""
        s = self.static.get(name)
        if s is None:
            return None
        if s.value is None and name in self.lazy and prod(s.shape) <= MAX_FOLD_ELEMS:
            s.value = self._read_initializer(self.lazy.pop(name))
        return s.value

    def _read_initializer(self, tensor) -> np.ndarray | None:
        """An initializer's values: inline data, or external data when its file is there."""
        try:
            return _to_array(tensor, base_dir=str(self.base_dir)) if tensor.data_location == 1 or \
                _has_data(tensor) else None
        except Exception:
            return None

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a constant or an IR tensor."""
        return self.static[name].shape if name in self.static else self.tensors[name].shape

    def elem_type(self, name: str, fallback: int = 1) -> int:
        """ONNX element type of a tensor (from inference), else `fallback`."""
        if name in self.static:
            return self.static[name].elem_type
        return self.types.get(name, (fallback, None))[0] or fallback

    def dtype(self, name: str) -> str:
        """IR dtype of a tensor that is in the IR (or would be)."""
        if name in self.tensors:
            return self.tensors[name].dtype
        return ir_dtype(self.elem_type(name), self.override, f"{self.where}: tensor '{name}'")

    def add_static(self, name: str, shape, elem_type: int, value: np.ndarray | None = None) -> None:
        """Register a constant."""
        self.static[name] = _Static(tuple(int(d) for d in shape), int(elem_type), value)

    def ir(self, name: str) -> str:
        """The IR tensor for `name`, a constant becoming a parameter on first use."""
        if name not in self.tensors:
            s = self.static[name]
            self._new_tensor(name, s.shape, ir_dtype(s.elem_type, self.override, f"{self.where}: '{name}'"), True)
        return name

    def _new_tensor(self, name: str, shape, dtype: str, is_param: bool) -> None:
        """Add an IR tensor, refusing non-positive dimensions."""
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise InputError(f"{self.where}: tensor '{name}' has shape {shape}; every dimension must be >= 1")
        self.tensors[name] = Tensor(name, shape, dtype, is_param)

    def add_input(self, name: str, shape, elem_type: int) -> None:
        """A graph input (activation)."""
        self._new_tensor(name, shape, ir_dtype(elem_type, self.override, f"{self.where}: input '{name}'"), False)
        self.inputs.append(name)

    def fresh(self, base: str) -> str:
        """A tensor name not used yet."""
        self._count += 1
        return f"{base}#{self._count}"

    # ---- ops

    def op(self, node, op_type: str, inputs: list[str], attrs: dict | None = None,
           outputs: list[str] | None = None, dtype: str | None = None) -> list[str]:
        """Emit one IR op for `node` (or, when every input is a constant, a constant of the inferred shape);
        returns its output names (the given ONNX names, or fresh ones for intermediates)."""
        attrs = dict(attrs or {})
        shapes = infer_shapes(op_type, node.name, [self.shape(t) for t in inputs], attrs)
        outputs = outputs or [self.fresh(f"{node.name}/{op_type}") for _ in shapes]
        for t, shape in zip(outputs, shapes, strict=False):
            self._cross_check(node, t, shape)
        if all(self.is_static(t) for t in inputs):
            for t, shape in zip(outputs, shapes, strict=False):
                et = self.types.get(t, (0, None))[0] or self.elem_type(inputs[0])
                self.add_static(t, shape, et)
            return outputs
        ins = [self.ir(t) for t in inputs]
        for t, shape in zip(outputs, shapes, strict=False):
            self._new_tensor(t, shape, dtype or self._out_dtype(t, ins[0]), False)
        self.ops.append(Op(self._op_name(node.name), op_type, tuple(ins), tuple(outputs), attrs))
        return outputs

    def _out_dtype(self, out: str, first_in: str) -> str:
        """IR dtype of an op output: its ONNX type when inference knows it, else the first input's."""
        et = self.types.get(out, (0, None))[0]
        return ir_dtype(et, self.override, f"{self.where}: '{out}'") if et else self.tensors[first_in].dtype

    def _op_name(self, base: str) -> str:
        """A unique IR op name (one ONNX node may become several IR ops)."""
        name, i = base, 1
        while name in self.op_names:
            i += 1
            name = f"{base}#{i}"
        self.op_names.add(name)
        return name

    def _cross_check(self, node, tensor: str, shape: tuple) -> None:
        """Our shape against ONNX shape inference's, where the latter is concrete."""
        theirs = self.types.get(tensor, (0, None))[1]
        if theirs is not None and tuple(theirs) != tuple(shape):
            raise InputError(f"{self.where}: node '{node.name}' ({node.op_type}): output '{tensor}' has shape "
                             f"{tuple(shape)} here but {tuple(theirs)} by ONNX shape inference")

    def alias(self, node, src: str, dst: str) -> None:
        """`dst` is the same tensor as `src` (a free view that needs no IR op): an Identity view."""
        self.op(node, "Identity", [src], outputs=[dst], dtype=self.dtype(src) if src in self.tensors else None)

    # ---- inputs of a node

    def const(self, node, index: int, what: str) -> np.ndarray | None:
        """The value of optional input `index` (None when absent); an error when it is not a folded constant."""
        if len(node.input) <= index or not node.input[index]:
            return None
        v = self.value(node.input[index])
        if v is None:
            raise InputError(f"{self.where}: node '{node.name}' ({node.op_type}): input {index} ({what}, "
                             f"'{node.input[index]}') must be a constant or computable from shapes, but it is "
                             "computed at run time or its data is not in the file")
        return v

    def ints(self, node, index: int, what: str) -> list[int] | None:
        """A constant input as a list of ints (None when absent)."""
        v = self.const(node, index, what)
        return None if v is None else [int(x) for x in np.ravel(v)]


# ---------------------------------------------------------------- handlers: ONNX node -> IR ops

def _auto_pad(node) -> str:
    """The auto_pad attribute: NOTSET (explicit pads), SAME_UPPER, SAME_LOWER or VALID."""
    return _plain(_attrs(node).get("auto_pad", "NOTSET")) or "NOTSET"


def _same_pads(auto: str, x: tuple, kernel: tuple, strides: tuple, dilations: tuple) -> tuple[int, int, int, int]:
    """Pads (t, l, b, r) for auto_pad SAME_* or VALID (ONNX Conv: output = ceil(input / stride); SAME_UPPER puts
    the odd pad at the end, SAME_LOWER at the beginning)."""
    if auto == "VALID":
        return 0, 0, 0, 0
    lo, hi = [], []
    for size, k, s, d in zip(x[2:], kernel, strides, dilations, strict=False):
        out = ceil(size / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        lo.append(small if auto == "SAME_UPPER" else big)
        hi.append(big if auto == "SAME_UPPER" else small)
    return lo[0], lo[1], hi[0], hi[1]


def _as_2d(imp: _Importer, node, name: str) -> str:
    """A 3-d (N, C, L) tensor viewed as 4-d (N, C, 1, L), so 1-d convs and pools run as 2-d ones."""
    shape = imp.shape(name)
    return imp.op(node, "Reshape", [name], {"shape": (*shape[:2], 1, *shape[2:])})[0]


def _spatial(node, imp: _Importer, x: str, w: str | None) -> tuple[str, str | None, bool]:
    """(x, w, was_1d): 1-d operands viewed as 2-d; anything but 1-d or 2-d is an error, and so is a weight whose
    rank differs from the input's."""
    rank = len(imp.shape(x))
    if w is not None and len(imp.shape(w)) != rank:
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): weight '{w}' has shape "
                         f"{imp.shape(w)} but input '{x}' has shape {imp.shape(x)}; their ranks must agree")
    if rank == 4:
        return x, w, False
    if rank == 3:
        return _as_2d(imp, node, x), _as_2d(imp, node, w) if w else None, True
    raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): only 1-d and 2-d spatial ops are "
                     f"supported, input has shape {imp.shape(x)}")


class _AttributeError(Exception):
    """A spatial attribute with the wrong number of values (reported by _walk naming the node)."""


def _pair(values, was_1d: bool, default: int, name: str = "") -> tuple[int, int]:
    """A 2-d attribute from a 1-d or 2-d one."""
    if values is None:
        return default, default
    values = list(values)
    if len(values) != (1 if was_1d else 2):
        raise _AttributeError(f"attribute '{name}' has {len(values)} values, expected {1 if was_1d else 2} (one per "
                              "spatial dimension of the input)")
    return (default, values[0]) if was_1d else (values[0], values[1])


def _pads4(values, was_1d: bool) -> tuple[int, int, int, int]:
    """2-d pads (t, l, b, r) from ONNX pads (begins then ends)."""
    if len(values) != (2 if was_1d else 4):
        raise _AttributeError(f"attribute 'pads' has {len(values)} values, expected {2 if was_1d else 4} (a begin "
                              "and an end per spatial dimension of the input)")
    if was_1d:
        return 0, values[0], 0, values[1]
    return tuple(values)


def _finish(imp: _Importer, node, op_type: str, ins: list[str], attrs: dict, was_1d: bool) -> None:
    """Emit the op into the node's first output, viewing a 1-d result back as 3-d."""
    if not was_1d:
        imp.op(node, op_type, ins, attrs, outputs=[node.output[0]])
        return
    y = imp.op(node, op_type, ins, attrs)[0]
    n, k, _, f = imp.shape(y)
    imp.op(node, "Reshape", [y], {"shape": (n, k, f)}, outputs=[node.output[0]])


def _conv_like(imp: _Importer, node, x: str, w: str, bias: str | None) -> None:
    """Conv (1-d or 2-d, grouped, depthwise, dilated, explicit or auto padding) with optional bias."""
    x4, w4, was_1d = _spatial(node, imp, x, w)
    a = _attrs(node)
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    dilations = _pair(a.get("dilations"), was_1d, 1, "dilations")
    kernel = imp.shape(w4)[2:]
    if _auto_pad(node) != "NOTSET":
        pads = _same_pads(_auto_pad(node), imp.shape(x4), kernel, strides, dilations)
    else:
        pads = _pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d)
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(a.get("group", 1))}
    _finish(imp, node, "Conv", [x4, w4] + ([bias] if bias else []), attrs, was_1d)


def h_conv(imp: _Importer, node) -> None:
    """Conv: X, W, optional B."""
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    _conv_like(imp, node, node.input[0], node.input[1], bias)


def h_conv_transpose(imp: _Importer, node) -> None:
    """ConvTranspose: pads from `pads`, or from `output_shape`/`auto_pad` as the ONNX operator spec says."""
    x4, w4, was_1d = _spatial(node, imp, node.input[0], node.input[1])
    a = _attrs(node)
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    dil = _pair(a.get("dilations"), was_1d, 1, "dilations")
    out_pad = list(_pair(a.get("output_padding"), was_1d, 0, "output_padding"))
    r, s = imp.shape(w4)[2:]
    pads = list(_pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d))
    auto = _auto_pad(node)
    wanted = a.get("output_shape")
    if wanted is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        h, w = imp.shape(x4)[2:]
        wanted = _pair(wanted, was_1d, 1, "output_shape") if wanted is not None else (h * strides[0], w * strides[1])
        for i, (size, k, st, d) in enumerate(zip((h, w), (r, s), strides, dil, strict=False)):
            # spec: total_padding = stride * (in - 1) + output_padding + ((kernel - 1) * dilation + 1) - out;
            # SAME_UPPER: pads[start] = total / 2, pads[end] = total - total / 2; otherwise the other way round
            total = st * (size - 1) + out_pad[i] + (k - 1) * d + 1 - wanted[i]
            if total < 0:    # a larger output_shape than the kernel reaches: the rest is output padding
                out_pad[i] -= total
                total = 0
            first = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[i + 2] = first, total - first
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    attrs = {"strides": strides, "pads": tuple(pads), "dilations": dil, "group": int(a.get("group", 1)),
                 "output_padding": tuple(out_pad)}
    _finish(imp, node, "ConvTranspose", [x4, w4] + ([bias] if bias else []), attrs, was_1d)


def _pool(imp: _Importer, node) -> None:
    """MaxPool / AveragePool (1-d or 2-d); ceil_mode becomes extra end padding, which gives the same size."""
    x4, _, was_1d = _spatial(node, imp, node.input[0], None)
    a = _attrs(node)
    kernel = _pair(a["kernel_shape"], was_1d, 1, "kernel_shape")
    strides = _pair(a.get("strides"), was_1d, 1, "strides")
    if any(d != 1 for d in a.get("dilations", [1])):
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): dilated pooling is not supported")
    if _auto_pad(node) != "NOTSET":
        pads = list(_same_pads(_auto_pad(node), imp.shape(x4), kernel, strides, (1, 1)))
    else:
        pads = list(_pads4(list(a.get("pads", [0] * (2 if was_1d else 4))), was_1d))
    if a.get("ceil_mode", 0):
        size = imp.shape(x4)[2:]
        for i in range(2):   # ceil output, the last window starting inside the input or its start padding
            span = size[i] + pads[i] + pads[i + 2] - kernel[i]
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= size[i] + pads[i]:
                out -= 1
            pads[i + 2] += max(0, (out - 1) * strides[i] + kernel[i] - (size[i] + pads[i] + pads[i + 2]))
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": tuple(pads)}
    _finish(imp, node, node.op_type, [x4], attrs, was_1d)


def h_same(keep: tuple[str, ...] = ()):
    """A one-input op of the same name in the IR (the attributes named in `keep` are carried over)."""
    def run(imp: _Importer, node) -> None:
        a = _attrs(node)
        imp.op(node, node.op_type, [node.input[0]], {k: _plain(a[k]) for k in keep if k in a},
               outputs=[node.output[0]])
    return run


def _plain(v):
    """Attribute values as plain Python (bytes -> str, lists kept)."""
    return v.decode() if isinstance(v, bytes) else v


def h_broadcast(imp: _Importer, node) -> None:
    """Add, Sub, Mul, Div, Pow, MatMul: two inputs."""
    imp.op(node, node.op_type, list(node.input[:2]), outputs=[node.output[0]])


def h_where(imp: _Importer, node) -> None:
    """Where(cond, x, y)."""
    imp.op(node, "Where", list(node.input[:3]), outputs=[node.output[0]])


def h_clip(imp: _Importer, node) -> None:
    """Clip: min and max are attributes before opset 11 and optional inputs from 11 on."""
    a = _attrs(node)
    lo = imp.const(node, 1, "min") if len(node.input) > 1 else a.get("min")
    hi = imp.const(node, 2, "max") if len(node.input) > 2 else a.get("max")
    attrs = {k: float(np.ravel(v)[0]) for k, v in (("min", lo), ("max", hi)) if v is not None}
    imp.op(node, "Clip", [node.input[0]], attrs, outputs=[node.output[0]])


def h_cast(imp: _Importer, node) -> None:
    """Cast: a vector op, or a free view when source and target have the same IR dtype."""
    to = ir_dtype(_attrs(node)["to"], imp.override, f"{imp.where}: node '{node.name}'")
    x = node.input[0]
    if not imp.is_static(x) and imp.dtype(x) == to:
        imp.op(node, "Identity", [x], outputs=[node.output[0]], dtype=to)
    else:
        imp.op(node, "Cast", [x], {"to": to}, outputs=[node.output[0]], dtype=to)


def h_batchnorm(imp: _Importer, node) -> None:
    """BatchNormalization in inference mode (X, scale, B, mean, var)."""
    if _attrs(node).get("training_mode", 0) or any(node.output[1:]):
        raise InputError(f"{imp.where}: node '{node.name}' (BatchNormalization): training mode (running "
                         "statistics outputs) is not supported; export in eval mode")
    imp.op(node, "BatchNormalization", list(node.input[:5]), {"epsilon": _attrs(node).get("epsilon", 1e-5)},
           outputs=[node.output[0]])


def h_layernorm(imp: _Importer, node) -> None:
    """LayerNormalization (X, Scale, optional B); the Mean / InvStdDev outputs are training-only."""
    if any(node.output[1:]):
        raise InputError(f"{imp.where}: node '{node.name}' (LayerNormalization): the Mean and InvStdDev outputs "
                         "are not supported")
    a = _attrs(node)
    ins = [t for t in node.input if t]
    imp.op(node, "LayerNormalization", ins, {"axis": a.get("axis", -1), "epsilon": a.get("epsilon", 1e-5)},
           outputs=[node.output[0]])


def h_softmax(imp: _Importer, node) -> None:
    """Softmax; the default axis is 1 before opset 13 and -1 from 13 on (the cost does not depend on it)."""
    axis = _attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    imp.op(node, "Softmax", [node.input[0]], {"axis": axis}, outputs=[node.output[0]])


def h_gelu(imp: _Importer, node) -> None:
    """Gelu (opset 20, or fused from its decomposed form): 'none' (erf) or 'tanh' approximation."""
    imp.op(node, "Gelu", [node.input[0]], {"approximate": _plain(_attrs(node).get("approximate", "none"))},
           outputs=[node.output[0]])


def h_reduce_mean(imp: _Importer, node) -> None:
    """ReduceMean: axes an attribute before opset 18, an optional input from 18 on."""
    a = _attrs(node)
    axes = [int(v) for v in a["axes"]] if "axes" in a else imp.ints(node, 1, "axes")
    axes = axes or None                       # absent or empty: every axis, unless noop_with_empty_axes
    if axes is None and a.get("noop_with_empty_axes", 0):
        imp.alias(node, node.input[0], node.output[0])
        return
    attrs = {"keepdims": int(a.get("keepdims", 1))}
    if axes is not None:
        attrs["axes"] = tuple(axes)
    imp.op(node, "ReduceMean", [node.input[0]], attrs, outputs=[node.output[0]])


def h_gemm(imp: _Importer, node) -> None:
    """Gemm(A, B, optional C): alpha and beta are scalings folded into the weights."""
    a = _attrs(node)
    ins = [t for t in node.input[:3] if t]
    imp.op(node, "Gemm", ins, {"transA": a.get("transA", 0), "transB": a.get("transB", 0)}, outputs=[node.output[0]])


def h_transpose(imp: _Importer, node) -> None:
    """Transpose (default perm reverses the axes)."""
    perm = _attrs(node).get("perm")
    attrs = {"perm": tuple(perm)} if perm is not None else {}
    imp.op(node, "Transpose", [node.input[0]], attrs, outputs=[node.output[0]])


def h_reshape(imp: _Importer, node) -> None:
    """Reshape to a constant (folded) shape; 0 copies the input dim unless allowzero=1 (ONNX Reshape-14)."""
    shape = imp.ints(node, 1, "shape")
    x = imp.shape(node.input[0])
    if not _attrs(node).get("allowzero", 0):
        shape = [x[i] if d == 0 else d for i, d in enumerate(shape)]
    imp.op(node, "Reshape", [node.input[0]], {"shape": tuple(shape)}, outputs=[node.output[0]])


def h_flatten(imp: _Importer, node) -> None:
    """Flatten to 2-d at `axis` (negative counts from the end: ONNX Flatten-11)."""
    rank = len(imp.shape(node.input[0]))
    axis = _attrs(node).get("axis", 1)
    imp.op(node, "Flatten", [node.input[0]], {"axis": axis + rank if axis < 0 else axis}, outputs=[node.output[0]])


def h_squeeze(imp: _Importer, node) -> None:
    """Squeeze: axes an attribute before opset 13, an optional input from 13 on."""
    a = _attrs(node)
    axes = a.get("axes") if "axes" in a else imp.ints(node, 1, "axes")
    imp.op(node, "Squeeze", [node.input[0]], {"axes": tuple(axes)} if axes else {},   # none: every unit axis
           outputs=[node.output[0]])


def h_unsqueeze(imp: _Importer, node) -> None:
    """Unsqueeze: axes an attribute before opset 13, an input from 13 on."""
    a = _attrs(node)
    axes = a.get("axes") if "axes" in a else imp.ints(node, 1, "axes")
    imp.op(node, "Unsqueeze", [node.input[0]], {"axes": tuple(axes)}, outputs=[node.output[0]])


def h_concat(imp: _Importer, node) -> None:
    """Concat along `axis`."""
    imp.op(node, "Concat", [t for t in node.input if t], {"axis": _attrs(node)["axis"]}, outputs=list(node.output))


def h_split(imp: _Importer, node) -> None:
    """Split: sizes an attribute before opset 13, an optional input from 13 on, or num_outputs (18)."""
    a = _attrs(node)
    axis, shape = a.get("axis", 0), imp.shape(node.input[0])
    if not -len(shape) <= axis < len(shape):
        raise InputError(f"{imp.where}: node '{node.name}' (Split): axis {axis} is out of range for input shape "
                         f"{shape}")
    size = shape[axis]
    sizes = a.get("split") or imp.ints(node, 1, "split") or _equal_split(size, len(node.output), a.get("num_outputs"))
    outs = [t or imp.fresh(f"{node.name}/unused") for t in node.output]
    imp.op(node, "Split", [node.input[0]], {"axis": axis, "split": tuple(sizes)}, outputs=outs)


def h_slice(imp: _Importer, node) -> None:
    """Slice: starts/ends/axes/steps attributes before opset 10, inputs from 10 on."""
    a = _attrs(node)
    if "starts" in a:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = imp.ints(node, 1, "starts"), imp.ints(node, 2, "ends")
        axes = imp.ints(node, 3, "axes") or list(range(len(starts)))
        steps = imp.ints(node, 4, "steps") or [1] * len(starts)
    imp.op(node, "Slice", [node.input[0]], {"starts": starts, "ends": ends, "axes": axes, "steps": steps},
           outputs=[node.output[0]])


def h_gather(imp: _Importer, node) -> None:
    """Gather rows (embedding lookups, picking a token): data, indices."""
    imp.op(node, "Gather", list(node.input[:2]), {"axis": _attrs(node).get("axis", 0)}, outputs=[node.output[0]])


def h_expand(imp: _Importer, node) -> None:
    """Expand to a constant shape (bidirectional broadcast, as the ONNX spec says)."""
    imp.op(node, "Expand", [node.input[0]], {"shape": tuple(imp.ints(node, 1, "shape"))}, outputs=[node.output[0]])


def h_identity(imp: _Importer, node) -> None:
    """Identity: a free view."""
    imp.alias(node, node.input[0], node.output[0])


def h_dropout(imp: _Importer, node) -> None:
    """Dropout at inference is the identity (ratio an attribute before opset 12, an input from 12)."""
    if len(node.output) > 1 and node.output[1]:
        raise InputError(f"{imp.where}: node '{node.name}' (Dropout): the mask output is not supported")
    imp.op(node, "Dropout", [node.input[0]], outputs=[node.output[0]])


def h_quantize(imp: _Importer, node) -> None:
    """QuantizeLinear: a Cast to the zero point's type (uint8 by default, as in the spec)."""
    et = imp.elem_type(node.input[2]) if len(node.input) > 2 and node.input[2] else 2
    to = ir_dtype(et, imp.override, f"{imp.where}: node '{node.name}'")
    imp.op(node, "Cast", [node.input[0]], {"to": to}, outputs=[node.output[0]], dtype=to)


def h_dequantize(imp: _Importer, node) -> None:
    """DequantizeLinear: free, and its output keeps the quantized type (the consumer computes in int8)."""
    x = node.input[0]
    if imp.is_static(x):
        s = imp.static[x]
        imp.add_static(node.output[0], s.shape, s.elem_type)
        return
    imp.op(node, "Identity", [x], outputs=[node.output[0]], dtype=imp.dtype(x))


def h_qlinear_conv(imp: _Importer, node) -> None:
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B): Conv on the int8 operands."""
    bias = node.input[8] if len(node.input) > 8 and node.input[8] else None
    _conv_like(imp, node, node.input[0], node.input[3], bias)


def h_conv_integer(imp: _Importer, node) -> None:
    """ConvInteger(x, w, x_zp, w_zp): Conv on int8 operands with an int32 output."""
    _conv_like(imp, node, node.input[0], node.input[1], None)


def h_qlinear_matmul(imp: _Importer, node) -> None:
    """QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp): MatMul on the int8 operands."""
    imp.op(node, "MatMul", [node.input[0], node.input[3]], outputs=[node.output[0]])


def h_matmul_integer(imp: _Importer, node) -> None:
    """MatMulInteger(a, b, a_zp, b_zp): MatMul on int8 operands with an int32 output."""
    imp.op(node, "MatMul", [node.input[0], node.input[1]], outputs=[node.output[0]])


HANDLERS: dict[str, Callable[[_Importer, object], None]] = {
    "Conv": h_conv, "ConvTranspose": h_conv_transpose, "BatchNormalization": h_batchnorm,
    "Relu": h_same(), "Sigmoid": h_same(), "Tanh": h_same(), "Erf": h_same(), "Sqrt": h_same(),
    "HardSwish": h_same(), "HardSigmoid": h_same(keep=("alpha", "beta")), "LeakyRelu": h_same(keep=("alpha",)),
    "Gelu": h_gelu, "Clip": h_clip, "Cast": h_cast,
    "MaxPool": _pool, "AveragePool": _pool, "GlobalAveragePool": h_same(), "ReduceMean": h_reduce_mean,
    "Gemm": h_gemm, "MatMul": h_broadcast,
    "Add": h_broadcast, "Sub": h_broadcast, "Mul": h_broadcast, "Div": h_broadcast, "Pow": h_broadcast,
    "Where": h_where, "Softmax": h_softmax, "LayerNormalization": h_layernorm,
    "Transpose": h_transpose, "Reshape": h_reshape, "Flatten": h_flatten, "Squeeze": h_squeeze,
    "Unsqueeze": h_unsqueeze, "Concat": h_concat, "Split": h_split, "Slice": h_slice, "Gather": h_gather,
    "Expand": h_expand, "Identity": h_identity, "Dropout": h_dropout,
    "QuantizeLinear": h_quantize, "DequantizeLinear": h_dequantize, "QLinearConv": h_qlinear_conv,
    "QLinearMatMul": h_qlinear_matmul, "ConvInteger": h_conv_integer, "MatMulInteger": h_matmul_integer,
}
MS_OPS = {"Gelu", "QuantizeLinear", "DequantizeLinear"}   # com.microsoft (ONNX Runtime) ops, same semantics


def _standard(node) -> bool:
    """True for ops of the default ONNX domain."""
    return node.domain in ("", "ai.onnx")


def _handler(node):
    """The handler of a node's op type, or None."""
    if _standard(node) or (node.domain == "com.microsoft" and node.op_type in MS_OPS):
        return HANDLERS.get(node.op_type)
    return None


# ---------------------------------------------------------------- the walk

def _walk(imp: _Importer, nodes: list) -> None:
    """Fold or map every node in order; unsupported ones are collected (their outputs poisoned)."""
    for node in nodes:
        ins = [t for t in node.input if t]
        handler = _handler(node)
        folds = _standard(node) and node.op_type in FOLDERS
        if any(t in imp.poisoned for t in ins):   # downstream of an unsupported node: only its op type matters
            if handler is None and not folds and not (_standard(node) and node.op_type in ("Shape", "Size")):
                _unsupported(imp, node)
            imp.poisoned.update(node.output)
        elif _standard(node) and node.op_type == "Constant":
            _constant(imp, node)
        elif _standard(node) and node.op_type in ("Shape", "Size"):
            _shape_of(imp, node)
        elif folds and _fold(imp, node, ins):
            pass
        elif handler is not None:
            try:
                handler(imp, node)
            except _AttributeError as e:
                raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): {e}") from None
        elif all(imp.is_static(t) for t in ins) and all(imp.types.get(t, (0, None))[1] is not None
                                                        for t in node.output):
            for t in node.output:   # a constant subgraph of an op we do not map: its result is a constant
                et, shape = imp.types[t]
                imp.add_static(t, shape, et)
        else:
            _unsupported(imp, node)
            imp.poisoned.update(node.output)


def _unsupported(imp: _Importer, node) -> None:
    """Record a node whose op type has no handler (for the one error that lists them all)."""
    kind = node.op_type if _standard(node) else f"{node.domain}.{node.op_type}"
    imp.unsupported.setdefault(kind, []).append(node.name)


def _constant(imp: _Importer, node) -> None:
    """Constant: its value (any of the value* attributes)."""
    from onnx import helper
    attr = node.attribute[0]
    v = helper.get_attribute_value(attr)
    if attr.name == "sparse_value":   # shape only
        imp.add_static(node.output[0], v.dims, v.values.data_type)
        return
    if attr.name == "value":
        arr, et = _to_array(v), v.data_type
    else:
        arr = np.asarray(v, dtype=np.float32 if "float" in attr.name else np.int64)
        et = 1 if "float" in attr.name else 7
    imp.add_static(node.output[0], arr.shape, et, arr)


def _shape_of(imp: _Importer, node) -> None:
    """Shape (with start/end, opset 15) and Size: known values from the shapes computed so far."""
    shape = imp.shape(node.input[0])
    if node.op_type == "Size":
        if prod(shape) >= 2**63:
            raise InputError(f"{imp.where}: node '{node.name}' (Size): input '{node.input[0]}' of shape {shape} has "
                             "more elements than an int64 holds")
        v = np.array(prod(shape), dtype=np.int64)
    else:
        a = _attrs(node)
        v = np.array(shape[slice(a.get("start", 0), a.get("end"))], dtype=np.int64)
    imp.add_static(node.output[0], v.shape, 7, v)


def _fold(imp: _Importer, node, ins: list[str]) -> bool:
    """Evaluate a node whose inputs are all known small constants; False when it cannot be."""
    values = [imp.value(t) for t in ins]
    if any(v is None for v in values) or any(v.size > MAX_FOLD_ELEMS for v in values):
        return False
    full = [imp.value(t) if t else None for t in node.input]   # keeps positions of absent optional inputs
    made = _fold_output_elems(node.op_type, full)
    if made is not None and made > MAX_FOLD_ELEMS:       # a large constant keeps its shape only (no values)
        return False
    try:
        with np.errstate(all="ignore"):      # IEEE results (inf masks, say) as a runtime computes them, no warnings
            outs = FOLDERS[node.op_type](node, full)
    except Exception as e:
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): cannot evaluate its constant "
                         f"inputs: {_first_line(e)}") from None
    for t, v in zip(node.output, outs, strict=False):
        v = np.asarray(v)
        et = imp.types.get(t, (0, None))[0] or imp.elem_type(ins[0]) if ins else 1
        imp.add_static(t, v.shape, et, v)
    return True


def _fold_output_elems(op_type: str, ins: list) -> int | None:
    """Elements a fold would create, for the ops whose output can be far larger than their inputs (None: not one
    of them, or not computable; the fold then reports what is wrong)."""
    try:
        if op_type == "ConstantOfShape":
            return prod(int(d) for d in np.ravel(ins[0]))
        if op_type == "Range":
            start, limit, delta = (float(np.ravel(v)[0]) for v in ins[:3])
            return max(ceil((limit - start) / delta), 0) if delta else None
        if op_type == "Tile":
            return ins[0].size * prod(int(r) for r in np.ravel(ins[1]))
        if op_type == "Expand":
            return prod(np.broadcast_shapes(ins[0].shape, tuple(int(d) for d in np.ravel(ins[1]))))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None


def _to_array(tensor, **kwargs) -> np.ndarray:
    """numpy_helper.to_array, with corrupt tensor data reported as one clear line."""
    from onnx import numpy_helper
    try:
        return numpy_helper.to_array(tensor, **kwargs)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise InputError(f"--workload: tensor '{tensor.name}' has corrupt data ({_first_line(e)})") from None


def _early_values(model) -> dict[str, np.ndarray]:
    """Values of small inline initializers and Constant nodes (for pattern matching, before the walk)."""
    out = {}
    for t in model.graph.initializer:
        if _has_data(t) and prod(t.dims) <= MAX_FOLD_ELEMS:
            out[t.name] = _to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = _to_array(node.attribute[0].t)
    return out


def _unsupported_error(imp: _Importer) -> InputError:
    """One line naming every unsupported op type, its count and its first node."""
    listed = ", ".join(f"{k} x{len(v)} (first: '{v[0]}')" for k, v in sorted(imp.unsupported.items()))
    return InputError(f"{imp.where}: unsupported ONNX ops: {listed}; supported: {', '.join(sorted(HANDLERS))}")


def load_onnx(path: str, *, batch: int = 1, seq_len: int | None = None, dtype: str | None = None,
              dims: dict[str, int] | None = None) -> Graph:
    """The Graph of an ONNX file; `dtype` None keeps the model's types; `dims` binds symbolic dimensions."""
    try:
        return _load_onnx(path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims)
    except UnicodeDecodeError:   # protobuf decodes string fields lazily: a corrupt name surfaces on first use
        raise InputError(f"--workload {path}: not a valid ONNX model (a name is not valid UTF-8; the file may be "
                         "corrupt)") from None


def _load_onnx(path: str, *, batch: int, seq_len: int | None, dtype: str | None,
               dims: dict[str, int] | None) -> Graph:
    onnx = _onnx()
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise InputError(f"--dtype: unknown '{dtype}'; allowed: {', '.join(DTYPE_BYTES)}, model")
    where = f"--workload {path}"
    model = _read(path)
    _check_structure(model, where)
    model = _inline_functions(model, where)
    _check(model, where)
    inits = {t.name: t for t in model.graph.initializer}
    values = bind_dims(_symbolic_dims(model, set(inits), where), dict(dims or {}), batch, seq_len, Path(path).name)
    _apply_dims(model, values)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    imp = _Importer(where, dtype, opset, _infer(model, where), Path(path).resolve().parent)
    for t in inits.values():
        imp.add_static(t.name, t.dims, t.data_type)
        imp.lazy[t.name] = t
    for inp in model.graph.input:
        if inp.name not in inits:
            tt = inp.type.tensor_type
            imp.add_input(inp.name, [d.dim_value for d in tt.shape.dim], tt.elem_type)
    early = _early_values(model)
    nodes = _Patterns(list(model.graph.node), early.get, lambda t: t in inits or t in early,
                      {o.name for o in model.graph.output}, onnx.helper.make_node).rewrite()
    _walk(imp, nodes)
    if imp.unsupported:
        raise _unsupported_error(imp)
    outputs = [o.name for o in model.graph.output if o.name in imp.tensors and not imp.tensors[o.name].is_param]
    if not imp.ops or not outputs:
        raise InputError(f"{where}: nothing to simulate: every output is a constant")
    return Graph(Path(path).stem, imp.tensors, imp.ops, tuple(imp.inputs), tuple(outputs))
