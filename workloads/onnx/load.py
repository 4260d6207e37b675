"""The import driver: read and check the model, bind its dimensions, infer types, fuse decomposed patterns, then
one walk in topological order in which every node is folded (constants, shape computations) or handed to its
handler; op types with no handler are collected and reported together."""
from __future__ import annotations

import warnings
from math import prod
from pathlib import Path

import numpy as np

from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError, field_error
from tilesim.compiler import Graph, GraphBuilder
from tilesim.workloads.onnx.folding import FOLDERS, early_values, fold_output_elems
from tilesim.workloads.onnx.handlers import HANDLERS, handler_for
from tilesim.workloads.onnx.importer import AttributeCountError, Importer
from tilesim.workloads.onnx.model import (
    MAX_FOLD_ELEMS,
    apply_dims,
    bind_dims,
    check_model,
    check_structure,
    default_opset,
    first_line,
    inline_functions,
    node_attrs,
    onnx_module,
    read_model,
    standard,
    symbolic_dims,
    to_array,
)
from tilesim.workloads.onnx.patterns import Patterns
from tilesim.workloads.onnx.shapes import infer_types
from tilesim.workloads.sparsity import counted_sparsity

UNKNOWN_OPS = ("error", "free")
FREE_SHAPE_OPS = ("Shape", "Size")    # their values come from shapes, known even downstream of an unsupported op


def _walk(imp: Importer, nodes: list) -> None:
    """Fold or map every node in order; unsupported ones are collected (their outputs poisoned)."""
    for node in nodes:
        ins = [t for t in node.input if t]
        handler = handler_for(node)
        folds = standard(node) and node.op_type in FOLDERS
        if any(t in imp.poisoned or t in imp.derived for t in ins):
            _after_unsupported(imp, node, ins, handler, folds)
        elif standard(node) and node.op_type == "Constant":
            _constant(imp, node)
        elif standard(node) and node.op_type in FREE_SHAPE_OPS:
            _shape_of(imp, node)
        elif folds and _fold(imp, node, ins):
            pass
        elif standard(node) and node.op_type == "If" and imp.value(node.input[0]) is not None:
            _inline_if(imp, node)
        elif handler is not None:
            try:
                handler(imp, node)
            except AttributeCountError as e:
                raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): {e}") from None
        elif all(imp.is_static(t) for t in ins) and all(imp.types.get(t, (0, None))[1] is not None
                                                        for t in node.output):
            for t in node.output:   # a constant subgraph of an op we do not map: its result is a constant
                et, shape = imp.types[t]
                imp.add_static(t, shape, et)
        elif not _free(imp, node):
            _unsupported(imp, node)
            imp.poisoned.update(node.output)


def _after_unsupported(imp: Importer, node, ins: list[str], handler, folds: bool) -> None:
    """A node downstream of an unsupported one: only its op type matters. Shape computations (Shape, Size and
    foldable ops over their results) would be constants once the unsupported op is supported, so they are not
    counted; any other node without a handler is."""
    if (standard(node) and node.op_type in FREE_SHAPE_OPS) or \
            (folds and all(t in imp.derived or imp.is_static(t) for t in ins)):
        imp.derived.update(node.output)
        return
    if handler is None:
        _unsupported(imp, node)
    imp.poisoned.update(node.output)


def _free(imp: Importer, node) -> bool:
    """Under unknown_ops='free': an op tilesim does not know becomes an Opaque op (data movement: it reads its
    inputs and writes its outputs once) when ONNX shape inference knows its output shapes; False otherwise."""
    outs = [t for t in node.output if t]
    shapes = [imp.types.get(t, (0, None))[1] for t in outs]
    if imp.unknown_ops != "free" or not outs or any(sh is None for sh in shapes) or \
            any(t in imp.poisoned for t in node.input):
        return False
    imp.op(node, "Opaque", [t for t in node.input if t], {"shapes": tuple(tuple(sh) for sh in shapes)},
           outputs=outs)
    kind = node.op_type if standard(node) else f"{node.domain}.{node.op_type}"
    imp.freed[kind] = imp.freed.get(kind, 0) + 1
    return True


def _inline_if(imp: Importer, node) -> None:
    """If with a constant condition: the taken branch's nodes are walked in its place (names prefixed with the
    If's), and its outputs become the If's."""
    taken = "then_branch" if bool(np.ravel(imp.value(node.input[0]))[0]) else "else_branch"
    branch = node_attrs(node)[taken]
    for t in branch.initializer:
        imp.add_static(t.name, t.dims, t.data_type)
        imp.lazy[t.name] = t
    nodes = []
    for i, n in enumerate(branch.node):
        copy = type(n)()
        copy.CopyFrom(n)
        copy.name = f"{node.name}/{n.name or f'{n.op_type}_{i}'}"
        nodes.append(copy)
    _walk(imp, nodes)
    for out, src in zip(node.output, [o.name for o in branch.output], strict=False):
        if src in imp.poisoned or src in imp.derived:
            (imp.poisoned if src in imp.poisoned else imp.derived).add(out)
        elif imp.is_static(src):
            st = imp.static[src]
            imp.add_static(out, st.shape, st.elem_type, imp.value(src))
        else:
            imp.alias(node, src, out)


def _unsupported(imp: Importer, node) -> None:
    """Record a node whose op type has no handler (for the one error that lists them all)."""
    kind = node.op_type if standard(node) else f"{node.domain}.{node.op_type}"
    imp.unsupported.setdefault(kind, []).append(node.name)


def _constant(imp: Importer, node) -> None:
    """Constant: its value (any of the value* attributes)."""
    attr = node.attribute[0]
    v = onnx_module().helper.get_attribute_value(attr)
    if attr.name == "sparse_value":   # shape only
        imp.add_static(node.output[0], v.dims, v.values.data_type)
        return
    if attr.name == "value":
        arr, et = (imp.read_tensor(v) if v.data_location == 1 else to_array(v)), v.data_type
        if arr is None:   # stored as external data whose file is not there: its shape only
            imp.add_static(node.output[0], v.dims, et)
            return
    else:
        arr = np.asarray(v, dtype=np.float32 if "float" in attr.name else np.int64)
        et = 1 if "float" in attr.name else 7
    imp.add_static(node.output[0], arr.shape, et, arr)


def _shape_of(imp: Importer, node) -> None:
    """Shape (with start/end, opset 15) and Size: known values from the shapes computed so far."""
    shape = imp.shape(node.input[0])
    if node.op_type == "Size":
        if prod(shape) >= 2**63:
            raise InputError(f"{imp.where}: node '{node.name}' (Size): input '{node.input[0]}' of shape {shape} has "
                             "more elements than an int64 holds")
        v = np.array(prod(shape), dtype=np.int64)
    else:
        a = node_attrs(node)
        v = np.array(shape[slice(a.get("start", 0), a.get("end"))], dtype=np.int64)
    imp.add_static(node.output[0], v.shape, 7, v)


def _fold(imp: Importer, node, ins: list[str]) -> bool:
    """Evaluate a node whose inputs are all known small constants; False when it cannot be."""
    values = [imp.value(t) for t in ins]
    if any(v is None for v in values) or any(v.size > MAX_FOLD_ELEMS for v in values):
        return False
    full = [imp.value(t) if t else None for t in node.input]   # keeps positions of absent optional inputs
    made = fold_output_elems(node.op_type, full)
    if made is not None and made > MAX_FOLD_ELEMS:       # a large constant keeps its shape only (no values)
        return False
    try:
        with np.errstate(all="ignore"):      # IEEE results (inf masks, say) as a runtime computes them, no warnings
            outs = FOLDERS[node.op_type](node, full)
    except Exception as e:
        raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): cannot evaluate its constant "
                         f"inputs: {first_line(e)}") from None
    for t, v in zip(node.output, outs, strict=False):
        v = np.asarray(v)
        et = imp.types.get(t, (0, None))[0] or imp.elem_type(ins[0]) if ins else 1
        imp.add_static(t, v.shape, et, v)
    return True


def _unsupported_error(imp: Importer) -> InputError:
    """One line naming every unsupported op type, its count and its first node."""
    listed = ", ".join(f"{k} x{len(v)} (first: '{v[0]}')" for k, v in sorted(imp.unsupported.items()))
    return InputError(f"{imp.where}: unsupported ONNX ops: {listed}; supported: {', '.join(sorted(HANDLERS))}")


def load_onnx(path: str, *, batch: int = 1, seq_len: int | None = None, dtype: str | None = None,
              dims: dict[str, int] | None = None, unknown_ops: str = "error") -> Graph:
    """The Graph of an ONNX file; `dtype` None keeps the model's types; `dims` binds symbolic dimensions;
    `unknown_ops` "error" refuses op types without a handler (listing them all), "free" warns once naming them and
    costs each as data movement (an Opaque op)."""
    if unknown_ops not in UNKNOWN_OPS:
        raise field_error("unknown_ops", f"got '{unknown_ops}', allowed: {', '.join(UNKNOWN_OPS)}")
    try:
        return _load_onnx(path, batch=batch, seq_len=seq_len, dtype=dtype, dims=dims, unknown_ops=unknown_ops)
    except UnicodeDecodeError:   # protobuf decodes string fields lazily: a corrupt name surfaces on first use
        raise field_error(f"workload {path}", "not a valid ONNX model (a name is not valid UTF-8; the file may be "
                         "corrupt)") from None


def _load_onnx(path: str, *, batch: int, seq_len: int | None, dtype: str | None,
               dims: dict[str, int] | None, unknown_ops: str) -> Graph:
    onnx = onnx_module()
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise field_error("dtype", f"unknown '{dtype}'; allowed: {', '.join(DTYPE_BYTES)}, model")
    where = f"--workload {path}"
    model = read_model(path)
    check_structure(model, where)
    model = inline_functions(model, where)
    check_model(model, where)
    inits = {t.name: t for t in model.graph.initializer}
    values = bind_dims(symbolic_dims(model, set(inits), where), dict(dims or {}), batch, seq_len, Path(path).name)
    apply_dims(model, values)
    builder = GraphBuilder(Path(path).stem, dtype or "fp32", where=where)
    imp = Importer(where, dtype, default_opset(model), infer_types(model, where), Path(path).resolve().parent,
                   builder, unknown_ops=unknown_ops)
    for t in inits.values():
        imp.add_static(t.name, t.dims, t.data_type)
        imp.lazy[t.name] = t
    for inp in model.graph.input:
        if inp.name not in inits:
            tt = inp.type.tensor_type
            imp.add_input(inp.name, [d.dim_value for d in tt.shape.dim], tt.elem_type)
    early = early_values(model)
    nodes = Patterns(list(model.graph.node), early.get, lambda t: t in inits or t in early,
                     {o.name for o in model.graph.output}, onnx.helper.make_node).rewrite()
    _walk(imp, nodes)
    if imp.unsupported:
        raise _unsupported_error(imp)
    if imp.freed:
        listed = ", ".join(f"{k} x{n}" for k, n in sorted(imp.freed.items()))
        warnings.warn(f"{where}: ops tilesim does not know, costed as data movement of their outputs "
                      f"(--unknown-ops free): {listed}", stacklevel=2)
    outputs = [o.name for o in model.graph.output if o.name in imp.tensors and not imp.tensors[o.name].is_param]
    if not builder.ops or not outputs:
        raise InputError(f"{where}: nothing to simulate: every output is a constant")
    # weights' actual zeros, when the file holds their values (workloads/sparsity.py)
    return counted_sparsity(builder.build(outputs),
                            lambda name: imp.read_tensor(inits[name]) if name in inits else None)
