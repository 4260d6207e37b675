"""SCALE-Sim topology CSV -> Graph: one independent Conv or MatMul per row, so that each row is one kernel.

Two formats, told apart by the header row (SCALE-Sim itself needs `-i gemm` for the second):
  conv: `Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,`
  GEMM: `Layer, M, N, K,`
as read by SCALE-Sim 3.0.0's scalesim/topology_utils.py (load_arrays_conv, load_arrays_gemm):
- the first line is a header; blank lines are skipped; fields are comma-separated and stripped;
- SCALE-Sim drops whatever follows a row's last comma (`row.split(',')[:-1]`): usually nothing, sometimes a
  comment such as `#dw`. We drop a last field that is empty or starts with '#', and also accept rows without the
  trailing comma (SCALE-Sim crashes on those);
- an optional last column is an N:M sparsity ratio (topology_utils.py: default 1:1): the layer's filter keeps N
  of every M weights along K (SCALE-Sim's operand_matrix.create_filter_matrix keeps the first N of each group),
  so tilesim stores it compressed (compiler/sparsity.py) and, when the arch skips the pattern (a cfg with
  SparsitySupport = true gives array.sparsity [structured]), runs only the kept K;
- a conv row's one stride applies to height and width. Its output size is SCALE-Sim's E = ceil((H - R + s) / s)
  (topo_calc_hyperparams), which is ceil((H - R) / s) + 1 where ONNX (and the IR) without padding has
  floor((H - R) / s) + 1; they differ when s does not divide H - R, so such a Conv gets (s - (H - R) % s) rows
  (and columns) of padding at the bottom (right), which yields SCALE-Sim's E and F and its MACs. SCALE-Sim has
  no padding field: users pad H and W themselves;
- a conv row whose name contains 'DP' is depthwise: SCALE-Sim runs it as Channels separate one-channel layers
  named `<name>Channel_<i>` (load_arrays_conv), and so do we (one kernel each);
- a GEMM row M, N, K becomes A (M, K) times the weight B (K, N), as SCALE-Sim's ifmap M x K by filter K x N.
Every layer reads its own graph input (SCALE-Sim simulates layers independently), so kernels are named by the
layer names; a repeated name gets a suffix `_2`, `_3`, ... (the first free one) in file order.
SCALE-Sim has no batch: `--batch B` multiplies each layer's M (conv: B images). Bad rows raise InputError naming
the file, line and column.

workloads/configs/resnet18_scalesim.csv is SCALE-Sim's topologies/sparsity/Resnet18.csv (scale-sim-v2, MIT
licence, Copyright (c) 2024 SCALE-Sim Project), unchanged: no padding, so its 3x3 layers shrink by 2.
workloads/configs/resnet50_scalesim.csv is written by `benchmarks/scalesim_crosscheck.py --write-resnet50`
from torchvision's ResNet-50 v1.5 (stride on the 3x3 conv), each IFMAP size being the rows the layer touches,
(E - 1) * s + R, so that E matches torchvision's padded conv.
"""
from __future__ import annotations

import re
from pathlib import Path

from tilesim.arch.errors import InputError, field_error
from tilesim.compiler import Graph, GraphBuilder
from tilesim.compiler.sparsity import WeightSparsity, nm_sparsity
from tilesim.workloads.sparsity import with_tensor_sparsity

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer", "M", "N", "K")
MAX_KERNELS = 50_000        # kernels per run (each costs the simulator ~11 KB: 20,000 took 380 MB, 20 s)
_RATIO = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def _fields(line: str) -> list[str]:
    """Stripped comma-separated fields, without the trailing part SCALE-Sim ignores (empty or a '#' comment)."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) > 1 and (fields[-1] == "" or fields[-1].startswith("#")):
        fields.pop()
    return fields


def _kind(header: list[str], where: str) -> str:
    """'gemm' or 'conv' from the header row (by its column names, else by its number of columns)."""
    names = [h.lower() for h in header]
    if names[1:4] == ["m", "n", "k"]:
        return "gemm"
    if names[1:2] == ["ifmap height"]:
        return "conv"
    if len(header) in (4, 5):
        return "gemm"
    if len(header) in (8, 9):
        return "conv"
    raise InputError(f"{where}: line 1: header not recognised ({len(header)} columns); expected the conv form "
                     f"'{', '.join(CONV_COLUMNS)},' or the GEMM form '{', '.join(GEMM_COLUMNS)},'")


def _ints(fields: list[str], columns: tuple[str, ...], where: str, line: int) -> list[int]:
    """The numeric columns (all but the name) as integers >= 1."""
    out = []
    for col, (name, text) in enumerate(zip(columns[1:], fields[1:], strict=False), start=2):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise InputError(f"{where}: line {line}, column {col} ({name}): expected an integer >= 1, got {text!r}")
        out.append(value)
    return out


def parse_topology(text: str, source: str, with_ratios: bool = False) -> tuple[str, list[tuple]]:
    """('conv' | 'gemm', [(layer name, numbers)]) from topology CSV text; conv numbers are H, W, R, S, C, N, s.
    with_ratios: each layer also has its N:M sparsity ratio, (layer name, numbers, (N, M)); (1, 1) when none."""
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise InputError(f"{source}: empty topology file; expected a header row and one row per layer")
    kind = _kind(_fields(lines[first]), source)
    columns = CONV_COLUMNS if kind == "conv" else GEMM_COLUMNS
    layers = []
    for i in range(first + 1, len(lines)):
        if not lines[i].strip():
            continue
        line, fields = i + 1, _fields(lines[i])
        ratio = (1, 1)
        if len(fields) == len(columns) + 1:
            m = _RATIO.match(fields[-1])
            if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
                raise InputError(f"{source}: line {line}, column {len(fields)} (Sparsity): expected an N:M ratio "
                                 f"such as 1:1 (ignored: dense, as SCALE-Sim without SparsitySupport), "
                                 f"got {fields[-1]!r}")
            ratio = (int(m.group(1)), int(m.group(2)))
            fields.pop()
        if len(fields) != len(columns):
            raise InputError(f"{source}: line {line}: expected {len(columns)} columns ({', '.join(columns)}) and "
                             f"an optional N:M sparsity, got {len(fields)}")
        if not fields[0]:
            raise InputError(f"{source}: line {line}, column 1 ({columns[0]}): empty layer name")
        nums = _ints(fields, columns, source, line)
        if kind == "conv":
            h, w, r, s = nums[:4]
            if r > h or s > w:   # SCALE-Sim asserts the same (topology_utils.append_topo_arrays)
                col, what = (4, "Filter Height") if r > h else (5, "Filter Width")
                raise InputError(f"{source}: line {line}, column {col} ({what}): filter {r}x{s} is larger than "
                                 f"the {h}x{w} IFMAP")
        layers.append((fields[0], tuple(nums), ratio) if with_ratios else (fields[0], tuple(nums)))
    if not layers:
        raise InputError(f"{source}: no layers after the header row")
    kernels = sum(layer[1][4] if kind == "conv" and "DP" in layer[0] else 1 for layer in layers)
    if kernels > MAX_KERNELS:
        raise InputError(f"{source}: {kernels:,} kernels (a depthwise 'DP' row is one per channel), more than the "
                         f"{MAX_KERNELS:,} a run may have")
    return kind, layers


def _unique(name: str, used: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... (the first not yet used)."""
    out, i = name, 2
    while out in used:
        out, i = f"{name}_{i}", i + 1
    used.add(out)
    return out


def _pad_end(size: int, kernel: int, stride: int) -> int:
    """Padding at the end that turns ONNX's floor((size - kernel) / stride) + 1 into SCALE-Sim's ceil form."""
    return (stride - (size - kernel) % stride) % stride


def topology_graph(kind: str, layers, name: str, *, batch: int = 1, dtype: str = "int8") -> Graph:
    """Graph with one independent op per layer (DP conv layers: one per channel, as SCALE-Sim); layers given with
    their N:M ratio (parse_topology with_ratios) get filters with that sparsity."""
    b = GraphBuilder(name, dtype)
    used: set[str] = set()
    outputs = []
    pruned: dict[str, WeightSparsity] = {}

    def filter_of(op: str, tensor: str, sp: WeightSparsity | None) -> str:
        if sp is not None:
            pruned[tensor] = sp
        return tensor
    for layer, nums, *ratio in layers:
        sp = nm_sparsity(*ratio[0]) if ratio else None
        if kind == "gemm":
            m, n, k = nums
            op = _unique(layer, used)
            a = b.input(f"{op}.ifmap", ((batch,) if batch > 1 else ()) + (m, k))
            outputs.append(b.add("MatMul", [a, filter_of(op, b.param(f"{op}.filter", (k, n)), sp)], name=op))
            continue
        h, w, r, s, c, n, stride = nums
        pads = (0, 0, _pad_end(h, r, stride), _pad_end(w, s, stride))
        parts = [(f"{layer}Channel_{i}", 1) for i in range(c)] if "DP" in layer else [(layer, c)]
        for part, channels in parts:
            op = _unique(part, used)
            x = b.input(f"{op}.ifmap", (batch, channels, h, w))
            wt = filter_of(op, b.param(f"{op}.filter", (n, channels, r, s)), sp)
            outputs.append(b.add("Conv", [x, wt], {"strides": (stride, stride), "pads": pads, "dilations": (1, 1),
                                                       "group": 1}, name=op))
    return with_tensor_sparsity(b.build(outputs), pruned)


def load_topology(path: str, *, batch: int = 1, seq_len: int | None = None, dtype: str | None = "int8",
                  dims: dict[str, int] | None = None) -> Graph:
    """FILE_LOADERS entry for `.csv`: a SCALE-Sim topology file as a Graph (dtype None: int8)."""
    if seq_len is not None:
        raise field_error("seq_len", "a SCALE-Sim topology has no sequence length")
    if dims:
        raise field_error("dims", "a SCALE-Sim topology has no symbolic dimensions")
    dtype = dtype or "int8"
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise field_error("workload", f"cannot read '{path}': {e}") from None
    kind, layers = parse_topology(text, str(p), with_ratios=True)
    return topology_graph(kind, layers, p.stem, batch=batch, dtype=dtype)


__all__ = ["load_topology", "parse_topology", "topology_graph"]
