"""Layer fusion across kernels (--fusion full): activations kept in an on-chip level between the kernels.

A level's `resident_fraction` caps how much of it kept activations may take; each kernel's tiles get the rest of
the level at that point (the bytes live while it runs, rounded up to 1/16 of the level so searches are shared).
Walking the kernels in order, a kernel's output stays on chip when it fits beside the tensors already kept and is
not a graph output; its consumers then read it from SRAM, and it is dropped after its last consumer. Nothing is
ever evicted early, so a kept tensor never needs writing back. Weights and graph inputs always come from DRAM.

A hardware cache (a level of kind `cache`, e.g. a GPU's L2) works under every fusion policy instead: it is
write-back and write-allocate, so every output is still written to DRAM (eventually), but a later read of a tensor
hits when the tensor is still in the cache by LRU: its size plus the bytes of all distinct tensors touched since
its last use fit the capacity (Mattson et al.'s stack distance, whole tensors at a time: a tensor that does not
fit in whole never hits, as a streaming LRU scan gets no hits).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from tilesim.arch.config import OPERANDS, ArchConfig, EnergyEntry, MemLevel
from tilesim.compiler.cost import Traffic, dram_traffic
from tilesim.compiler.fusion import KernelSpec
from tilesim.compiler.ir import Graph
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.mapper import search


@dataclass(frozen=True)
class Residency:
    """Which of a kernel's DRAM transfers an on-chip copy replaces: operands A and B of a contraction (attention:
    Q; K and V), bytes of other inputs (residuals, vector inputs), and its output's store."""
    a: bool = False
    b: bool = False
    extra_bytes: int = 0
    out: bool = False
    from_cache: bool = False     # the replaced reads are hits in a hardware cache (still counted as its reads)


NONE = Residency()


def resident_budget(arch: ArchConfig) -> int:
    """Bytes the activation level reserves for kept tensors (once per core unless the level is shared)."""
    level = arch.home("input")
    return level.resident_bytes * (1 if level.shared else arch.cores)


def keep_on_chip(specs: list[KernelSpec], graph: Graph, arch: ArchConfig,
                 alias: dict[str, str] | None = None) -> tuple[list[Residency], list[int]]:
    """For each kernel, which reads and which output stay on chip, and the bytes kept on chip while it runs (its
    tiles get the rest of the level). `alias` (Grouping.alias): view outputs -> their source; a kernel whose output
    a graph output is a view of (an LLM's KV cache entries) writes it to DRAM."""
    budget = resident_budget(arch)
    if budget == 0:
        return [NONE] * len(specs), [0] * len(specs)
    size = {name: t.nbytes for name, t in graph.tensors.items()}
    remaining: dict[str, int] = {}
    for k in specs:
        for t in {t for t, _ in k.reads}:
            remaining[t] = remaining.get(t, 0) + 1
    outputs = {_canon(t, alias or {}) for t in graph.outputs}
    live: dict[str, int] = {}
    plan, held = [], []
    for k in specs:
        by_role: dict[str, list[str]] = {}
        for t, role in k.reads:
            by_role.setdefault(role, []).append(t)
        a = bool(by_role.get("a")) and all(t in live for t in by_role["a"])
        b = bool(by_role.get("b")) and all(t in live for t in by_role["b"])
        extra = sum(size[t] for t in by_role.get("extra", []) if t in live)
        # the output is written while this kernel's inputs are still on chip: it must fit beside them
        out = (k.output not in outputs and remaining.get(k.output, 0) > 0
               and sum(live.values()) + size[k.output] <= budget)
        if out:
            live[k.output] = size[k.output]
        held.append(sum(live.values()))
        for t in {t for t, _ in k.reads}:
            remaining[t] -= 1
            if remaining[t] == 0:
                live.pop(t, None)
        plan.append(Residency(a, b, extra, out))
    return plan, held


def _canon(t: str, alias: dict[str, str]) -> str:
    """The tensor `t` is a view of (itself when it is not one)."""
    while t in alias:
        t = alias[t]
    return t


def cache_hits(specs: list[KernelSpec], graph: Graph, arch: ArchConfig) -> list[Residency]:
    """For each kernel, which reads hit in the arch's hardware cache (LRU stack distance over whole tensors); the
    output is always stored (write-back). All misses when the arch has no cache level."""
    cache = arch.cache
    if cache is None:
        return [NONE] * len(specs)
    size = {name: t.nbytes for name, t in graph.tensors.items()}
    kind = {name: "weight" if t.is_param else "input" for name, t in graph.tensors.items()}
    recent: dict[str, int] = {}          # tensors by last use, oldest first (dicts keep insertion order)

    def hit(t: str) -> bool:
        if t not in recent or kind[t] not in cache.holds:
            return False
        order = list(recent)
        return size[t] + sum(recent[u] for u in order[order.index(t) + 1:]) <= cache.capacity_bytes

    def touch(t: str) -> None:
        recent.pop(t, None)
        recent[t] = size[t]

    plan = []
    for k in specs:
        by_role: dict[str, list[str]] = {}
        for t, role in k.reads:
            by_role.setdefault(role, []).append(t)
        a = bool(by_role.get("a")) and all(hit(t) for t in by_role["a"])
        b = bool(by_role.get("b")) and all(hit(t) for t in by_role["b"])
        extra = sum(size[t] for t in by_role.get("extra", []) if hit(t))
        for t, _ in k.reads:
            touch(t)
        touch(k.output)
        plan.append(Residency(a, b, extra, False, True) if (a or b or extra) else NONE)
    return plan


def cache_traffic(work: Contraction, arch: ArchConfig, timing: str) -> Traffic | None:
    """DRAM traffic of a whole contraction behind the arch's cache: the tiling of the unsplit contraction with the
    cache as its one buffer (tiles double-buffered in its capacity) that moves the fewest DRAM bytes (then the fewest
    tiles), as if the cache's contents were chosen by the kernel's tile order (a GPU rasterizes its thread blocks
    for this). The cores' own tilings then decide only the traffic between the cache and them. None without a
    cache. It depends on the loop nest, the array, the cache and the channel's burst, not on the clock, the
    channel's speed or the energy table: a power cap's slower clocks (sim/core/power.py) and points of a sweep
    that differ in those share it (the search runs on a channel of one byte a cycle and one pJ a byte, where its
    energy objective is the DRAM bytes)."""
    cache = arch.cache
    if cache is None:
        return None
    key = _traffic_key(work, arch, timing)
    if key not in _CACHE_TRAFFIC:
        off = _bytes_channel(arch)
        level = replace(cache, kind="sram", shared=False, holds=OPERANDS, resident_fraction=0.0,
                        double_buffered=True)
        per_byte = EnergyEntry(1.0, "the cache's tiling counts DRAM bytes")
        energy = replace(arch.energy, actions={**arch.energy.actions, f"{off.name}.read_byte": per_byte,
                                               f"{off.name}.write_byte": per_byte})
        bytes_only = replace(arch, cores=1, memory=(off, level), energy=energy)
        mapping = search(work, bytes_only, timing, "energy").mapping
        _CACHE_TRAFFIC[key] = dram_traffic(work, mapping, arch.array.acc_dtype, arch.offchip.burst_bytes)
    return _CACHE_TRAFFIC[key]


def remember_cache_traffic(work: Contraction, arch: ArchConfig, timing: str, traffic: Traffic) -> None:
    """Take `traffic` as cache_traffic's answer for these arguments (one worked out in another process and kept
    with a stored schedule: sim/core/commands.py remember_commands)."""
    _CACHE_TRAFFIC.setdefault(_traffic_key(work, arch, timing), traffic)


def _traffic_key(work: Contraction, arch: ArchConfig, timing: str) -> tuple[object, ...]:
    """cache_traffic's memory key: what its answer depends on (the off-chip level with speed and latency left out)."""
    return (work, arch.array, arch.cache, _bytes_channel(arch), timing)


def _bytes_channel(arch: ArchConfig) -> MemLevel:
    """The arch's off-chip level at one byte a cycle and no latency (what cache_traffic's search runs on)."""
    return replace(arch.offchip, bandwidth_bytes_per_cycle=1.0, latency_cycles=0)


_CACHE_TRAFFIC: dict[tuple[object, ...], Traffic] = {}
