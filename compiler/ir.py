"""The operator-graph IR: Tensor, Op and Graph (a networkx DiGraph held by composition, made when first asked for),
ONNX op names."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from typing import TYPE_CHECKING, Any

from tilesim.arch.dtypes import tensor_bytes
from tilesim.arch.errors import InputError
from tilesim.compiler.sparsity import WeightSparsity

if TYPE_CHECKING:
    import networkx as nx


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
        self._given = list(ops)
        producer: dict[str, str] = {}
        by_name: dict[str, Op] = {}
        for op in ops:
            if op.name in by_name:
                raise InputError(f"graph {name}: duplicate op name '{op.name}'")
            by_name[op.name] = op
            for t in op.outputs:
                if t in producer:
                    raise InputError(f"graph {name}: tensor '{t}' is produced by both '{producer[t]}' and '{op.name}'")
                producer[t] = op.name
        self.producer = producer
        self._by_name = by_name
        order = topological_order(ops, producer)
        self._check(ops, len(order) < len(ops))
        self.ops: tuple[Op, ...] = tuple(by_name[n] for n in order)

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The ops as a networkx DiGraph (node attribute op; edge attribute tensor: what the producer hands on)."""
        import networkx as nx  # noqa: PLC0415 (networkx loads only where the graph is walked: start-up time)
        dag = nx.DiGraph()
        for op in self._given:
            dag.add_node(op.name, op=op)
        for op in self._given:
            for t in op.inputs:
                if t in self.producer:
                    dag.add_edge(self.producer[t], op.name, tensor=t)
        return dag

    def _check(self, ops: list[Op], cyclic: bool) -> None:
        """Cycles, dangling inputs and unknown tensors give one clear error each."""
        if cyclic:
            import networkx as nx  # noqa: PLC0415
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
        return self._by_name[name]

    def consumers(self, tensor: str) -> list[Op]:
        """Ops that read `tensor`."""
        return [op for op in self.ops if tensor in op.inputs]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.ops)} ops, {len(self.tensors)} tensors)"


def topological_order(ops: list[Op], producer: dict[str, str]) -> list[str]:
    """Op names in topological order, the builder's order among ops ready together (as networkx's
    lexicographical_topological_sort keyed by the builder's index: of the ready ops, the one listed first goes
    next); shorter than `ops` when they hold a cycle."""
    index = {op.name: i for i, op in enumerate(ops)}
    preds = [{producer[t] for t in op.inputs if t in producer} for op in ops]
    waiting = [len(p) for p in preds]
    consumers: list[list[int]] = [[] for _ in ops]
    for i, p in enumerate(preds):
        for name in p:
            consumers[index[name]].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(ops[i].name)
        for c in consumers[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    return order

