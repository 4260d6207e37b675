"""The compiler: IR, op registry, lowering to loop nests, tiling and the Schedule."""
from .builder import GraphBuilder
from .ir import Graph, Op, Tensor
from .ops import OpKind, SPECS

__all__ = ["Graph", "Op", "Tensor", "GraphBuilder", "OpKind", "SPECS"]
