"""The compiler: IR, op registry, lowering to loop nests, tiling and the Schedule."""
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.ops import OpKind, SPECS

__all__ = ["Graph", "Op", "Tensor", "GraphBuilder", "OpKind", "SPECS"]
