"""ONNX model -> compiler.ir.Graph (`tilesim run --workload model.onnx`); needs the optional `onnx` package.

Steps, each failing with one InputError line (module in brackets):
1. read the file without external weight data (the simulator needs shapes, not weight values: initializer
   shapes come from TensorProto dims, so a model whose `.onnx.data` file is missing imports all the same) [model];
2. structural checks of our own (dangling inputs, duplicate producers, cycles, with clear messages), a
   topological sort, local functions inlined, then `onnx.checker` on a copy in which weights stored outside the
   file are graph inputs of the same type and shape [model];
3. symbolic dimensions of the graph inputs bound from `--dim NAME=VALUE`, `--batch` (a dim whose name contains
   'batch') and `--seq-len` (a name containing 'seq' or 'sequence'); unbound ones are listed in one error [model];
4. ONNX shape inference for every tensor's element type (and as a cross-check of the shapes computed here);
   a negative dimension reaching a Slice is refused first (ONNX's Slice inference asserts on one, which aborts
   the process in onnx builds with C++ assertions), and the Size of a huge tensor is not propagated (it would
   take hours) [shapes];
5. decomposed LayerNorm, RMSNorm, GELU, SiLU, rotary-embedding and exported-attention subgraphs rewritten into
   the fused ops [patterns];
6. one walk in topological order [load]: constant shape computations (Shape/Gather/Concat/Unsqueeze/Cast/...
   feeding Reshape/Expand/Slice...) are evaluated with numpy [folding]; nodes whose inputs are all constants
   become constants (weights pre-transformed offline); every other node goes through HANDLERS, one table from ONNX
   op type to the function that emits IR ops through a compiler.GraphBuilder [handlers, importer]. Op types with no
   handler are collected and reported together, or (unknown_ops="free") costed as data movement. Ops that become
   several IR ops are in [compound], ONNX Runtime contrib ops in [contrib]; docs/onnx.md lists every op's cost.

Data types: ONNX element types map onto the IR's (float -> fp32, float16 -> fp16, bfloat16 -> bf16, float8 ->
fp8, (u)int8 -> int8, (u)int16 -> int16, int4 -> int4; int32/int64 indices -> int32 and bool -> int8, the IR
having no wider integer; double -> fp32). `dtype` (from --dtype) replaces every numeric type but those index
types; None keeps the model's. QDQ models: DequantizeLinear is free and keeps its int8 input type, so a Conv or
MatMul fed by DQ runs on int8 operands; QuantizeLinear is a Cast to int8 (an epilogue a runtime would fuse).
QLinearConv / QLinearMatMul / ConvInteger / MatMulInteger become Conv / MatMul on their int8 operands.
"""
from tilesim.workloads.onnx.handlers import HANDLERS
from tilesim.workloads.onnx.load import load_onnx
from tilesim.workloads.onnx.model import INSTALL_HINT, bind_dims, ir_dtype
from tilesim.workloads.onnx.shapes import infer_shapes_safely

__all__ = ["HANDLERS", "INSTALL_HINT", "bind_dims", "infer_shapes_safely", "ir_dtype", "load_onnx"]
