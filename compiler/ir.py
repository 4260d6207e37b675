"""The operator-graph IR: Tensor, Op and Graph (a networkx DiGraph held by composition), ONNX op names."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any

import networkx as nx

from tilesim.arch.dtypes import tensor_bytes
from tilesim.arch.errors import InputError
from tilesim.compiler.sparsity import WeightSparsity


@dataclass(frozen=True)
class Tensor:
    """A named n-d tensor; `is_param` marks weights and constants (ONNX initializers)."""
    name: str
    shape: tuple[int, ...]
    dtype: str = "int8"
    is_param: bool = False
    sparsity: WeightSparsity | None = None   # a pruned parameter, stored compressed (compiler/sparsity.py)

    @property
    def elements(self) -> int:
        """Number of elements."""
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes (int4 rounds up)."""
        return tensor_bytes(self.elements, self.dtype)


@dataclass(frozen=True)
class Op:
    """One operator: ONNX op type, input and output tensor names, attributes."""
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)


class Graph:
    """Ops and tensors of a network; ops are kept in topological order, edges link producers to consumers."""

    def __init__(self, name: str, tensors: dict[str, Tensor], ops: list[Op],
                 inputs: tuple[str, ...], outputs: tuple[str, ...]):
        self.name = name
        self.tensors = dict(tensors)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.dag = nx.DiGraph()
        producer: dict[str, str] = {}
        names = set()
        for op in ops:
            if op.name in names:
                raise InputError(f"graph {name}: duplicate op name '{op.name}'")
            names.add(op.name)
            self.dag.add_node(op.name, op=op)
            for t in op.outputs:
                if t in producer:
                    raise InputError(f"graph {name}: tensor '{t}' is produced by both '{producer[t]}' and '{op.name}'")
                producer[t] = op.name
        self.producer = producer
        for op in ops:
            for t in op.inputs:
                if t in producer:
                    self.dag.add_edge(producer[t], op.name, tensor=t)
        self._check(ops)
        self.ops: tuple[Op, ...] = tuple(self.dag.nodes[n]["op"]
                                         for n in nx.lexicographical_topological_sort(self.dag, key=names_order(ops)))

    def _check(self, ops: list[Op]) -> None:
        """Cycles, dangling inputs and unknown tensors give one clear error each."""
        if not nx.is_directed_acyclic_graph(self.dag):
            cycle = nx.find_cycle(self.dag)
            raise InputError(f"graph {self.name}: cycle through ops {' -> '.join(a for a, _ in cycle)}")
        for op in ops:
            for t in op.inputs + op.outputs:
                if t not in self.tensors:
                    raise InputError(f"graph {self.name}: op '{op.name}' uses unknown tensor '{t}'")
            for t in op.inputs:
                tensor = self.tensors[t]
                if t not in self.producer and not tensor.is_param and t not in self.inputs:
                    raise InputError(f"graph {self.name}: input '{t}' of op '{op.name}' is dangling "
                                     "(no producer, not a graph input, not a parameter)")

    def op(self, name: str) -> Op:
        """The op called `name`."""
        op: Op = self.dag.nodes[name]["op"]
        return op

    def consumers(self, tensor: str) -> list[Op]:
        """Ops that read `tensor`."""
        return [op for op in self.ops if tensor in op.inputs]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.ops)} ops, {len(self.tensors)} tensors)"


def names_order(ops: list[Op]) -> Callable[[str], str]:
    """Sort key that keeps the builder's op order among topologically equal choices."""
    index = {op.name: i for i, op in enumerate(ops)}
    return lambda name: f"{index[name]:09d}"
