"""The Schedule (kernels with mappings and dependencies) and `lower`, which runs the compiler passes in order."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Literal, get_args

from tilesim.arch.config import ArchConfig, PEArray, TimingMode
from tilesim.arch.dataflow import DATAFLOWS
from tilesim.arch.errors import InputError, did_you_mean, field_error
from tilesim.arch.loader import build
from tilesim.compiler.attention import AttentionMapping, AttentionWork, attention_mapping
from tilesim.compiler.cost import LOOPS, Mapping
from tilesim.compiler.fusion import Epilogue, Grouping, KernelSpec, Work, group_ops
from tilesim.compiler.ir import Graph
from tilesim.compiler.lowering import Contraction, VectorWork
from tilesim.compiler.mapper import TIE_BAND, KernelContext, naive, search
from tilesim.compiler.residency import NONE, Residency, cache_hits, keep_on_chip
from tilesim.compiler.sparsity import on_array
from tilesim.compiler.tiling import VectorMapping, fits, footprint, vector_mapping

KernelMapping = Mapping | VectorMapping | AttentionMapping
MAPPING_OF: dict[type, type] = {Contraction: Mapping, VectorWork: VectorMapping, AttentionWork: AttentionMapping}


@dataclass(frozen=True)
class Kernel:
    """One unit of execution: the IR ops it covers, its loop nest, its mapping (of the loop nest's own mapping type:
    MAPPING_OF), the kernels it waits for."""
    name: str
    ops: tuple[str, ...]
    work: Work
    mapping: KernelMapping
    deps: tuple[int, ...] = ()
    chosen_by: str = ""             # pinned | search | simulator | naive | vector: how the mapping was decided
    split: str = ""                 # m | n | "<pm>x<pn>": how the outputs are divided among cores ("" on one
    #                                 core): along m, along n, or into a pm x pn grid of blocks; mapping is per core
    epilogue: Epilogue | None = None  # elementwise ops fused onto a contraction's drain
    residency: Residency = NONE      # transfers an on-chip copy (--fusion full) or a cache hit replaces

    def __post_init__(self) -> None:
        if type(self.mapping) is not MAPPING_OF[type(self.work)]:
            raise TypeError(f"kernel '{self.name}': a {type(self.work).__name__} is mapped by a "
                            f"{MAPPING_OF[type(self.work)].__name__}, not a {type(self.mapping).__name__}")

    @property
    def contraction(self) -> Contraction:
        """The loop nest of a contraction kernel (TypeError for other kernels)."""
        if not isinstance(self.work, Contraction):
            raise TypeError(f"kernel '{self.name}' runs a {type(self.work).__name__}, not a Contraction")
        return self.work

    def shares(self, cores: int) -> list[tuple[Contraction, int]]:
        """(per-core contraction, how many cores run it): the split loops cut into near-equal parts."""
        work = self.contraction
        return core_shares(work, self.split, cores) if self.split else [(work, 1)]

    def array_parts(self, cores: int) -> list[tuple[Contraction, int]]:
        """(contraction, copies) the array runs: a contraction's per-core shares, fused attention's QK^T and PV,
        nothing for vector work."""
        return self.shares(cores) if self.split else [(part, 1) for part in self.work.parts()]

    def tile_count(self, cores: int) -> int:
        """Tiles one core runs: the mapping's tiles of the largest per-core share."""
        match self.work, self.mapping:
            case Contraction(), Mapping() as m:
                return m.tile_count(self.shares(cores)[0][0])
            case VectorWork() as w, VectorMapping() as m:
                return m.tile_count(w)
            case AttentionWork() as w, AttentionMapping() as m:
                return m.tile_count(w)
        raise TypeError(f"kernel '{self.name}': mapping does not match its loop nest")     # __post_init__ refuses

    def describe(self) -> str:
        """One-line text of the mapping, e.g. 'ws m=784 n=256 k=576 order=mnk' (tiles of one core's share), with
        ' split=m', ' split=n' or ' split=12x11' (a grid of output blocks) when cores share the kernel."""
        return self.mapping.describe() + (f" split={self.split}" if self.split else "")

    @property
    def on_array(self) -> bool:
        """True for contractions and fused attention (PE array), False for vector work and data movement."""
        return self.work.on_array


MAPPERS = ("search", "naive")


FusionPolicy = Literal["none", "epilogue", "full", "attention"]  # = compiler/fusion.py POLICIES
MapperKind = Literal["search", "naive"]                         # = MAPPERS
Objective = Literal["latency", "energy", "edp"]                 # = compiler/mapper.py OBJECTIVES


@dataclass(frozen=True)
class CompileOptions:
    """Choices for lowering: the array timing mode, how contractions are mapped, and the search objective. Each
    field's metadata holds its help text (the CLI's flags are generated from it); values are checked here."""
    timing: TimingMode | None = field(default=None, metadata={"help": "array timing model (default: the arch's)"})
    fusion: FusionPolicy = field(default="full", metadata={
        "help": "none | epilogue | full (default) | attention (only attention chains, as eager PyTorch with "
                "scaled_dot_product_attention): which ops run fused in one kernel"})
    mapper: MapperKind = field(default="search", metadata={
        "help": "search: best tiling and loop order per layer (default); naive: first tiling that fits"})
    objective: Objective = field(default="latency", metadata={"help": "what the mapping search minimises"})
    pinned: tuple[tuple[str, Mapping], ...] = field(default=(), metadata={   # (kernel name, mapping) fixed
        "help": "pin kernels' mappings: {kernel: {dataflow, tile_m, tile_n, tile_k, order, hold}}",
        "flag": "--mapping", "metavar": "FILE.yaml"})

    def __post_init__(self) -> None:
        for name, kind in (("timing", TimingMode), ("fusion", FusionPolicy), ("mapper", MapperKind),
                           ("objective", Objective)):
            value, allowed = getattr(self, name), get_args(kind)
            if value not in allowed and not (name == "timing" and value is None):
                raise InputError(f"{name}: got '{value}'{did_you_mean(str(value), allowed)}, allowed: "
                                 f"{', '.join(allowed)}")
        object.__setattr__(self, "pinned", tuple(self.pinned))

    def resolved_timing(self, arch: ArchConfig) -> str:
        """The timing mode in force (the arch's loader checked its own)."""
        return self.timing or arch.timing


@dataclass(frozen=True)
class Schedule:
    """A lowered workload: kernels in execution order for one arch and timing mode."""
    workload: str
    arch: str
    timing: str
    kernels: tuple[Kernel, ...]
    notes: tuple[str, ...] = field(default=())     # what was fused, and why the rest was not
    fusion: str = "none"

    def __post_init__(self) -> None:
        for j, kernel in enumerate(self.kernels):
            if any(not 0 <= d < j for d in kernel.deps):
                raise ValueError(f"kernel {j} '{kernel.name}' depends on {kernel.deps}: dependencies must name "
                                 "earlier kernels of the same schedule")


# ---------------------------------------------------------------- passes

def make_kernels(graph: Graph, fusion: str = "none") -> list[KernelSpec]:
    """Kernels of a graph under a fusion policy: (name, ops, loop nest, dependencies, epilogue) each; views are
    free and seen through when linking a kernel to the kernels that produce its inputs."""
    return list(group_ops(graph, fusion).kernels)


Evaluator = Callable[[Kernel], float]


@lru_cache(maxsize=4096)
def choose_split(work: Contraction, cores: int, array: PEArray | None = None) -> str:
    """How to divide a contraction's outputs among cores. Without `array`: along m or n, whichever has at least
    `cores` iterations; when both do, the one that duplicates fewer bytes (splitting m gives every core all of B, n
    all of A). With the arch's `array`, a pm x pn grid of output blocks (m and n split at once, as GPUs deal out
    output tiles) is taken instead when it needs fewer array passes per core (grid_passes): a 1-D split of a
    4096-wide n over 132 cores leaves 31 columns per core, half of a 64-wide array."""
    fits = [d for d in ("m", "n") if getattr(work, d) >= cores]
    if not fits:
        one = "m" if work.m >= work.n else "n"
    elif len(fits) == 1:
        one = fits[0]
    else:
        one = "m" if work.k * work.n <= work.m * work.k else "n"
    if array is None or cores < 4:
        return one
    grid = (cores, 1) if one == "m" else (1, cores)
    passes, best = grid_passes(work, grid, array), None
    for pm in range(2, min(work.m, cores // 2) + 1):
        pn = min(cores // pm, work.n)
        if pn < 2:
            break
        # strictly fewer passes than the 1-D split; among grids, fewer passes, then fewer operand bytes loaded by
        # all cores (A once per n piece, B once per m piece)
        score = (grid_passes(work, (pm, pn), array), pn * work.m * work.k + pm * work.k * work.n, (pm, pn))
        if score[0] < passes and (best is None or score < best):
            best = score
    if best is None:
        return one
    pm, pn = best[2]
    return f"{pm}x{pn}"


def grid_passes(work: Contraction, grid: tuple[int, int], array: PEArray) -> int:
    """Array passes (folds x streamed length) of the largest per-core block of a pm x pn grid, in the array's
    dataflow: OS folds M x N over rows x cols and streams K; WS folds K x N and streams M; IS folds K x M, streams
    N (the same spatial mapping as compiler/cost.py)."""
    m, n, k = -(-work.m // grid[0]), -(-work.n // grid[1]), work.k
    r, c = array.rows, array.cols
    sr, sc, t = DATAFLOWS[array.dataflow].spatial(m, n, k)
    return int(work.g * -(-sr // r) * -(-sc // c) * t)


def core_grid(split: str, cores: int) -> tuple[int, int]:
    """Parts along m and along n of a split ("m", "n" or "<pm>x<pn>")."""
    if split == "m":
        return cores, 1
    if split == "n":
        return 1, cores
    pm, pn = split.split("x")
    return int(pm), int(pn)


def core_blocks(work: Contraction, split: str, cores: int) -> list[tuple[Contraction, int, int]]:
    """Per-core blocks of a split: each split loop cut into ceil(size / parts)-sized pieces plus a remainder;
    [(block, pieces along m of its size, pieces along n of its size)]: that block runs on the product of cores."""
    return list(_blocks(work, split, cores))


@lru_cache(maxsize=4096)
def _blocks(work: Contraction, split: str, cores: int) -> tuple[tuple[Contraction, int, int], ...]:
    """core_blocks, remembered per (loop nest, split, cores): kernels ask for their shares many times."""
    pm, pn = core_grid(split, cores)

    def cut(size: int, parts: int) -> list[tuple[int, int]]:
        per = -(-size // parts)
        full, rem = divmod(size, per)
        return [(per, full)] + ([(rem, 1)] if rem else [])
    return tuple((replace(work, m=bm, n=bn), cm, cn) for bm, cm in cut(work.m, pm) for bn, cn in cut(work.n, pn))


def core_shares(work: Contraction, split: str, cores: int) -> list[tuple[Contraction, int]]:
    """The split loops cut into near-equal pieces (core_blocks): [(share, cores running it)], largest first."""
    return [(block, cm * cn) for block, cm, cn in core_blocks(work, split, cores)]


Decisions = dict[tuple[Contraction, int, KernelContext, Residency], Mapping]


def map_kernels(kernels: list[KernelSpec], arch: ArchConfig, options: CompileOptions, timing: str,
                evaluate: Evaluator | None = None, held: list[int] | None = None,
                plan: list[Residency] | None = None, decided: Decisions | None = None) -> list[Kernel]:
    """Give each kernel a mapping: searched or naive tiling (contractions), elements per tile (vector).
    With `evaluate` (the kernel's objective as the simulator measures it), the search's shortlist is decided by it,
    each candidate simulated with the operands `plan` keeps on chip for it; results are shared between repeated
    layers, and through `decided` between the lowerings of one lower() call (the fusion guard's policies: the same
    arch, timing, objective and evaluator, so a kernel's pick depends only on its key)."""
    if options.mapper not in MAPPERS:
        raise field_error("mapper", f"got '{options.mapper}', allowed: {', '.join(MAPPERS)}")
    decided = {} if decided is None else decided
    views: dict[int, ArchConfig] = {}          # arch.per_core(reserve) by reserve
    level = arch.home("input").capacity_bytes
    step = max(level // 16, 1)
    pinned = dict(options.pinned)
    names = {k.name for k in kernels if isinstance(k.work, Contraction)}
    for name in pinned:
        if name not in names:
            raise field_error(f"pinned {name}", f"no contraction kernel of that name{did_you_mean(name, names)}")
    out = []
    for i, k in enumerate(kernels):
        name, ops, work, deps, epilogue = k.name, k.ops, k.work, k.deps, k.epilogue
        if isinstance(work, Contraction):
            work = on_array(work, arch.array)       # zeros the array skips (compiler/sparsity.py)
        reserve = -(-held[i] // step) * step if held else 0       # kept activations, in 1/16ths of the level
        if reserve not in views:
            views[reserve] = arch.per_core(reserve)
        core = views[reserve]                      # what one core sees for its tiles
        mapping: KernelMapping
        split = ""
        if isinstance(work, AttentionWork):
            mapping, how = attention_mapping(work, arch, timing, name, reserve), "attention"
        elif isinstance(work, VectorWork):
            mapping, how = vector_mapping(work, arch, core, name=name), "vector"
        else:
            split = choose_split(work, arch.cores, arch.array) if arch.cores > 1 else ""
            share = core_shares(work, split, arch.cores)[0][0] if split else work     # the largest per-core share
            if name in pinned:
                mapping, how = check_pinned(name, share, pinned[name], core), "pinned"
            elif options.mapper == "search":
                kept = plan[i] if plan else NONE
                context = kernel_context(epilogue, share, work, split, arch, kept)
                if (work, reserve, context, kept) not in decided:
                    choice = search(share, core, timing, options.objective, name=name, context=context)
                    decided[work, reserve, context, kept] = choice.mapping if evaluate is None else pick(
                        choice.shortlist, partial(_candidate, name, ops, work, split, epilogue, kept), evaluate,
                        options.objective)
                mapping = decided[work, reserve, context, kept]
                how = "search" if evaluate is None else "simulator"
            else:
                mapping, how = naive(share, core, name=name), "naive"
        out.append(Kernel(name, ops, work, mapping, deps, how, split, epilogue))
    return out


def kernel_context(epilogue: Epilogue | None, share: Contraction, work: Contraction, split: str,
                   arch: ArchConfig, kept: Residency = NONE) -> KernelContext:
    """What the mapping search needs of a contraction kernel beyond its per-core loop nest (`share`): its fused
    epilogue's vector cycles over the share's outputs (Epilogue.vector_cycles, as the simulator costs them), and how
    many cores share each A and B tile (the split's pieces along n and m, where the arch loads such tiles once), and
    the operands `kept` on chip for it (they cross no channel)."""
    outputs = (share.g * share.m * share.n) / (work.g * work.m * work.n)
    cycles = epilogue.vector_cycles(outputs, arch.vector) if epilogue is not None else 0
    along_m, along_n = core_grid(split, arch.cores) if split else (1, 1)
    return KernelContext(cycles, along_n if arch.loads_once("input") else 1,
                         along_m if arch.loads_once("weight") else 1, kept.a, kept.b, kept.out)


def _candidate(name: str, ops: tuple[str, ...], work: Contraction, split: str, epilogue: Epilogue | None,
               residency: Residency, mapping: Mapping) -> Kernel:
    """A contraction kernel with a candidate mapping, as the evaluator simulates it: with the operands kept on chip
    for it (a tiling that re-feeds the array per small tile costs nothing while its input streams from DRAM, and
    dominates once the input is on chip)."""
    return Kernel(name, ops, work, mapping, split=split, epilogue=epilogue, residency=residency)


def pick(shortlist: tuple[Mapping, ...], kernel: Callable[[Mapping], Kernel], evaluate: Evaluator,
         objective: str) -> Mapping:
    """The best of a shortlist as the simulator measures it. Under the latency objective, candidates within
    TIE_BAND (1%) of the least cycles are ties, as in the search, and the tie goes to less energy, then fewer DRAM
    bytes (when `evaluate` can measure them: its `measure` gives (cycles, pJ, DRAM bytes)). A candidate the
    simulator refuses (its tile program past the memory limit) is left out; if it refuses every one, its error
    stands."""
    measure = getattr(evaluate, "measure", None)
    valued: list[tuple[Mapping, float]] = []
    refused: InputError | None = None
    for m in shortlist:
        try:
            valued.append((m, evaluate(kernel(m))))
        except InputError as e:
            refused = refused or e
    if not valued and refused is not None:
        raise refused
    if objective != "latency" or measure is None:
        return min(valued, key=lambda mc: mc[1])[0]
    tie = min(c for _, c in valued) * (1 + TIE_BAND)
    tied = [(m, c) for m, c in valued if c <= tie]
    if len(tied) == 1:
        return tied[0][0]
    return min(tied, key=lambda mc: (*measure(kernel(mc[0]))[1:], mc[1]))[0]


def check_pinned(name: str, work: Contraction, mapping: Mapping, arch: ArchConfig) -> Mapping:
    """A user's mapping for kernel `name`, checked: legal dataflow, order, tile sizes, and it fits the buffers."""
    where = f"--mapping {name}"
    allowed = (arch.array.dataflow, *tuple(arch.array.dataflows))
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


def load_pinned(raw: object, source: str) -> tuple[tuple[str, Mapping], ...]:
    """Pinned mappings from a parsed YAML mapping {kernel name: {dataflow, tile_m, tile_n, tile_k, order}}."""
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{source}: expected a mapping of kernel names to mappings, e.g. "
                         "conv1: {dataflow: ws, tile_m: 784, tile_n: 64, tile_k: 147, order: mnk}")
    out = []
    for name, spec in raw.items():
        mapping = build(Mapping, spec, f"--mapping {name}")
        if mapping is None:          # build raises on every problem it finds; None would be a bug
            raise field_error(f"pinned {name}", "could not be read")
        out.append((str(name), mapping))
    return tuple(out)


UNKEPT = "full without activations kept on chip"       # the guard's name for full's kernels with nothing kept
WEAKER: dict[str, tuple[FusionPolicy, ...]] = {   # the policies whose kernels each policy's fuse a superset of
    "full": ("epilogue", "attention"), "epilogue": ("none",), "attention": ("none",)}


def lower(graph: Graph, arch: ArchConfig, options: CompileOptions = CompileOptions(),
          evaluate: Evaluator | None = None, grouping: Grouping | None = None) -> Schedule:
    """Graph -> Schedule: make kernels (views are free), then map each onto the arch. `evaluate` (e.g.
    sim.kernel_evaluator) lets the simulator pick among the search's closed-form shortlist. `grouping`:
    group_ops(graph, options.fusion, arch.epilogue_ops) when the caller already has it (sweeps reuse one per
    graph and arch epilogue).

    Fusion never adds off-chip traffic: when `evaluate` can count a kernel's DRAM bytes as the simulator does
    (its `dram_bytes`), a policy's schedule is compared with the schedules of the policies it extends (full ->
    epilogue or attention -> none, and full without activations kept on chip) and the one moving the fewest bytes
    is kept, with a note (under the latency objective, among those within TIE_BAND of the fastest: _guarded);
    without it (a closed-form lowering) the policy's own kernels are kept. A fused kernel
    can move more: a flash-attention block re-reads K and V per query block, and activations kept on chip leave
    the other kernels' tiles less room, so their weights may be re-read; and the search may pick faster tilings
    that move more. Where a weaker policy moves fewer bytes, the guard also weighs the policy's kernels tiled as
    that policy tiles them (_with_tilings_of) and, under the latency objective, those mixed with the policy's own
    faster tilings within the weaker policies' bytes (_mixed)."""
    return _lower(graph, arch, options, evaluate, grouping, {}, {})


def _lower(graph: Graph, arch: ArchConfig, options: CompileOptions, evaluate: Evaluator | None,
           grouping: Grouping | None, decided: Decisions, lowered: dict[str, Schedule]) -> Schedule:
    """lower() with the searched kernels' picks shared in `decided` by every lowering it makes (map_kernels), and
    each policy's guarded schedule in `lowered` (none is guarded against by both epilogue and attention)."""
    if options.fusion not in lowered:
        lowered[options.fusion] = _guarded_lowering(graph, arch, options, evaluate, grouping, decided, lowered)
    return lowered[options.fusion]


def _guarded_lowering(graph: Graph, arch: ArchConfig, options: CompileOptions, evaluate: Evaluator | None,
                      grouping: Grouping | None, decided: Decisions, lowered: dict[str, Schedule]) -> Schedule:
    """The policy's schedule, or the fusion guard's pick against its weaker policies (see lower)."""
    timing = options.resolved_timing(arch)
    grouping = group_ops(graph, options.fusion, arch.epilogue_ops) if grouping is None else grouping
    schedule = _lower_policy(graph, arch, options, timing, evaluate, grouping, options.fusion == "full", decided)
    moved = getattr(evaluate, "dram_bytes", None)
    if moved is None or options.fusion not in WEAKER:
        return schedule

    totals: dict[int, int] = {}         # by id: every schedule asked about is held in `made` while lower() runs

    def total(s: Schedule) -> int:
        if id(s) not in totals:
            totals[id(s)] = sum(moved(k) for k in s.kernels)
        return totals[id(s)]
    alternatives: list[tuple[str, Callable[[], Schedule]]] = []
    kept = options.fusion == "full" and any(k.residency.out for k in schedule.kernels)
    if kept:
        alternatives.append((UNKEPT,
                             lambda: _lower_policy(graph, arch, options, timing, evaluate, grouping, False, decided)))
    for weaker in WEAKER[options.fusion]:
        alternatives.append((f"{weaker}'s kernels",
                             partial(_lower, graph, arch, replace(options, fusion=weaker), evaluate, None, decided,
                                     lowered)))
    made = [("", schedule)]
    for what, make in alternatives:
        try:
            made.append((what, make()))
        except InputError:              # unfused kernels may not fit where fused ones do (a whole softmax row)
            continue
    # the policy's kernels with nothing kept on chip (the same kernel list as _with_tilings_of's, so they mix)
    unkept = next((s for what, s in made if what == UNKEPT), None) if kept else schedule
    bound = min((total(s) for what, s in made if what.endswith("'s kernels")), default=total(schedule))
    cycles = _alone_cycles(evaluate)
    for what, other in made[1:]:
        if not what.endswith("'s kernels") or total(other) >= total(schedule):
            continue
        try:
            tiled = _with_tilings_of(other, graph, arch, options, timing, evaluate, grouping, decided)
        except InputError:
            continue
        made.append((f"its kernels with {other.fusion}'s tilings", tiled))
        if unkept is not None and cycles is not None and options.objective == "latency":
            made.append((f"its kernels, tiled its way or {other.fusion}'s",
                         _mixed(unkept, tiled, bound, moved, cycles)))
    return _guarded(made, total, options, evaluate)


def _mixed(own: Schedule, tiled: Schedule, bound: int, moved: Callable[[Kernel], int],
           cycles: Callable[[Kernel], int]) -> Schedule:
    """`tiled` (the policy's kernels with a weaker policy's tilings) with kernels of `own` (the same kernels with
    the policy's own tilings) swapped in where they are faster, most cycles saved per DRAM byte added first, while
    the whole moves no more than `bound` bytes (a greedy knapsack over kernels as the fusion guard counts them:
    each simulated alone)."""
    kernels = list(tiled.kernels)
    budget = bound - sum(moved(k) for k in kernels)
    gains = []
    for i, (mine, theirs) in enumerate(zip(own.kernels, tiled.kernels, strict=True)):
        saved = cycles(theirs) - cycles(mine)
        added = moved(mine) - moved(theirs)
        if mine.name == theirs.name and saved > 0:
            gains.append((added <= 0, saved / max(added, 1), i, added))
    for _, _, i, added in sorted(gains, reverse=True):
        if added <= budget:
            kernels[i] = own.kernels[i]
            budget -= added
    return replace(tiled, kernels=tuple(kernels))


def _alone_cycles(evaluate: Evaluator | None) -> Callable[[Kernel], int] | None:
    """A kernel's cycles simulated alone, if `evaluate` can tell: the evaluator itself when its objective is latency
    (the pipeline alone), else the cycles of its `measure` (a whole simulation, energy included)."""
    if getattr(evaluate, "objective", None) == "latency" and evaluate is not None:
        return lambda k: int(evaluate(k))
    measure = getattr(evaluate, "measure", None)
    return None if measure is None else lambda k: int(measure(k)[0])


def _with_tilings_of(weaker: Schedule, graph: Graph, arch: ArchConfig, options: CompileOptions, timing: str,
                     evaluate: Evaluator | None, grouping: Grouping, decided: Decisions) -> Schedule:
    """The policy's kernels (activations not kept on chip) with each contraction tiled as `weaker` tiles the same
    contraction: an epilogue fused onto a tiling moves no more DRAM bytes than the tiling and its separate vector
    kernels, so where the search's own fused tilings move more than the weaker policy (a faster tiling with more
    traffic once DRAM is faster), this keeps the fusion at no more traffic (issue 21). A user's pinned mappings
    stay."""
    works = {spec.name: on_array(spec.work, arch.array) for spec in grouping.kernels
             if isinstance(spec.work, Contraction)}
    user = dict(options.pinned)
    tilings = {k.name: (k.mapping, k.chosen_by) for k in weaker.kernels
               if isinstance(k.mapping, Mapping) and works.get(k.name) == k.work and k.name not in user}
    pinned = {**{name: mapping for name, (mapping, _) in tilings.items()}, **user}
    own = _lower_policy(graph, arch, replace(options, pinned=tuple(pinned.items())), timing, evaluate, grouping,
                        False, decided)
    return replace(own, kernels=tuple(replace(k, chosen_by=tilings[k.name][1]) if k.name in tilings else k
                                      for k in own.kernels))


def _guarded(made: list[tuple[str, Schedule]], total: Callable[[Schedule], int], options: CompileOptions,
             evaluate: Evaluator | None) -> Schedule:
    """The fusion guard's pick among a policy's schedule (first, what "") and those of the policies it extends
    (what "<policy>'s kernels"), of full without activations kept on chip, or of its kernels with a weaker
    policy's tilings (what "its kernels ..."): the one moving the fewest DRAM bytes.
    Under the latency objective (when `evaluate` can measure kernels), among the schedules moving no more bytes
    than the policies it extends, the fewest bytes within TIE_BAND of the fastest (each timed as the sum of its
    kernels simulated alone): a fused kernel that fits only with blocks too small to be fast (a flash-attention
    block of a few query rows) must not make the policy slower than the ones it extends, nor a larger buffer,
    where it starts to fit, slower than a smaller one."""
    bytes_of = {id(s): total(s) for _, s in made}
    least = min(bytes_of.values())
    alone = _alone_cycles(evaluate)
    admissible = [m for m in made if bytes_of[id(m[1])] == least]
    if options.objective == "latency" and alone is not None and len(made) > 1:
        bound = min((bytes_of[id(s)] for what, s in made if what.endswith("'s kernels")), default=least)
        allowed = [m for m in made if bytes_of[id(m[1])] <= bound]
        cycles = [sum(alone(k) for k in s.kernels) for _, s in allowed]
        tie = min(cycles) * (1 + TIE_BAND)
        admissible = [m for m, c in zip(allowed, cycles, strict=True) if c <= tie]
    what, best = min(admissible, key=lambda m: bytes_of[id(m[1])])    # the first of equals: the policy's own
    if not what:
        return best
    own = made[0][1]
    why = "move fewer DRAM bytes" if bytes_of[id(best)] < bytes_of[id(own)] else "are faster"
    note = f"fusion {options.fusion}: {what} {why} ({bytes_of[id(best)]:,} vs {bytes_of[id(own)]:,} DRAM bytes): kept"
    return replace(best, notes=(*best.notes, note), fusion=options.fusion)


def _lower_policy(graph: Graph, arch: ArchConfig, options: CompileOptions, timing: str,
                  evaluate: Evaluator | None, grouping: Grouping, keep: bool, decided: Decisions) -> Schedule:
    """lower() for one grouping: `keep` keeps activations on chip between kernels (--fusion full); `decided`: the
    searched kernels' picks of this lower() call (map_kernels)."""
    specs = list(grouping.kernels)
    plan, held = keep_on_chip(specs, graph, arch, grouping.alias) if keep else ([NONE] * len(specs), None)
    kernels = map_kernels(specs, arch, options, timing, evaluate, held, plan, decided)
    # a hardware cache (any policy) serves the reads an on-chip copy does not (compiler/residency.py)
    plan = [kept if kept != NONE else hit for kept, hit in zip(plan, cache_hits(specs, graph, arch), strict=False)]
    kernels = [k if k.residency == r else replace(k, residency=r) for k, r in zip(kernels, plan, strict=False)]
    if not kernels:
        raise InputError(f"workload {graph.name}: nothing to run (the graph has only views)")
    return Schedule(graph.name, arch.name, timing, tuple(kernels), grouping.notes, options.fusion)


__all__ = ["CompileOptions", "Kernel", "Schedule", "VectorWork", "lower", "make_kernels", "map_kernels"]
