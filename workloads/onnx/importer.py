"""The state of one import: constants (known shapes, small values), the GraphBuilder holding the IR tensors and
ops, and the unsupported nodes found. Handlers (handlers.py) emit IR ops through `Importer.op`."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from tilesim.arch.errors import InputError
from tilesim.compiler import GraphBuilder
from tilesim.compiler.ops import infer_shapes
from tilesim.workloads.onnx.model import MAX_FOLD_ELEMS, has_data, ir_dtype, to_array


@dataclass
class Static:
    """A constant tensor: shape, ONNX element type, and its values when known (small ones only)."""
    shape: tuple[int, ...]
    elem_type: int
    value: np.ndarray | None = None


class AttributeCountError(Exception):
    """A spatial attribute with the wrong number of values (reported by the walk naming the node)."""


@dataclass
class Importer:
    """One import: `builder` holds the IR tensors and ops; constants stay out of the IR until an op uses them."""
    where: str
    override: str | None
    opset: int
    types: dict[str, tuple[int, tuple | None]]
    base_dir: Path
    builder: GraphBuilder
    static: dict[str, Static] = field(default_factory=dict)
    lazy: dict = field(default_factory=dict)          # initializer name -> TensorProto (values read on demand)
    unknown_ops: str = "error"                        # or "free": unknown ops cost as data movement
    poisoned: set[str] = field(default_factory=set)   # outputs of unsupported nodes
    derived: set[str] = field(default_factory=set)    # shape computations over them (constants once supported)
    freed: dict[str, int] = field(default_factory=dict)   # unknown op type -> count costed as data movement
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    op_names: set[str] = field(default_factory=set)
    picks: dict = field(default_factory=dict)         # TopK indices -> routing.Picks (MoE routing, routing.py)
    one_hot: dict = field(default_factory=dict)       # one-hot tensors of such picks -> routing.OneHotPicks
    nonzeros: dict[str, float] = field(default_factory=dict)   # tensor -> its expected nonzero elements
    count: int = 0

    # ---- tensors

    @property
    def tensors(self):
        """The IR tensors made so far."""
        return self.builder.tensors

    def is_static(self, name: str) -> bool:
        """True for constants (initializers, Constant nodes, folded results)."""
        return name in self.static

    def value(self, name: str) -> np.ndarray | None:
        """The values of a constant when known and small (read from the file on first use), else None."""
        s = self.static.get(name)
        if s is None:
            return None
        if s.value is None and name in self.lazy and prod(s.shape) <= MAX_FOLD_ELEMS:
            s.value = self.read_tensor(self.lazy.pop(name))
        return s.value

    def read_tensor(self, tensor) -> np.ndarray | None:
        """A TensorProto's values: inline data, or external data (found relative to the model's folder) when its
        file is there; None otherwise."""
        try:
            return to_array(tensor, base_dir=str(self.base_dir)) if tensor.data_location == 1 or \
                has_data(tensor) else None
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
        self.static[name] = Static(tuple(int(d) for d in shape), int(elem_type), value)

    def ir(self, name: str) -> str:
        """The IR tensor for `name`, a constant becoming a parameter on first use."""
        if name not in self.tensors:
            s = self.static[name]
            self.builder.param(name, s.shape, ir_dtype(s.elem_type, self.override, f"{self.where}: '{name}'"),
                               keep_name=True)
        return name

    def add_input(self, name: str, shape, elem_type: int) -> None:
        """A graph input (activation)."""
        self.builder.input(name, shape, ir_dtype(elem_type, self.override, f"{self.where}: input '{name}'"))

    def fresh(self, base: str) -> str:
        """A tensor name not used yet."""
        self.count += 1
        return f"{base}#{self.count}"

    # ---- ops

    def op(self, node, op_type: str, inputs: list[str], attrs: dict | None = None,
           outputs: list[str] | None = None, dtype: str | None = None) -> list[str]:
        """Emit one IR op for `node` (or, when every input is a constant or every output is empty, a constant of
        the inferred shape, an empty one with its value known: no elements); returns its output names (the given
        ONNX names, or fresh ones for intermediates)."""
        attrs = dict(attrs or {})
        shapes = infer_shapes(op_type, node.name, [self.shape(t) for t in inputs], attrs)
        outputs = outputs or [self.fresh(f"{node.name}/{op_type}") for _ in shapes]
        for t, shape in zip(outputs, shapes, strict=False):
            self._cross_check(node, t, shape)
        if all(self.is_static(t) for t in inputs) or all(0 in shape for shape in shapes):
            for t, shape in zip(outputs, shapes, strict=False):   # an empty result (a Slice past the end: ONNX
                et = self.types.get(t, (0, None))[0] or self.elem_type(inputs[0])   # clamps it to size 0) is
                self.add_static(t, shape, et, np.zeros(shape) if 0 in shape else None)   # a known constant
            return outputs
        ins = [self.ir(t) for t in inputs]
        self.builder.add(op_type, ins, attrs, name=self._op_name(node.name), dtype=dtype or
                         self._out_dtype(outputs[0], ins[0]), outputs=outputs)
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
