"""GraphBuilder: the way workloads make graphs; every op's output shape is inferred as it is added."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from tilesim.arch.config import DTYPE_BYTES
from tilesim.arch.errors import InputError
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.ops import infer_shapes


class GraphBuilder:
    """Accumulates tensors and ops; `build()` returns a validated Graph."""

    def __init__(self, name: str, dtype: str = "int8", where: str | None = None):
        if dtype not in DTYPE_BYTES:
            raise InputError(f"dtype: unknown '{dtype}'; allowed: {', '.join(DTYPE_BYTES)}")
        self.name = name
        self.where = where or f"graph {name}"     # how errors name the graph (an imported model: its file)
        self.dtype = dtype
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self._count: dict[str, int] = {}

    def _fresh(self, base: str) -> str:
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        return base if n == 0 and base not in self.tensors else f"{base}_{n}"

    def _tensor(self, name: str, shape: Sequence[int], is_param: bool, dtype: str | None = None) -> str:
        if name in self.tensors:
            raise InputError(f"{self.where}: tensor '{name}' defined twice")
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise InputError(f"{self.where}: tensor '{name}' has a non-positive dimension {shape}")
        self.tensors[name] = Tensor(name, shape, dtype or self.dtype, is_param)
        return name

    def input(self, name: str, shape: Sequence[int], dtype: str | None = None) -> str:
        """A graph input (activation)."""
        self.inputs.append(self._tensor(name, shape, False, dtype))
        return name

    def param(self, name: str, shape: Sequence[int], dtype: str | None = None, keep_name: bool = False) -> str:
        """A weight or constant; `keep_name` uses `name` as given (imported models name their own tensors)."""
        return self._tensor(name if keep_name else self._fresh(name), shape, True, dtype)

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Shape of an existing tensor."""
        return self.tensors[tensor].shape

    def add(self, op_type: str, inputs: list[str], attrs: dict[str, Any] | None = None, name: str | None = None,
            n_outputs: int = 1, dtype: str | None = None, outputs: list[str] | None = None) -> Any:
        """Append an op; returns its output name (or list of names when n_outputs > 1). Imported models name
        their own tensors and ops: given `outputs`, those are the output names and `name` is kept as given."""
        attrs = dict(attrs or {})
        name = name if outputs and name is not None else self._fresh(name or op_type.lower())
        for t in inputs:
            if t not in self.tensors:
                raise InputError(f"{self.where}: op '{name}' uses unknown tensor '{t}'")
        shapes = infer_shapes(op_type, name, [self.tensors[t].shape for t in inputs], attrs)
        outs = list(outputs) if outputs else \
            [f"{name}.out" if len(shapes) == 1 else f"{name}.out{i}" for i in range(len(shapes))]
        out_dtype = dtype or self.tensors[inputs[0]].dtype if inputs else self.dtype
        for t, shape in zip(outs, shapes, strict=False):
            if outputs:   # an imported model's tensor: checked as inputs and weights are
                self._tensor(t, shape, False, out_dtype)
            else:
                self.tensors[t] = Tensor(t, shape, out_dtype, False)
        self.ops.append(Op(name, op_type, tuple(inputs), tuple(outs), attrs))
        return outs[0] if len(outs) == 1 and n_outputs == 1 else outs

    # ---- conveniences used by the built-in workloads

    def conv(self, x: str, filters: int, kernel: int, stride: int = 1, pad: int = 0, groups: int = 1,
             bias: bool = False, name: str = "conv") -> str:
        """Square-kernel Conv with its weight (and optional bias) parameters."""
        c = self.shape(x)[1]
        w = self.param(f"{name}.w", (filters, c // groups, kernel, kernel))
        ins = [x, w] + ([self.param(f"{name}.b", (filters,))] if bias else [])
        return cast(str, self.add("Conv", ins, {"strides": (stride, stride), "pads": (pad,) * 4, "dilations": (1, 1),
                                          "group": groups}, name=name))

    def batchnorm(self, x: str, name: str = "bn") -> str:
        """BatchNormalization over channels (scale, bias, mean, var parameters)."""
        c = self.shape(x)[1]
        params = [self.param(f"{name}.{p}", (c,)) for p in ("scale", "bias", "mean", "var")]
        return cast(str, self.add("BatchNormalization", [x, *params], name=name))

    def linear(self, x: str, out_features: int, bias: bool = True, name: str = "linear") -> str:
        """x @ W (+ b) with W of shape (in, out), as MatMul and Add."""
        w = self.param(f"{name}.w", (self.shape(x)[-1], out_features))
        y: str = self.add("MatMul", [x, w], name=name)
        if bias:
            y = self.add("Add", [y, self.param(f"{name}.b", (out_features,))], name=f"{name}.bias")
        return y

    def build(self, outputs: list[str] | str) -> Graph:
        """The finished Graph with the given outputs."""
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        return Graph(self.name, self.tensors, self.ops, tuple(self.inputs), tuple(outputs))
