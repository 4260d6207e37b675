"""The Schedule (kernels with mappings and dependencies) and `lower`, which runs the compiler passes in order."""
from __future__ import annotations

from dataclasses import dataclass, field

from arch.config import ArchConfig
from arch.errors import InputError

from .cost import Mapping
from .ir import Graph, Op
from .lowering import Contraction, LoopNest, VectorWork, lower_op
from .ops import OpKind, spec
from .tiling import VectorMapping, naive_mapping, vector_mapping

TIMING_MODES = ("pipelined", "scalesim")


@dataclass(frozen=True)
class Kernel:
    """One unit of execution: the IR ops it covers, its loop nest, its mapping, the kernels it waits for."""
    name: str
    ops: tuple[str, ...]
    work: LoopNest
    mapping: Mapping | VectorMapping
    deps: tuple[int, ...] = ()

    @property
    def on_array(self) -> bool:
        """True for contractions (PE array), False for vector work and data movement."""
        return isinstance(self.work, Contraction)


@dataclass(frozen=True)
class CompileOptions:
    """Choices for lowering: the array timing mode."""
    timing: str | None = None       # None: the arch's own `timing`

    def resolved_timing(self, arch: ArchConfig) -> str:
        """The timing mode in force."""
        mode = self.timing or arch.timing
        if mode not in TIMING_MODES:
            raise InputError(f"--timing: got '{mode}', allowed: {', '.join(TIMING_MODES)}")
        return mode


@dataclass(frozen=True)
class Schedule:
    """A lowered workload: kernels in execution order for one arch and timing mode."""
    workload: str
    arch: str
    timing: str
    kernels: tuple[Kernel, ...]
    notes: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------- passes

def make_kernels(graph: Graph) -> list[tuple[Op, LoopNest, tuple[int, ...]]]:
    """One kernel per non-view op, with dependencies on the kernels producing its inputs (seen through views)."""
    source: dict[str, tuple[int, ...]] = {}     # tensor -> kernels whose output it is (views alias)
    kernels = []
    for op in graph.ops:
        deps = tuple(sorted({k for t in op.inputs for k in source.get(t, ())}))
        if spec(op.op_type).kind is OpKind.VIEW:
            for t in op.outputs:
                source[t] = deps
            continue
        work = lower_op(graph, op)
        if work.macs == 0 and isinstance(work, Contraction):
            continue
        for t in op.outputs:
            source[t] = (len(kernels),)
        kernels.append((op, work, deps))
    return kernels


def map_kernels(kernels, arch: ArchConfig) -> list[Kernel]:
    """Give each kernel a mapping: the first tiling that fits (contractions) or elements per tile (vector)."""
    out = []
    for op, work, deps in kernels:
        if isinstance(work, Contraction):
            mapping = naive_mapping(work, arch, name=op.name)
        else:
            mapping = vector_mapping(work, arch, name=op.name)
        out.append(Kernel(op.name, (op.name,), work, mapping, deps))
    return out


def lower(graph: Graph, arch: ArchConfig, options: CompileOptions = CompileOptions()) -> Schedule:
    """Graph -> Schedule: make kernels (views are free), then map each onto the arch."""
    timing = options.resolved_timing(arch)
    kernels = map_kernels(make_kernels(graph), arch)
    if not kernels:
        raise InputError(f"workload {graph.name}: nothing to run (the graph has only views)")
    return Schedule(graph.name, arch.name, timing, tuple(kernels))


__all__ = ["Kernel", "Schedule", "CompileOptions", "lower", "make_kernels", "map_kernels", "VectorWork"]
