"""ONNX shape inference, guarded: every tensor's element type (and concrete shape, as a cross-check of the shapes
tilesim computes), without the inputs that make onnx abort (a negative dim reaching Slice) or take hours (Size)."""
from __future__ import annotations

from math import prod

from tilesim.arch.errors import InputError
from tilesim.workloads.onnx.model import first_line, onnx_module, standard, weights_as_inputs

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
    import networkx as nx  # noqa: PLC0415 (loads only to read an ONNX file: start-up time)
    onnx = onnx_module()
    nodes = list(m.graph.node)
    guarded = [i for i, n in enumerate(nodes) if n.op_type in GUARDED_INFERENCE and standard(n)]
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
    onnx = onnx_module()
    return onnx.shape_inference.infer_shapes(_guarded_model(m, where), strict_mode=False, data_prop=True)


def infer_types(model, where: str) -> dict[str, tuple[int, tuple | None]]:
    """ONNX shape inference: tensor name -> (element type, concrete shape or None)."""
    try:
        inferred = infer_shapes_safely(weights_as_inputs(model), where)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{where}: ONNX shape inference failed: {first_line(e)}") from None
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
