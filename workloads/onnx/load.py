"""The import driver: read and check the model, bind its dimensions, infer types, fuse decomposed patterns, then
one walk in topological order in which every node is folded (constants, shape computations) or handed to its
handler; op types with no handler are collected and reported together."""
from __future__ import annotations

import warnings
from copy import deepcopy
from dataclasses import replace
from math import prod
from pathlib import Path

import numpy as np

from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError, field_error
from tilesim.compiler import Graph, GraphBuilder
from tilesim.compiler.lowering import Contraction, VectorWork, lower_op
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
from tilesim.workloads.onnx.routing import follow
from tilesim.workloads.onnx.shapes import infer_types
from tilesim.workloads.sparsity import counted_sparsity

UNKNOWN_OPS = ("error", "free")
FREE_SHAPE_OPS = ("Shape", "Size")    # their values come from shapes, known even downstream of an unsupported op
MAX_UNROLLED_NODES = 100_000          # a Loop's body nodes x trips: unrolled up to this many
ONNX_INT64, ONNX_BOOL = 7, 9          # TensorProto element types of a Loop body's iteration number and condition


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
        elif standard(node) and node.op_type == "If":
            _computed_if(imp, node)
        elif standard(node) and node.op_type == "Loop":
            _loop(imp, node)
        elif handler is not None:
            try:
                handler(imp, node)
            except AttributeCountError as e:
                raise InputError(f"{imp.where}: node '{node.name}' ({node.op_type}): {e}") from None
            follow(imp, node)
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


def _free(imp: Importer, node, known: list | None = None) -> bool:
    """Under unknown_ops='free': an op tilesim does not know becomes an Opaque op (data movement: it reads its
    inputs and writes its outputs once) when ONNX shape inference (or `known`, shapes of its first outputs) gives
    its output shapes; False otherwise."""
    outs = [t for t in node.output if t]
    known = list(known or [])
    shapes = [imp.types.get(t, (0, None))[1] or (known[k] if k < len(known) else None) for k, t in enumerate(outs)]
    if imp.unknown_ops != "free" or not outs or any(sh is None for sh in shapes) or \
            any(t in imp.poisoned for t in node.input):
        return False
    imp.op(node, "Opaque", [t for t in node.input if t], {"shapes": tuple(tuple(sh) for sh in shapes)},
           outputs=outs)
    kind = node.op_type if standard(node) else f"{node.domain}.{node.op_type}"
    imp.freed[kind] = imp.freed.get(kind, 0) + 1
    return True


def _inline_if(imp: Importer, node) -> None:
    """If with a constant condition: the taken branch is walked in its place."""
    _inline_branch(imp, node, "then_branch" if bool(np.ravel(imp.value(node.input[0]))[0]) else "else_branch")


def _computed_if(imp: Importer, node) -> None:
    """If whose condition is computed at run time: costed as its more expensive branch (more MACs, then more
    vector ops, then more bytes moved), with a warning naming the node and both branches' costs. Each branch is
    first walked on a scratch copy of the import to measure it."""
    costs = {b: _branch_cost(imp, node, b) for b in ("then_branch", "else_branch")}
    taken = max(costs, key=lambda b: costs[b])          # a tie takes then_branch
    said = "; ".join(f"{b}: {m:,} MACs, {v:,} vector ops, {n:,} bytes moved" for b, (m, v, n) in costs.items())
    warnings.warn(f"{imp.where}: node '{node.name}' (If): condition computed at run time; costed as its more "
                  f"expensive branch, {taken} ({said})", stacklevel=2)
    _inline_branch(imp, node, taken)


def _branch_cost(imp: Importer, node, branch: str) -> tuple[int, int, int]:
    """(MACs, vector ops, bytes moved) of the IR ops one If branch adds, walked on a scratch copy of `imp`."""
    trial = replace(imp, builder=deepcopy(imp.builder), static=dict(imp.static), lazy=dict(imp.lazy),
                    poisoned=set(imp.poisoned), derived=set(imp.derived), freed=dict(imp.freed),
                    unsupported={k: list(v) for k, v in imp.unsupported.items()}, op_names=set(imp.op_names))
    before = len(trial.builder.ops)
    _inline_branch(trial, node, branch)
    b = trial.builder
    graph = Graph(b.name, b.tensors, b.ops, tuple(b.inputs), ())
    macs = ops = moved = 0
    for op in b.ops[before:]:
        work = lower_op(graph, op)
        if isinstance(work, Contraction):
            macs += work.macs
        elif isinstance(work, VectorWork):
            ops += work.ops
            moved += 0 if work.ops else work.read_bytes + work.write_bytes
    return macs, ops, moved


def _loop(imp: Importer, node) -> None:
    """Loop with a known trip count (its max_trip_count input M, a constant): the body unrolled M times, each copy's
    tensors named '<loop>/<i>/<name>', the loop-carried values chained from one copy to the next, the iteration
    number a constant per copy and the condition taken as true (M is the most the loop runs: a loop that may stop
    early is costed at its bound). Scan outputs are stacked along a new first axis (a Concat: data movement). A trip
    count computed at run time is a one-line error naming the node (--unknown-ops free: data movement)."""
    trips = imp.value(node.input[0]) if node.input and node.input[0] else None
    if trips is None:
        if _free(imp, node, [imp.shape(t) for t in node.input[2:]]):     # carried outputs: their inputs' shapes
            return
        raise InputError(f"{imp.where}: node '{node.name}' (Loop): its trip count is computed at run time; tilesim "
                         "costs a Loop whose max_trip_count (input M) is a constant, or with --unknown-ops free as "
                         "data movement of its outputs")
    trips = int(np.ravel(trips)[0])
    body = node_attrs(node)["body"]
    if trips * len(body.node) > MAX_UNROLLED_NODES:
        raise InputError(f"{imp.where}: node '{node.name}' (Loop): {trips:,} trips of {len(body.node)} body nodes "
                         f"would unroll to more than {MAX_UNROLLED_NODES:,} nodes")
    b_in, b_out = [t.name for t in body.input], [t.name for t in body.output]
    n_carried = len(node.input) - 2
    shared = {t.name: f"{node.name}/{t.name}" for t in body.initializer}
    for t in body.initializer:
        imp.add_static(shared[t.name], t.dims, t.data_type)
        imp.lazy[shared[t.name]] = t
    carried, scans = list(node.input[2:]), [[] for _ in b_out[1 + n_carried:]]
    for i in range(trips):
        names = dict(shared)
        for k, (t, et, v) in enumerate(((b_in[0], ONNX_INT64, i), (b_in[1], ONNX_BOOL, True))):
            names[t] = f"{node.name}/{i}/{t}"
            imp.add_static(names[t], (), et, np.array(v, dtype=np.int64 if k == 0 else np.bool_))
        names |= dict(zip(b_in[2:], carried, strict=True))
        names |= {o: f"{node.name}/{i}/{o}" for n in body.node for o in n.output if o}
        nodes = []
        for j, n in enumerate(body.node):
            copy = type(n)()
            copy.CopyFrom(n)
            copy.name = f"{node.name}/{i}/{n.name or f'{n.op_type}_{j}'}"
            copy.input[:] = [names.get(t, t) for t in n.input]
            copy.output[:] = [names.get(t, t) for t in n.output]
            nodes.append(copy)
        _walk(imp, nodes)
        outs = [names.get(t, t) for t in b_out]
        carried = outs[1:1 + n_carried]
        for stack, t in zip(scans, outs[1 + n_carried:], strict=True):
            stack.append(t)
    for out, src in zip(node.output, carried, strict=False):
        _bind(imp, node, src, out)
    for out, stack in zip(node.output[n_carried:], scans, strict=False):
        if not stack or any(t in imp.poisoned or t in imp.derived for t in stack):
            imp.poisoned.add(out)
            continue
        rows = [imp.op(node, "Unsqueeze", [t], {"axes": (0,)})[0] for t in stack]
        if len(rows) == 1:
            _bind(imp, node, rows[0], out)
        else:
            imp.op(node, "Concat", rows, {"axis": 0}, outputs=[out])


def _bind(imp: Importer, node, src: str, out: str) -> None:
    """ONNX output `out` of a node whose subgraph computed `src`: the same constant, view or poisoned value."""
    if src in imp.poisoned or src in imp.derived:
        (imp.poisoned if src in imp.poisoned else imp.derived).add(out)
    elif imp.is_static(src):
        st = imp.static[src]
        imp.add_static(out, st.shape, st.elem_type, imp.value(src))
    else:
        imp.alias(node, src, out)


def _inline_branch(imp: Importer, node, taken: str) -> None:
    """The `taken` branch of an If walked in its place (names prefixed with the If's); its outputs become the
    If's."""
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
        _bind(imp, node, src, out)


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
