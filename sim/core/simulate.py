"""simulate(schedule, arch) -> SimResult: build tile commands, run the pipeline kernel, fold counts into energy."""
from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import cached_property
from math import ceil

import numpy as np

from tilesim.arch.area_model import area_mm2
from tilesim.arch.config import ArchConfig, MemLevel
from tilesim.arch.errors import InputError
from tilesim.compiler.attention import AttentionWork
from tilesim.compiler.cost import Mapping, array_cycles, mapping_efficiency, spatial_dims, spatial_tiles
from tilesim.compiler.lowering import MAX_COUNT, Contraction, VectorWork
from tilesim.compiler.mapper import search_with
from tilesim.compiler.memo import drop_oldest
from tilesim.compiler.schedule import Kernel, Schedule
from tilesim.core.commands import (
    ARRAY,
    GRID_STEPS,
    VECTOR,
    Program,
    TileCommands,
    access_latency,
    build_program,
    command_key,
    contraction_run_count,
    kernel_groups,
    memo_commands,
    repeat_groups,
)
from tilesim.core.commands import flash_share as flash_share_of
from tilesim.core.energy import (
    action_counts,
    by_component,
    clock_counts,
    dynamic_energy_pj,
    share_feeds,
    static_energy_pj,
    static_power_components_mw,
)
from tilesim.core.kernels.estimate import estimate_rows
from tilesim.core.kernels.jit import interpreted, is_compiled
from tilesim.core.kernels.pipeline import (
    CAUSES,
    fold_tiles,
    run_program,
    run_program_py,
    run_tiles,
    run_tiles_py,
)
from tilesim.core.kernels.rankings import first_fitting, rank_rows
from tilesim.core.power import capped_run
from tilesim.core.result import KernelResult, SimResult, Timeline

MAX_KERNEL_COUNT = 2**61     # a fused kernel's summed vector ops and extra bytes (each op's are < 2**60)
# A tile program's memory at the peak of a run (its search's kept commands and pipelines included): ~380 bytes an
# entry stored (repeated kernels share theirs) and ~40 bytes a run of every kernel. Measured: llama3-8b prefill
# 64 x 4096 on h100, 36 k stored of 4.06 M runs, 267 MB; resnet50 at batch 8,000 on edge-npu, 1.65 M of 4.28 M,
# 1.09 GB. Programs over MAX_PROGRAM_BYTES are refused, so a run stays within 1 GB (issue 21).
STORED_ENTRY_BYTES = 380
RUN_BYTES = 40
MAX_PROGRAM_BYTES = 500_000_000
# Small programs are simulated in Python until numba is worth loading (a ski-rental rule: Python time up to what the
# load costs, so a process never spends more than twice the better choice): loading the compiled kernels from
# numba's cache takes ~0.28 s (import included); a run costs ~10-50 us interpreted. A ResNet-50 CLI run spends
# ~0.1 s on its 1,354 runs and stays in Python; an LLM prefill's kernels, ~0.5 s before, switch after 0.25 s. A
# program of more than INTERPRETED_RUNS runs always loads numba.
INTERPRETED_S = 0.25
INTERPRETED_RUNS = 10_000
# Compiled, repeated patterns of runs are looked for in programs of GROUP_SEARCH_RUNS runs or more: below, the search
# (~0.1 ms in Python) costs more than simulating every run (~50 ns each); the end is the same either way, bit for bit
# (tests/test_tile_classes.py). Most programs a mapping search simulates are one kernel of tens of runs.
GROUP_SEARCH_RUNS = 2048
_interpreted = [0.0]         # seconds spent simulating in Python so far in this process


def use_compiled_kernels() -> None:
    """From now on simulate every program with numba's compiled kernels (loaded from its on-disk cache, else
    compiled, at the next simulation), small ones too: what a process about to simulate much does first (a sweep,
    before it forks its workers, which inherit them; a benchmark of warm runs), and let the mapping search score
    and rank its candidates with compiled kernels (their numpy forms' results exactly)."""
    _interpreted[0] = INTERPRETED_S                  # the budget for Python is spent from here on
    search_with(estimate_rows, rank_rows, first_fitting)


def _check_size(schedule: Schedule, arch: ArchConfig, timeline: bool = False) -> None:
    """Refuse schedules whose tile program (runs of identical tiles; one entry per tile for a timeline or a flash
    level, and per lockstep step for attention and vector work) would take more than MAX_PROGRAM_BYTES, or fused
    kernels whose summed ops or bytes could overflow the 64-bit per-tile counters."""
    total = tiles = stored = 0
    seen: set = set()                       # the commands build_program makes once
    for k in schedule.kernels:
        sums = ((k.work.ops, "vector ops"), (k.work.read_bytes + k.work.write_bytes, "bytes read and written")) \
            if isinstance(k.work, VectorWork) else ()
        if k.epilogue is not None:
            sums += ((k.epilogue.ops, "fused vector ops"), (k.epilogue.read_bytes, "fused bytes read"))
        for value, what in sums:
            if value >= MAX_KERNEL_COUNT:
                raise InputError(f"kernel '{k.name}': {value:.3g} {what} exceed the 64-bit counters tilesim uses "
                                 "(< 2**61 per kernel); use smaller sizes or --fusion none")
        count = k.tile_count(arch.cores)
        tiles += count
        by_class = isinstance(k.work, Contraction) and arch.flash is None
        if isinstance(k.work, AttentionWork | VectorWork):    # lockstep steps of the cores, built in chunks (a
            total += -(-count // min(arch.cores, count))       # memo of ATTENTION_MEMO_ENTRIES keeps them)
            continue
        entries = count if timeline or not by_class else sum(    # + cuts of split_runs and the first tile
            contraction_run_count(share, k) + 4 for share, _ in k.shares(arch.cores))
        total += entries
        key = (k.work, k.mapping, k.split, k.epilogue, k.residency)
        stored += entries if timeline or not by_class or key not in seen else 0
        seen.add(key)
    need = stored * STORED_ENTRY_BYTES + total * RUN_BYTES
    if need > MAX_PROGRAM_BYTES:
        what = "tiles (kept one by one for the timeline)" if timeline else "runs of identical tiles"
        raise InputError(f"workload {schedule.workload}: {tiles:,} tiles in {total:,} {what} ({stored:,} stored) "
                         f"would take ~{need / 1e6:,.0f} MB, more than the simulator's limit of "
                         f"{MAX_PROGRAM_BYTES / 1e6:,.0f} MB; use larger buffers or a smaller workload"
                         + (", or leave out the timeline (--trace)" if timeline else ""))


def _overflow_message(schedule: Schedule, arch: ArchConfig, prog, ends: np.ndarray) -> str:
    """Why a run's cycle count left the 64-bit range: the kernel where it did (`ends`: each kernel's end), and the
    arch field that stretched it most (off-chip or flash bandwidth, their latency, or the engines' compute)."""
    kernel = schedule.kernels[int(np.argmax(~(np.isfinite(ends) & (ends < MAX_COUNT))))].name
    tiles = int(prog.first_tile[-1])
    causes = [(prog.total(prog.compute), "array, vector", "the engines compute for {:.3g} cycles",
               "use a larger arch")]
    for level, xfer in ((arch.offchip, prog.total(prog.load_xfer) + prog.total(prog.store_xfer)),
                        (arch.flash, prog.total(prog.flash_xfer) if arch.flash else 0.0)):
        if level is None:
            continue
        causes.append((float(xfer), f"memory.{level.name}.bandwidth_bytes_per_cycle",
                       f"at {level.bandwidth_bytes_per_cycle:.3g} bytes/cycle its transfers take {{:.3g}} cycles",
                       "raise it"))
        causes.append((float(level.latency_cycles) * 2 * tiles, f"memory.{level.name}.latency_cycles",
                       f"{level.latency_cycles} cycles per transfer add up to {{:.3g}} cycles", "lower it"))
    value, field, why, fix = max(causes, key=lambda c: c[0])
    return (f"{field}: {why.format(value)}, past tilesim's 64-bit cycle counters (< 2**62) at kernel '{kernel}'; "
            f"{fix} or use a smaller workload")


def simulate(schedule: Schedule, arch: ArchConfig, reference: bool = False, timeline: bool = False,
             flash_share: float | None = None, memo: dict | None = None) -> SimResult:
    """Run a schedule on an arch; `reference=True` uses the slow Python pipeline (for tests); `timeline=True`
    keeps every tile's event times on the result (for traces and timeline plots); `flash_share`: the share of every
    weight read from flash under a flash level's `weights: overflow` (None: the schedule's weights beyond the DRAM
    capacity; sim/llm.py gives it from the model's sizes and the KV cache); `memo` as for build_program. A run whose
    average power exceeds the arch's power.cap_w runs at the clock that meets it (sim/core/power.py); the runs at
    other clocks share the tile commands (they do not depend on the clock, off-chip bandwidth, latency or energies,
    but for a cache's traffic, which build_program's key holds)."""
    made = commands_memo(arch, schedule.timing) if memo is None else memo
    top = simulate_at_clock(schedule, arch, reference, timeline, flash_share, made)

    def trial(slower: ArchConfig) -> _Trial:
        piped = _pipeline(schedule, slower, reference, flash_share, made, timeline)
        return _Trial(slower, piped, _energy(schedule, slower, piped)[0])
    return capped_run(top, arch, trial, lambda t: simulate_at_clock(schedule, t.arch, reference, timeline,
                                                                    flash_share, made, t.piped))


@dataclass(frozen=True)
class _Trial:
    """A run at a clock the power cap tries: what _pipeline gave and the run's average power (W), as
    simulate_at_clock would report it (the chosen one becomes a SimResult from its `piped`)."""
    arch: ArchConfig
    piped: tuple
    power_w: float


_COMMANDS: dict[tuple[str, str], dict] = {}       # build_program memos of the archs simulated last in this process
COMMANDS_ARCHS = 4          # archs kept


def commands_memo(arch: ArchConfig, timing: str) -> dict:
    """build_program's tile commands kept in this process for one arch (its whole description the key: the
    commands are those a fresh build makes) and timing, for the COMMANDS_ARCHS archs used last: a second run of a
    workload, or the run after its mapping search, builds nothing again."""
    key = (timing, repr(arch))
    memo = _COMMANDS.pop(key, None)
    if memo is None:                                      # (build_program keeps it within MEMO_ENTRIES)
        memo = {}
        while len(_COMMANDS) >= COMMANDS_ARCHS:
            del _COMMANDS[next(iter(_COMMANDS))]          # the least recently used arch
    _COMMANDS[key] = memo
    return memo


def simulate_at_clock(schedule: Schedule, arch: ArchConfig, reference: bool = False, timeline: bool = False,
                      flash_share: float | None = None, memo: dict | None = None, piped: tuple | None = None
                      ) -> SimResult:
    """simulate at the arch's own clock, whatever its power (arguments as for simulate; `piped`: what _pipeline
    gave for these arguments, when the caller has it)."""
    counted: dict = {}              # kernel_counts, shared by the level needs and the energy (kernel_counts' key)
    piped = _pipeline(schedule, arch, reference, flash_share, memo, timeline, counted) if piped is None else piped
    prog, waits, kernel_end, times = piped
    flash = arch.flash
    spans = np.diff(kernel_end, prepend=0)
    total_cycles = int(kernel_end[-1])

    peak = arch.peak_macs_per_cycle
    static_mw = static_power_components_mw(arch)       # breakdown key (static, static.<component>) -> mW
    kernels = []
    dram_read = dram_write = 0
    dma_per_run = (prog.load_xfer + prog.store_xfer) * prog.count
    _, energy_breakdown, actions, per_kernel = _energy(schedule, arch, piped, static_mw, counted)
    for j, (kernel, cmds) in enumerate(zip(schedule.kernels, prog.per_kernel, strict=False)):
        counts, comp = per_kernel[j]
        kr = _kernel_result(kernel, cmds, arch, int(spans[j]), float(dma_per_run[prog.entries(j)].sum()),
                            sum(comp.values()), peak, schedule.timing,
                            {c: round(w) for c, w in zip(CAUSES[1:], waits[j, 1:], strict=False)},
                            level_cycles(counts, arch, kernel) if schedule.timing != "scalesim" else {})
        dram_read += kr.dram_read_bytes
        dram_write += kr.dram_write_bytes
        kernels.append(replace(kr, clock_hz=arch.clock_hz))

    macs = sum(k.macs for k in kernels)
    area = area_mm2(arch)
    bw = arch.offchip.bandwidth_bytes_per_cycle
    return SimResult(
        workload=schedule.workload, arch=arch.name, timing=schedule.timing, clock_hz=arch.clock_hz,
        cycles=total_cycles, latency_s=total_cycles / arch.clock_hz, macs=macs,
        pe_utilization=macs / (total_cycles * peak) if total_cycles else 0.0,
        mbu=(dram_read + dram_write) / (total_cycles * bw) if total_cycles else 0.0,
        energy_pj=float(sum(energy_breakdown.values())), energy_breakdown_pj=energy_breakdown,
        dram_read_bytes=dram_read, dram_write_bytes=dram_write, peak_macs_per_cycle=peak,
        offchip_bytes_per_cycle=bw, kernels=tuple(kernels), top_clock_hz=arch.clock_hz,
        tdp_w=arch.power.tdp_w if arch.power else 0.0, power_cap_w=arch.power.cap_w if arch.power else 0.0,
        area_mm2=float(sum(area.values())), area_breakdown_mm2=area, static_power_mw=static_mw,
        engine_busy=_engine_busy(prog, total_cycles, flash is not None),
        flash_read_bytes=int(sum(k.flash_read_bytes for k in kernels)),
        flash_bytes_per_cycle=flash.bandwidth_bytes_per_cycle if flash else 0.0,
        memory_traffic=_memory_traffic(actions, arch, total_cycles),
        timeline=Timeline(prog.first_tile, times[0].engine, times[0].load_xfer, times[0].store_xfer, *times[1][:4],
                          float(arch.offchip.latency_cycles),
                          tuple(k.name for k in schedule.kernels)) if timeline else None)


def _energy(schedule: Schedule, arch: ArchConfig, piped: tuple, static_mw: dict[str, float] | None = None,
            counted: dict | None = None
            ) -> tuple[float, dict[str, float], Counter, list[tuple[Counter, dict[str, float]]]]:
    """A run's energy from what _pipeline gave: its average power (W: energy / latency, as SimResult.power_w), its
    energy by component (pJ, in name order), its action counts, and each kernel's (action counts, energy by
    component). `counted`: kernel_counts' memo, as _pipeline filled it."""
    prog, _, kernel_end, _ = piped
    spans = np.diff(kernel_end, prepend=0)
    static_mw = static_power_components_mw(arch) if static_mw is None else static_mw
    breakdown, actions, per_kernel = Counter(), Counter(), []
    counted = {} if counted is None else counted    # kernel_counts of each distinct kernel (repeated layers once)
    for j, (kernel, cmds) in enumerate(zip(schedule.kernels, prog.per_kernel, strict=False)):
        counts = kernel_counts(kernel, cmds, arch, counted) + clock_counts(int(spans[j]), arch)
        actions.update(counts)
        comp = kernel_energy_pj(kernel.name, counts, int(spans[j]), arch, static_mw)
        breakdown.update(comp)
        per_kernel.append((counts, comp))
    energy_breakdown = {k: float(v) for k, v in sorted(breakdown.items())}
    latency_s = int(kernel_end[-1]) / arch.clock_hz
    power_w = float(sum(energy_breakdown.values())) * 1e-12 / latency_s if latency_s else 0.0
    return power_w, energy_breakdown, actions, per_kernel


def _pipeline(schedule: Schedule, arch: ArchConfig, reference: bool = False, flash_share: float | None = None,
              memo: dict | None = None, timeline: bool = False, counted: dict | None = None):
    """The part of simulate that decides time: the tile program, the stall cycles per kernel and cause, each
    kernel's end cycle (int64; the last is the schedule's cycles) and, for a timeline, (the program one entry per
    tile, its tiles' event times). Runs of identical tiles are simulated by class (run_classes); a timeline, and a
    program with flash reads (whose staging limit reaches back further than a run's state), tile by tile.
    `memo`: build_program's tile commands kept across calls; `counted`: kernel_counts' memo, filled by the level
    needs (for the energy that follows: a kernel whose compute the level bound stretches has new commands)."""
    prog, needs = _bound_program(schedule, arch, flash_share, memo, timeline, counted)
    while True:
        ends, waits, times = _run_program(prog, schedule, arch, reference, timeline)
        if not (np.isfinite(ends).all() and ends.max() < MAX_COUNT):    # checked before the cast, which would wrap
            raise InputError(_overflow_message(schedule, arch, prog, ends))
        kernel_end = np.ceil(np.maximum.accumulate(ends)).astype(np.int64)
        waiting = level_waits(prog, kernel_end, needs)
        if waiting is prog.dep:
            return prog, waits, kernel_end, times
        prog = replace(prog, dep=waiting)


def _bound_program(schedule: Schedule, arch: ArchConfig, flash_share: float | None, memo: dict | None,
                   timeline: bool = False, counted: dict | None = None) -> tuple[Program, np.ndarray]:
    """The tile program _pipeline runs (on the time grid, each kernel stretched to its busiest level's need) and
    those needs (level_needs)."""
    if schedule.arch != arch.name:
        raise InputError(f"schedule was lowered for arch '{schedule.arch}', not '{arch.name}'")
    _check_size(schedule, arch, timeline)
    prog = on_grid(build_program(schedule, arch, flash_share, memo))
    needs = level_needs(prog, schedule, arch, counted)
    return level_bound(prog, schedule, arch, needs), needs


def _timed(schedule: Schedule, arch: ArchConfig, cycles: int, flash_share: float | None, memo: dict | None,
           counted: dict | None = None):
    """What _pipeline gives for a one-kernel schedule whose cycles are known, without running it: its program,
    no stall causes (they only fill the kernel's stall fields) and its end. simulate_at_clock's energy and DRAM
    bytes read only the program's commands and the span, so they come out the same, bit for bit. `counted` as for
    _pipeline."""
    prog, _ = _bound_program(schedule, arch, flash_share, memo, counted=counted)
    return prog, np.zeros((1, len(CAUSES))), np.array([cycles], dtype=np.int64), None


def _run_program(prog: Program, schedule: Schedule, arch: ArchConfig, reference: bool, timeline: bool):
    """(each kernel's end, stall cycles per kernel and cause, the timeline's (tiles, event times) or None) of a
    tile program: by class of identical tiles, or tile by tile for a timeline or flash reads."""
    flash = arch.flash
    n_kernels = len(schedule.kernels)
    times = None
    if timeline or prog.flash_xfer.any():
        tiles = prog.tiles()
        run = run_tiles_py if reference else run_tiles
        if not reference:
            _loading_numba()
        times = (tiles, run(tiles.load_xfer, tiles.store_xfer, tiles.compute, tiles.engine, tiles.slots, tiles.dep,
                            float(arch.offchip.latency_cycles), tiles.flash_xfer, tiles.flash_gate,
                            float(flash.latency_cycles if flash else 0)))
        ends, waits, _ = fold_tiles(times[1], tiles.kernel, n_kernels)
    else:
        run = run_program_py if reference else run_program
        # a few small programs cost less in Python than loading numba (start-up of a CLI run); the same code
        entries = int(prog.first_run[-1])
        small = not (reference or is_compiled(run_program)) and entries <= INTERPRETED_RUNS \
            and _interpreted[0] < INTERPRETED_S
        # repeated patterns of runs, simulated a few repeats each: worth looking for in a large program, or where
        # runs are simulated in Python
        look = entries >= GROUP_SEARCH_RUNS or small or reference
        if not (small or reference):
            _loading_numba()
        groups = repeat_groups(prog) if look else np.zeros((0, 3), dtype=np.int64)
        start_s = time.perf_counter()
        with interpreted() if small else nullcontext():
            ends, waits, _ = run(prog.count, prog.load_xfer, prog.store_xfer, prog.compute, prog.block_run[prog.block],
                                 np.diff(prog.first_run), prog.engine, prog.slots, prog.dep,
                                 float(arch.offchip.latency_cycles), groups[:, 0].copy(), groups[:, 1].copy(),
                                 groups[:, 2].copy(), kernel_groups(prog))
        _interpreted[0] += time.perf_counter() - start_s if small else 0.0
    return ends, waits, times


def _loading_numba() -> None:
    """A program is about to run compiled: where numba's kernels load for it (the first in this process), the
    mapping search scores, ranks and picks with them from here on too (use_compiled_kernels: its numpy forms'
    results exactly), as numba's start-up is paid either way. ResNet-18 on an 8x8 array from the CLI, whose
    programs load numba early: its search's numpy scores were ~0.25 s of 1.4 s."""
    if not is_compiled(run_program):
        use_compiled_kernels()


TIME_GRID = 1 / GRID_STEPS  # cycles: transfer times are multiples of it (dyadic, so sums are exact)


def on_grid(prog: Program) -> Program:
    """The program with transfer times rounded to the nearest TIME_GRID cycles: bytes over a bandwidth such as
    48.57 bytes/cycle are not binary fractions, and their sums round differently in every period, so the
    pipeline's state never repeats exactly; on a grid of 1/1024 cycle every sum below 2**43 cycles is exact and
    repeated runs and groups are jumped (run_class_groups) bit for bit. Compute times are whole cycles already, and
    level_bound rounds its stretched ones up onto the grid too.
    Rounded up, by less than 1/1024 cycle: a transfer never takes less than its bytes over the bandwidth, so a run
    never beats the off-chip bound (rounding to the nearest left 7,880,209 cycles against a bound of 7,880,210.3,
    issue 21); a time above zero stays at least one step."""
    q = lambda a: np.where(a > 0, np.ceil(a / TIME_GRID) * TIME_GRID, 0.0)     # noqa: E731
    return replace(prog, load_xfer=q(prog.load_xfer), store_xfer=q(prog.store_xfer), flash_xfer=q(prog.flash_xfer))


def _grid_up(cycles: np.ndarray) -> np.ndarray:
    """Times rounded up to the next multiple of TIME_GRID (exact ones kept)."""
    return np.ceil(cycles * GRID_STEPS) / GRID_STEPS


def kernel_energy_pj(name: str, counts: Counter, span_cycles: int, arch: ArchConfig,
                     static_mw: dict[str, float]) -> dict[str, float]:
    """A kernel's energy by component (pJ): its actions (`counts`, clock cycles included) at the arch's table,
    folded by component, and each static component (`static_mw`: static_power_components_mw) over its span."""
    comp = by_component(dynamic_energy_pj(counts, arch, f"kernel '{name}'"))
    for key, mw in static_mw.items():
        static = static_energy_pj(arch, span_cycles, mw)
        if static:
            comp[key] = static
    return comp


def kernel_counts(kernel: Kernel, cmds: TileCommands, arch: ArchConfig, memo: dict) -> Counter:
    """action_counts and the flash actions of a kernel, remembered in `memo` (kept by the caller for one program)
    per the commands and the kernel fields they read (not its name or dependencies)."""
    key = (id(cmds), kernel.work, kernel.mapping, kernel.split, kernel.epilogue, kernel.residency)
    if key not in memo:
        memo[key] = (cmds, action_counts(kernel, cmds, arch) + _flash_counts(cmds, arch))    # cmds: keeps its id
    return memo[key][1]


def level_bytes_cycles(kernel: Kernel, cmds: TileCommands, arch: ArchConfig) -> dict[str, float]:
    """Cycles each on-chip level needs for every byte a kernel moves through it (fills from off-chip, feeds to and
    drains from the engines, stores: energy.action_counts) at its bandwidth, a per-core level once per core the
    kernel runs on (cores_in_use)."""
    return level_cycles(action_counts(kernel, cmds, arch), arch, kernel)


def level_cycles(counts: Counter, arch: ArchConfig, kernel: Kernel | None = None) -> dict[str, float]:
    """level_bytes_cycles from a kernel's energy actions (its on-chip read_byte and write_byte counts); without
    `kernel`, every core's copy of a per-core level counts."""
    used = arch.cores if kernel is None else cores_in_use(kernel, arch)
    levels = (*arch.onchip, arch.cache) if arch.cache is not None else arch.onchip   # a cache's bytes take time too
    return {lv.name: (counts[f"{lv.name}.read_byte"] + counts[f"{lv.name}.write_byte"])
            / (lv.bandwidth_bytes_per_cycle * level_copies(lv, arch, used)) for lv in levels}


def level_copies(level: MemLevel, arch: ArchConfig, cores: int | None = None) -> int:
    """Copies of a memory level: a per-core on-chip level (not `shared`) has one per core (of `cores` in use;
    default: all), others one."""
    return (arch.cores if cores is None else cores) if level.kind == "sram" and not level.shared else 1


def cores_in_use(kernel: Kernel, arch: ArchConfig) -> int:
    """Cores a kernel's tiles run on: a split contraction's blocks (one core each), an unsplit one on one core;
    vector and attention tiles on min(cores, tiles) cores in lockstep (core.commands.lockstep)."""
    if isinstance(kernel.work, Contraction):
        return sum(n for _, n in kernel.shares(arch.cores)) if kernel.split else 1
    return max(1, min(arch.cores, kernel.tile_count(arch.cores)))


def level_needs(prog: Program, schedule: Schedule, arch: ArchConfig, counted: dict | None = None) -> np.ndarray:
    """Per kernel, the cycles its busiest on-chip level needs for its bytes (level_bytes_cycles, rounded up); zeros
    under the scalesim timing, which keeps SCALE-Sim's assumption that the buffers always keep up. `counted`:
    kernel_counts' memo."""
    if schedule.timing == "scalesim":
        return np.zeros(len(schedule.kernels), dtype=np.int64)
    counted = {} if counted is None else counted
    return np.array([ceil(max(level_cycles(kernel_counts(k, c, arch, counted), arch, k).values(), default=0.0))
                     for k, c in zip(schedule.kernels, prog.per_kernel, strict=True)], dtype=np.int64)


def level_bound(prog: Program, schedule: Schedule, arch: ArchConfig, needs: np.ndarray | None = None) -> Program:
    """Every kernel made to last at least the time its busiest on-chip level needs for its bytes (`needs`:
    level_needs): when neither its compute nor its off-chip transfers take that long, its compute is stretched to
    it, every tile's in proportion (runs stay runs). level_waits then keeps kernels from overlapping where that
    would leave a kernel less time than its level needs."""
    needs = level_needs(prog, schedule, arch) if needs is None else needs
    per_kernel = list(prog.per_kernel)
    stretched: dict[tuple[int, int], np.ndarray] = {}     # (block, need) -> the block's stretched compute
    for j, cmds in enumerate(prog.per_kernel):
        need, at = int(needs[j]), prog.entries(j)
        count, compute = prog.count[at], prog.compute[at].astype(np.float64)
        total = float((compute * count).sum())
        dma = float(((prog.load_xfer[at] + prog.store_xfer[at]) * count).sum())
        # the first tile's load and the last tile's store cannot overlap any compute, and the level moves their
        # bytes too: the compute is stretched to the need less those, so the span (at least first load + compute
        # + last store) holds the need; stretched to the whole need, a kernel that more off-chip bandwidth made
        # level-bound came out slower than the DMA-bound one it was (issue 21)
        target = need - float(prog.load_xfer[at][0]) - float(prog.store_xfer[at][-1]) if count.shape[0] else 0.0
        if need > dma and target > total:
            # each tile's compute in proportion, rounded up onto the time grid (on_grid): off it, the pipeline's
            # sums round, and a jumped period could end an ulp, so a cycle, from where the tiles one by one end
            scale = target / total if total else 0.0
            even = _grid_up(np.array(target / count.sum())) if not total else None
            stretched[int(prog.block[j]), need] = _grid_up(compute * scale) if total else np.full(count.shape[0],
                                                                                                  even)
            per_kernel[j] = replace(cmds, compute=_grid_up(cmds.compute * scale) if total else
                                    np.full(cmds.compute.shape[0], even))
    if not stretched:
        return prog
    return replace(restretched(prog, needs, stretched), per_kernel=tuple(per_kernel))


def restretched(prog: Program, needs: np.ndarray, stretched: dict[tuple[int, int], np.ndarray]) -> Program:
    """The program with level_bound's stretched compute (per (block, need)): a block whose kernels all take one
    stretch (or all none) changes in place; each other stretch of it gets a copy of the block."""
    compute = prog.compute.astype(np.float64)
    arrays = {f: [getattr(prog, f)] for f in ("count", "load_xfer", "store_xfer", "flash_xfer", "flash_gate")}
    arrays["compute"] = [compute]
    block, block_run = prog.block.copy(), list(prog.block_run.tolist())
    first: dict[int, int] = {}                      # block -> the need its entries took (0: none)
    copies: dict[tuple[int, int], int] = {}
    for j in range(block.shape[0]):
        b = int(prog.block[j])
        need = int(needs[j]) if (b, int(needs[j])) in stretched else 0
        if first.setdefault(b, need) == need:
            if need:
                compute[block_run[b]:block_run[b + 1]] = stretched[b, need]
            continue
        if (b, need) not in copies:                 # a stretch (or none) this block's first kernel did not take
            lo, hi = block_run[b], block_run[b + 1]
            for f, parts in arrays.items():
                parts.append(getattr(prog, f)[lo:hi])
            arrays["compute"][-1] = stretched[b, need] if need else prog.compute[lo:hi].astype(np.float64)
            copies[b, need] = len(block_run) - 1
            block_run.append(block_run[-1] + hi - lo)
        block[j] = copies[b, need]
    return replace(prog, block=block, block_run=np.array(block_run, dtype=np.int64),
                   **{f: np.concatenate(parts) if len(parts) > 1 else parts[0] for f, parts in arrays.items()})


def level_waits(prog: Program, kernel_end: np.ndarray, needs: np.ndarray) -> np.ndarray:
    """Program.dep with kernel k made to wait for kernel k - 1's last store wherever k's span (its end minus the
    previous end) came out shorter than its level's need: its tiles overlapped its neighbours' (another engine's
    tiles, prefetched loads), which were using the same level. Waiting, all of k's compute and transfers fall in
    its span, which level_bound made at least the need; so every span holds its kernel's level bytes, and the
    spans adding up to the run's cycles, no level's bandwidth utilization exceeds 1. Returns prog.dep itself when
    nothing more must wait."""
    if needs.shape[0] < 2:                                   # kernel 0's span is its whole run: never short
        return prog.dep
    spans = np.diff(kernel_end, prepend=0)
    short = np.flatnonzero(spans < needs)
    wait = np.full(needs.shape[0], -1, dtype=np.int64)
    wait[short] = short - 1                                  # kernel 0's span is its whole run: never short
    if not (wait > prog.dep).any():
        return prog.dep
    return np.maximum(prog.dep, wait)


def _flash_counts(cmds: TileCommands, arch: ArchConfig) -> Counter:
    """Energy actions of weights streamed from flash: the flash read, and the staging write into DRAM (the DRAM
    read that follows is part of the tile's weight load, counted by action_counts)."""
    moved = cmds.total("flash_bytes")
    if not moved:
        return Counter()
    return Counter({f"{arch.flash.name}.read_byte": moved, f"{arch.offchip.name}.write_byte": moved})


def _engine_busy(prog, cycles: int, flash: bool = False) -> dict[str, float]:
    """Fraction of the run each engine is busy: the array, the vector unit, the off-chip DMA channel (and the flash
    channel when the arch has a flash level)."""
    compute = prog.kernel_totals(prog.compute)
    busy = {"array": float(compute[prog.engine == ARRAY].sum()),
            "vector": float(compute[prog.engine == VECTOR].sum()),
            "dma": prog.total(prog.load_xfer) + prog.total(prog.store_xfer)}
    if flash:
        busy["flash"] = prog.total(prog.flash_xfer)
    return {k: v / cycles if cycles else 0.0 for k, v in busy.items()}


def _memory_traffic(actions: Counter, arch: ArchConfig, cycles: int) -> dict[str, dict]:
    """Per memory level: bytes read and written (off-chip: DRAM traffic; on-chip: fills, array feeds, drains) and
    bandwidth utilization = bytes / (cycles x the level's bandwidth); a per-core on-chip level (not `shared`) has
    one copy per core, so its bandwidth is the per-core figure times the cores."""
    out = {}
    for lv in arch.memory:
        r, w = int(actions[f"{lv.name}.read_byte"]), int(actions[f"{lv.name}.write_byte"])
        util = (r + w) / (cycles * lv.bandwidth_bytes_per_cycle * level_copies(lv, arch)) if cycles else 0.0
        out[lv.name] = {"read_bytes": r, "write_bytes": w, "bandwidth_utilization": util}
    return out


def kernel_evaluator(arch: ArchConfig, timing: str, objective: str = "latency", flash_share: float | None = None,
                     memo: dict | None = None, alone: dict | None = None) -> KernelEvaluator:
    """The objective of one kernel simulated alone (cycles, pJ or their product), for compiler.schedule.lower;
    remembered per (loop nest, mapping, split, epilogue, weights in flash), so repeated layers and policies
    simulate once. `flash_share` as for simulate (weights: overflow). The latency objective runs only the part of
    simulate that decides the cycles (no energy). `memo` as for build_program. `alone`: what each kernel
    simulated alone takes and does (cycles, action counts, DRAM bytes), which the caller may keep across archs
    that differ in nothing but on-chip capacities, area and energy entries (energy.charge_idle_pes aside): none of
    them changes those (a sweep's design points, studies/sweep.py); its energy is priced at each arch's table."""
    return KernelEvaluator(arch, timing, objective, flash_share, memo, alone)


PIPED_KEPT = 8              # kernels' pipeline outputs an evaluator keeps (a shortlist is 5 mappings at most) ...
PIPED_ENTRIES = 1_000_000   # ... holding this many program entries at most (the latest is kept; peak memory)


class KernelEvaluator:
    """A kernel simulated alone, for compiler.schedule.lower: calling it gives the objective; `measure` gives
    (cycles, energy pJ, DRAM bytes) for the latency objective's tie-break; `dram_bytes` the off-chip bytes a kernel
    moves with its residency, as simulate counts them (reads, writes and flash staging), for the fusion guard."""

    def __init__(self, arch: ArchConfig, timing: str, objective: str, flash_share: float | None,
                 memo: dict | None, alone: dict | None = None) -> None:
        self.arch, self.timing, self.objective = arch, timing, objective
        self.memo = commands_memo(arch, timing) if memo is None else memo
        self.alone = {} if alone is None else alone
        self.share = flash_share or 0.0
        self.seen: dict = {}
        self.piped: dict = {}       # (_pipeline output, action counts) of the kernels timed last, for `measure`
        self.measured: dict = {}
        self.moved: dict = {}

    def _alone(self, kernel: Kernel) -> tuple[Schedule, tuple]:
        alone = Kernel(kernel.name, kernel.ops, kernel.work, kernel.mapping, split=kernel.split,
                       epilogue=kernel.epilogue, residency=kernel.residency)
        share = flash_share_of(alone, self.arch, self.share)
        return Schedule(f"{kernel.name} (a tiling the search tries)", self.arch.name, self.timing, (alone,)), (
            kernel.work, kernel.mapping, kernel.split, kernel.epilogue, kernel.residency, share)

    def __call__(self, kernel: Kernel) -> float:
        schedule, key = self._alone(kernel)
        if key not in self.seen:
            if self.objective == "latency":
                counted: dict = {}
                piped = _pipeline(schedule, self.arch, flash_share=self.share, memo=self.memo, counted=counted)
                self.seen[key] = int(piped[2][-1])
                self.keep_piped(key, (piped, counted))
            else:
                cycles, pj, _ = self.measure(kernel)
                self.seen[key] = {"energy": pj, "edp": cycles * pj}[self.objective]
        return self.seen[key]

    def measure(self, kernel: Kernel, cycles: int | None = None) -> tuple[int, float, int]:
        """(cycles, energy pJ, DRAM bytes) of the kernel simulated alone; `cycles`, when the caller knows them
        (a sweep remembers them across design points), or the latency objective's own, spare running the
        pipeline again (_timed)."""
        schedule, key = self._alone(kernel)
        if key not in self.measured:
            if key not in self.alone:
                # the action counts the level needs took (kernel_counts' memo), where the pipeline ran or the
                # program is built: the same commands' counts, not counted twice
                piped, counted = self.piped.pop(key, (None, {}))
                known = cycles if cycles is not None else self.seen.get(key) if self.objective == "latency" else None
                if piped is None and known is not None:
                    piped = _timed(schedule, self.arch, int(known), self.share, self.memo, counted)
                if piped is None:
                    piped = _pipeline(schedule, self.arch, flash_share=self.share, memo=self.memo, counted=counted)
                prog, _, kernel_end, _ = piped
                cmds = prog.per_kernel[0]
                self.alone[key] = (int(kernel_end[-1]), kernel_counts(schedule.kernels[0], cmds, self.arch, counted),
                                   cmds.offchip_bytes())
            span, counts, dram = self.alone[key]
            # as simulate_at_clock totals a one-kernel schedule: its components' energies in name order
            comp = kernel_energy_pj(kernel.name, counts + clock_counts(span, self.arch), span, self.arch,
                                    self.static_mw)
            self.measured[key] = (span, float(sum(v for _, v in sorted(comp.items()))), dram)
        return self.measured[key]

    @cached_property
    def static_mw(self) -> dict[str, float]:
        """static_power_components_mw of the arch, worked out at the first measure (most evaluations are cycles)."""
        return static_power_components_mw(self.arch)

    def keep_piped(self, key: tuple, piped: tuple) -> None:
        """Keep a kernel's (_pipeline output, its action counts by kernel_counts) for a `measure` that follows
        (pick's tie-break measures the tied candidates it has just timed), the PIPED_KEPT latest within
        PIPED_ENTRIES."""
        self.piped[key] = piped
        drop_oldest(self.piped, lambda p: int(p[0][0].load_xfer.shape[0]), PIPED_ENTRIES, PIPED_KEPT)

    def dram_bytes(self, kernel: Kernel) -> int:
        """Off-chip bytes the kernel moves in a schedule, its residency (kept activations, cache hits) applied."""
        key = command_key(kernel, self.arch, self.timing, self.share)
        if key not in self.moved:      # the commands a shortlist's simulation of the kernel alone made, if it did
            cmds = memo_commands(kernel, key, self.arch, self.timing, self.memo, bounded=True)
            self.moved[key] = cmds.offchip_bytes()
        return self.moved[key]


def _kernel_result(kernel: Kernel, cmds: TileCommands, arch: ArchConfig, cycles: int, dma: float,
                   energy: float, peak: int, timing: str, waits: dict[str, int],
                   levels: dict[str, float] | None = None) -> KernelResult:
    """One kernel's result. `levels`: cycles each on-chip level needs for the kernel's bytes (level_bytes_cycles);
    a kernel whose compute time is what its busiest level needs is bound by that level (`bound` is its name)."""
    compute = cmds.total("compute")
    work = kernel.work
    busy = max(cycles, compute)              # span, or engine time when the kernel overlaps its predecessor
    active = max(busy, ceil(dma))            # ... or channel time when its loads were prefetched earlier
    staged = cmds.total("flash_bytes")       # weights from flash, written into DRAM before the tile loads them
    traffic = cmds.offchip_bytes()
    eff, a_r, b_r, c_w, sram_wait = 0.0, 0, 0, 0, 0
    s_tiles = None
    if kernel.on_array:
        df = kernel.mapping.dataflow
        first = kernel.array_parts(arch.cores)[0][0]    # the largest per-core share (attention: QK^T)
        sr, sc, _ = spatial_dims(first, df)
        s_tiles = spatial_tiles(first, kernel.mapping) if isinstance(kernel.mapping, Mapping) else None
        eff = mapping_efficiency(sr, sc, arch.array.rows, arch.array.cols,
                                 s_tiles if timing != "scalesim" else None)
        a_r, b_r, c_w, _ = share_feeds(kernel, arch)
    if isinstance(kernel.mapping, Mapping) and kernel.epilogue is None:
        # compute stretched past the array's own timing because an on-chip level could not feed it
        array_only = array_cycles(first, arch.array, df, timing, kernel.mapping.t_tile, s_tiles)
        sram_wait = max(compute - array_only, 0)
    # memory-bound: more time moving data, or waiting for it (latency), than computing
    waiting = max(dma, cycles - compute)
    busiest = max(levels or {}, key=lambda name: (levels or {})[name], default=None)
    if waiting > compute:
        bound = "memory"
    elif busiest is not None and compute and ceil(levels[busiest]) >= compute - access_latency(kernel, arch):
        bound = busiest                      # the level's bandwidth sets the pace (its utilization is then ~1)
    else:
        bound = "compute" if cmds.engine == ARRAY else "vector"
    return KernelResult(
        name=kernel.name, ops=kernel.ops, engine="array" if cmds.engine == ARRAY else "vector",
        cycles=cycles, compute_cycles=compute, stall_cycles=max(cycles - compute, 0), dma_cycles=ceil(dma),
        macs=work.macs, pe_utilization=work.macs / (busy * peak) if busy else 0.0,
        compute_utilization=work.macs / (compute * peak) if compute else 0.0, mapping_efficiency=eff,
        bound=bound, dram_read_bytes=cmds.total("load_bytes"), dram_write_bytes=cmds.total("store_bytes") + staged,
        energy_pj=float(energy), tiles=cmds.tiles, mapping=kernel.describe(),
        sram_input_reads=a_r, sram_weight_reads=b_r, sram_output_writes=c_w,
        dram_input_read_bytes=cmds.total("input_bytes"), dram_weight_read_bytes=cmds.total("weight_bytes"),
        dram_output_write_bytes=cmds.total("store_bytes"),
        stall_dram_cycles=waits["dram"], stall_dependency_cycles=waits["dependency"],
        stall_slot_cycles=waits["slot"], stall_order_cycles=waits["order"], sram_wait_cycles=int(sram_wait),
        flash_read_bytes=staged, stall_flash_cycles=waits["flash"],
        arithmetic_intensity=work.macs / traffic if traffic else 0.0,
        attained_macs_per_cycle=work.macs / active if active else 0.0)
