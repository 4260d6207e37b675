"""The Schedule (kernels with mappings and dependencies) and `lower`, which runs the compiler passes in order."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from arch.config import ArchConfig
from arch.errors import InputError, did_you_mean
from arch.loader import build

from .cost import LOOPS, Mapping
from .ir import Graph
from .fusion import (AttentionMapping, AttentionWork, Epilogue, Grouping, KernelSpec, attention_mapping,
                     group_ops)
from .lowering import Contraction, LoopNest, VectorWork
from .mapper import search
from .residency import NONE, Residency, cache_hits, keep_on_chip
from .tiling import VectorMapping, fits, footprint, naive_mapping, vector_mapping

TIMING_MODES = ("pipelined", "scalesim")


@dataclass(frozen=True)
class Kernel:
    """One unit of execution: the IR ops it covers, its loop nest, its mapping, the kernels it waits for."""
    name: str
    ops: tuple[str, ...]
    work: LoopNest
    mapping: Mapping | VectorMapping | AttentionMapping
    deps: tuple[int, ...] = ()
    chosen_by: str = ""             # pinned | search | simulator | naive | vector: how the mapping was decided
    split: str = ""                 # m | n: the loop divided among cores ("" on one core); mapping is per core
    epilogue: Epilogue | None = None  # elementwise ops fused onto a contraction's drain
    residency: Residency = NONE      # transfers an on-chip copy (--fusion full) or a cache hit replaces

    def shares(self, cores: int) -> list[tuple[Contraction, int]]:
        """(per-core contraction, how many cores run it): the split loop cut into near-equal parts."""
        return core_shares(self.work, self.split, cores) if self.split else [(self.work, 1)]

    @property
    def on_array(self) -> bool:
        """True for contractions and fused attention (PE array), False for vector work and data movement."""
        return isinstance(self.work, (Contraction, AttentionWork))


MAPPERS = ("search", "naive")


@dataclass(frozen=True)
class CompileOptions:
    """Choices for lowering: the array timing mode, how contractions are mapped, and the search objective."""
    timing: str | None = None       # None: the arch's own `timing`
    fusion: str = "full"            # none | epilogue | full (compiler/fusion.py)
    mapper: str = "search"          # search: best of all tilings and loop orders; naive: first tiling that fits
    objective: str = "latency"      # latency | energy | edp
    pinned: tuple[tuple[str, Mapping], ...] = ()   # (kernel name, mapping) fixed by the user

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
    notes: tuple[str, ...] = field(default=())     # what was fused, and why the rest was not
    fusion: str = "none"

    def __post_init__(self):
        for j, kernel in enumerate(self.kernels):
            if any(not 0 <= d < j for d in kernel.deps):
                raise ValueError(f"kernel {j} '{kernel.name}' depends on {kernel.deps}: dependencies must name "
                                 "earlier kernels of the same schedule")


# ---------------------------------------------------------------- passes

def make_kernels(graph: Graph, fusion: str = "none") -> list[tuple]:
    """Kernels of a graph under a fusion policy: (name, ops, loop nest, dependencies, epilogue) each; views are
    free and seen through when linking a kernel to the kernels that produce its inputs."""
    return list(group_ops(graph, fusion).kernels)


Evaluator = Callable[[Kernel], float]


def choose_split(work: Contraction, cores: int) -> str:
    """The loop to divide among cores so every core gets work: m or n, whichever has at least `cores` iterations;
    when both do, the one that duplicates fewer bytes (splitting m gives every core all of B, n all of A)."""
    fits = [d for d in ("m", "n") if getattr(work, d) >= cores]
    if not fits:
        return "m" if work.m >= work.n else "n"
    if len(fits) == 1:
        return fits[0]
    return "m" if work.k * work.n <= work.m * work.k else "n"


def core_shares(work: Contraction, split: str, cores: int) -> list[tuple[Contraction, int]]:
    """The split loop cut into ceil(size / cores)-sized shares plus a remainder: [(share, cores running it)]."""
    size = getattr(work, split)
    per = -(-size // cores)
    full, rem = divmod(size, per)
    shares = [(replace(work, **{split: per}), full)]
    return shares + [(replace(work, **{split: rem}), 1)] if rem else shares


def map_kernels(kernels: list[KernelSpec], arch: ArchConfig, options: CompileOptions, timing: str,
                evaluate: Evaluator | None = None, held: list[int] | None = None) -> list[Kernel]:
    """Give each kernel a mapping: searched or naive tiling (contractions), elements per tile (vector).
    With `evaluate` (the kernel's objective as the simulator measures it), the search's shortlist is decided by it;
    results are shared between repeated layers."""
    if options.mapper not in MAPPERS:
        raise InputError(f"--mapper: got '{options.mapper}', allowed: {', '.join(MAPPERS)}")
    decided: dict[tuple, Mapping] = {}
    views: dict[int, ArchConfig] = {}          # arch.per_core(reserve) by reserve
    level = arch.home("input").capacity_bytes
    step = max(level // 16, 1)
    pinned = dict(options.pinned)
    names = {k.name for k in kernels if isinstance(k.work, Contraction)}
    for name in pinned:
        if name not in names:
            raise InputError(f"--mapping {name}: no contraction kernel of that name{did_you_mean(name, names)}")
    out = []
    for i, k in enumerate(kernels):
        name, ops, work, deps, epilogue = k.name, k.ops, k.work, k.deps, k.epilogue
        reserve = -(-held[i] // step) * step if held else 0       # kept activations, in 1/16ths of the level
        if reserve not in views:
            views[reserve] = arch.per_core(reserve)
        core = views[reserve]                      # what one core sees for its tiles
        split = choose_split(work, arch.cores) if isinstance(work, Contraction) and arch.cores > 1 else ""
        share = core_shares(work, split, arch.cores)[0][0] if split else work     # the largest per-core share
        if name in pinned:
            mapping, how = check_pinned(name, share, pinned[name], core), "pinned"
        elif isinstance(work, AttentionWork):
            mapping, how = attention_mapping(work, arch, timing, name, reserve), "attention"
        elif isinstance(work, Contraction) and options.mapper == "search":
            if (work, reserve) not in decided:
                choice = search(share, core, timing, options.objective, name=name)
                decided[work, reserve] = choice.mapping if evaluate is None else min(
                    choice.shortlist, key=lambda m: evaluate(Kernel(name, ops, work, m, split=split,
                                                                    epilogue=epilogue)))
            mapping = decided[work, reserve]
            how = "search" if evaluate is None else "simulator"
        elif isinstance(work, Contraction):
            mapping, how = naive_mapping(share, core, name=name), "naive"
        else:
            mapping, how = vector_mapping(work, core, name=name), "vector"
        out.append(Kernel(name, ops, work, mapping, deps, how, split, epilogue))
    return out


def check_pinned(name: str, work: Contraction, mapping: Mapping, arch: ArchConfig) -> Mapping:
    """A user's mapping for kernel `name`, checked: legal dataflow, order, tile sizes, and it fits the buffers."""
    where = f"--mapping {name}"
    allowed = (arch.array.dataflow,) + tuple(arch.array.dataflows)
    if mapping.dataflow not in allowed:
        raise InputError(f"{where}.dataflow: '{mapping.dataflow}' is not supported by arch '{arch.name}'; "
                         f"allowed: {', '.join(allowed)}")
    if sorted(mapping.order) != ["k", "m", "n"]:
        raise InputError(f"{where}.order: '{mapping.order}' must be a permutation of m, n, k (e.g. mnk)")
    for d in LOOPS:
        t, size = mapping.tile(d), getattr(work, d)
        if not 1 <= t <= size:
            raise InputError(f"{where}.tile_{d}: must be between 1 and {size} (the loop's size), got {t}")
    if not fits(work, mapping, arch):
        need = footprint(work, mapping, arch)
        over = ", ".join(f"memory.{lv.name} needs {need[lv.name]} B of {lv.capacity_bytes}"
                         for lv in arch.onchip if need[lv.name] > lv.capacity_bytes)
        raise InputError(f"{where}: tiles do not fit: {over}")
    return mapping


def load_pinned(raw, source: str) -> tuple[tuple[str, Mapping], ...]:
    """Pinned mappings from a parsed YAML mapping {kernel name: {dataflow, tile_m, tile_n, tile_k, order}}."""
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{source}: expected a mapping of kernel names to mappings, e.g. "
                         "conv1: {dataflow: ws, tile_m: 784, tile_n: 64, tile_k: 147, order: mnk}")
    return tuple((str(name), build(Mapping, spec, f"--mapping {name}")) for name, spec in raw.items())


def lower(graph: Graph, arch: ArchConfig, options: CompileOptions = CompileOptions(),
          evaluate: Evaluator | None = None, grouping: Grouping | None = None) -> Schedule:
    """Graph -> Schedule: make kernels (views are free), then map each onto the arch. `evaluate` (e.g.
    sim.kernel_evaluator) lets the simulator pick among the search's closed-form shortlist. `grouping`:
    group_ops(graph, options.fusion) when the caller already has it (it does not depend on the arch; sweeps reuse
    one per graph)."""
    timing = options.resolved_timing(arch)
    grouping = group_ops(graph, options.fusion) if grouping is None else grouping
    specs = list(grouping.kernels)
    plan, held = keep_on_chip(specs, graph, arch) if options.fusion == "full" else ([NONE] * len(specs), None)
    kernels = map_kernels(specs, arch, options, timing, evaluate, held)
    # a hardware cache (any policy) serves the reads an on-chip copy does not (compiler/residency.py)
    plan = [kept if kept != NONE else hit for kept, hit in zip(plan, cache_hits(specs, graph, arch))]
    kernels = [replace(k, residency=r) for k, r in zip(kernels, plan)]
    if not kernels:
        raise InputError(f"workload {graph.name}: nothing to run (the graph has only views)")
    return Schedule(graph.name, arch.name, timing, tuple(kernels), grouping.notes, options.fusion)


__all__ = ["Kernel", "Schedule", "CompileOptions", "lower", "make_kernels", "map_kernels", "VectorWork"]
