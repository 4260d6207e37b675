"""The compiler: IR, op registry, lowering to loop nests, tiling and the Schedule."""
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.ops import SPECS, OpKind

__all__ = ["SPECS", "Graph", "GraphBuilder", "Op", "OpKind", "Tensor"]
