"""Reading and checking an ONNX file: the onnx package, the element-type table, structure checks, onnx.checker,
local functions, symbolic dimensions bound from --dim / --batch / --seq-len, node attributes and tensor values."""
from __future__ import annotations

from math import prod
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError, field_error

INSTALL_HINT = "--workload: reading .onnx files needs the onnx package: pip install 'tilesim[onnx]'"
MAX_FOLD_ELEMS = 1 << 16      # constants up to this size are evaluated with numpy; larger ones keep shapes only
BATCH_WORDS = ("batch",)
SEQ_WORDS = ("seq", "sequence")


def onnx_module():
    """The onnx module, or the InputError telling how to install it."""
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
        import onnx.numpy_helper  # noqa: PLC0415 (optional dependency)
        import onnx.shape_inference  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return onnx


# ---------------------------------------------------------------- data types

FLOAT, INT, INDEX = "float", "int", "index"
# ONNX TensorProto element type -> (IR dtype, class). Index-class types keep their IR type under --dtype.
ELEM_TYPES = {
    1: ("fp32", FLOAT), 10: ("fp16", FLOAT), 11: ("fp32", FLOAT), 16: ("bf16", FLOAT),
    17: ("fp8", FLOAT), 18: ("fp8", FLOAT), 19: ("fp8", FLOAT), 20: ("fp8", FLOAT),
    2: ("int8", INT), 3: ("int8", INT), 4: ("int16", INT), 5: ("int16", INT), 21: ("int4", INT), 22: ("int4", INT),
    6: ("int32", INDEX), 7: ("int32", INDEX), 12: ("int32", INDEX), 13: ("int32", INDEX),
    9: ("int8", INDEX),
}


def ir_dtype(elem_type: int, override: str | None, where: str) -> str:
    """The IR dtype of an ONNX element type, with `override` applied to numeric (non-index) types."""
    if elem_type not in ELEM_TYPES:
        raise InputError(f"{where}: ONNX element type {elem_type} is not supported (no IR data type)")
    dtype, cls = ELEM_TYPES[elem_type]
    return override if override and cls != INDEX else dtype


# ---------------------------------------------------------------- nodes and tensors

def standard(node) -> bool:
    """True for ops of the default ONNX domain."""
    return node.domain in ("", "ai.onnx")


def node_attrs(node) -> dict:
    """A node's attributes as Python values."""
    get = onnx_module().helper.get_attribute_value
    return {a.name: get(a) for a in node.attribute}


def plain(v):
    """Attribute values as plain Python (bytes -> str, lists kept)."""
    return v.decode() if isinstance(v, bytes) else v


def first_line(e: Exception) -> str:
    """The first non-empty line of an exception's message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def has_data(tensor) -> bool:
    """True when an initializer carries its values in the file itself."""
    return tensor.data_location != 1 and any(
        len(getattr(tensor, f)) for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                                          "uint64_data", "string_data"))


def to_array(tensor, **kwargs) -> np.ndarray:
    """numpy_helper.to_array, with corrupt tensor data reported as one clear line."""
    try:
        return onnx_module().numpy_helper.to_array(tensor, **kwargs)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise field_error("workload", f"tensor '{tensor.name}' has corrupt data ({first_line(e)})") from None


# ---------------------------------------------------------------- reading and checking

def read_model(path: str):
    """The ModelProto of `path` without external data; one clear line when it cannot be read."""
    onnx = onnx_module()
    p = Path(path)
    if not p.is_file():
        raise field_error("workload", f"no such file '{path}'")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise field_error("workload", f"'{path}' is not a readable ONNX model (truncated or corrupt file?): "
                         f"{first_line(e)}") from None
    if not model.ir_version or not model.HasField("graph") or not len(model.graph.node):
        raise field_error("workload", f"'{path}' is not an ONNX model (no IR version or no graph nodes; "
                         "truncated or corrupt file?)")
    return model


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


def _producers(g, where: str) -> dict[str, str]:
    """Tensor -> the node producing it; a tensor produced twice is an error."""
    producer: dict[str, str] = {}
    for node in g.node:
        for t in node.output:
            if t and t in producer:
                raise InputError(f"{where}: tensor '{t}' is produced by both '{producer[t]}' and '{node.name}'")
            if t:
                producer[t] = node.name
    return producer


def check_structure(model, where: str) -> None:
    """Dangling inputs, duplicate producers and cycles, one clear line each; then sort the nodes topologically."""
    import networkx as nx  # noqa: PLC0415 (loads only to read an ONNX file: start-up time)
    g = model.graph
    names = _node_names(g)
    for node, name in zip(g.node, names, strict=True):
        node.name = name
    known = {i.name for i in g.input} | {t.name for t in g.initializer}
    producer = _producers(g, where)
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
    for proto, name in zip(sorted_nodes, order, strict=True):
        proto.CopyFrom(nodes[name])
    del g.node[:]
    g.node.extend(sorted_nodes)


def weights_as_inputs(model):
    """A light copy for onnx.checker and shape inference: initializers that are not small inline constants, and
    Constant nodes stored as external data, become graph inputs of the same type and shape. Files whose external
    data is absent pass, large inline weights are not copied, and nothing is looked up relative to the working
    directory."""
    onnx = onnx_module()
    m = onnx.ModelProto(ir_version=model.ir_version)
    m.opset_import.extend(model.opset_import)
    m.functions.extend(model.functions)
    g, copy = model.graph, m.graph
    copy.name = g.name
    for name in ("input", "output", "value_info", "sparse_initializer"):
        getattr(copy, name).extend(getattr(g, name))
    for node in g.node:   # a Constant stored as external data is a graph input too (its file is the model's folder's)
        value = node.attribute[0].t if node.op_type == "Constant" and len(node.attribute) else None
        if value is not None and node.attribute[0].name == "value" and value.data_location == 1:
            copy.input.append(onnx.helper.make_tensor_value_info(node.output[0], value.data_type, list(value.dims)))
        else:
            copy.node.append(node)
    inputs = {i.name for i in g.input}
    for t in g.initializer:
        if has_data(t) and prod(t.dims) <= MAX_FOLD_ELEMS:   # shape computations may need their values
            copy.initializer.append(t)
        elif t.name not in inputs:
            copy.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def check_model(model, where: str) -> None:
    """onnx.checker on the model (weights as inputs), as one line."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(weights_as_inputs(model))
    except Exception as e:   # onnx.checker.ValidationError, mostly
        raise InputError(f"{where}: invalid ONNX model: {first_line(e)}") from None


def inline_functions(model, where: str):
    """Model-local functions (some exporters emit them) inlined into the main graph."""
    if not len(model.functions):
        return model
    try:
        from onnx.inliner import inline_local_functions  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise InputError(f"{where}: the model has local functions; inlining them needs onnx>=1.16") from None
    return inline_local_functions(model)


def default_opset(model) -> int:
    """The model's opset of the default ONNX domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


# ---------------------------------------------------------------- symbolic dimensions

def symbolic_dims(model, initializers: set[str], where: str) -> dict[str, list[str]]:
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
        raise field_error(f"dims {unknown[0]}", f"{where} has no symbolic dimension '{unknown[0]}' (its symbolic "
                         f"dims: {have})")
    values = dict(dims)
    batch_dims = [n for n in symbolic if any(w in n.lower() for w in BATCH_WORDS)]
    seq_dims = [n for n in symbolic if n not in batch_dims and any(w in n.lower() for w in SEQ_WORDS)]
    for n in batch_dims:
        values.setdefault(n, batch)
    if seq_len is not None:
        if not seq_dims:
            raise field_error("seq_len", f"{where} has no symbolic sequence dimension (a name containing 'seq'); "
                             f"its symbolic dims: {', '.join(symbolic) or 'none'}; use --dim NAME=VALUE")
        for n in seq_dims:
            values.setdefault(n, seq_len)
    if batch != 1 and not batch_dims:
        raise field_error("batch", f"{where} has no symbolic batch dimension (a name containing 'batch'; its "
                         f"symbolic dims: {', '.join(symbolic) or 'none'}); re-export with a dynamic batch axis")
    unbound = [n for n in symbolic if n not in values]
    if unbound:
        listed = "; ".join(f"{n} ({', '.join(symbolic[n])})" for n in unbound)
        raise field_error("dims", f"{where} has unbound symbolic dimensions: {listed}; give each as --dim NAME=VALUE")
    return values


def apply_dims(model, values: dict[str, int]) -> None:
    """Graph inputs get concrete sizes; stale intermediate and output shapes are dropped for re-inference."""
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if d.dim_param in values:
                d.dim_value = values[d.dim_param]
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
