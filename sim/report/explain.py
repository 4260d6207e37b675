"""`--show-schedule`: each contraction's mapping, its DRAM traffic per operand, and why it beat the runner-up."""
from __future__ import annotations

from tilesim.arch.config import ArchConfig
from tilesim.compiler import mapper
from tilesim.compiler.schedule import Schedule
from tilesim.core.result import SimResult
from tilesim.report.format import byte_size, mib


def schedule_table(schedule: Schedule, result: SimResult, arch: ArchConfig, objective: str = "latency") -> str:
    """One line per kernel: mapping and simulated traffic per operand; for searched contractions, the closed-form
    estimate of the chosen mapping against the runner-up's."""
    # columns as wide as their longest entry: a mapping is never cut short
    nw = max([len("kernel")] + [len(k.name) for k in schedule.kernels])
    mw = max([len("mapping")] + [len(k.mapping) for k in result.kernels])
    lines = [f"schedule: {len(schedule.kernels)} kernels, {schedule.timing} timing, objective {objective}",
             f"{'kernel':<{nw}} {'mapping':<{mw}} {'in MiB':>7} {'wt MiB':>7} {'out MiB':>7}  why it won (estimates)"]
    for kernel, kr in zip(schedule.kernels, result.kernels, strict=False):
        why = ""
        if kernel.chosen_by in ("pinned", "naive", "attention"):
            why = {"pinned": "pinned by --mapping", "naive": "naive: first tiling that fits",
                   "attention": "fused attention: largest blocks that fit, fewest K/V passes"}[kernel.chosen_by]
        elif kernel.on_array:
            choice = mapper.search(kernel.shares(arch.cores)[0][0], arch.per_core(), schedule.timing, objective,
                                   name=kernel.name)
            if choice.runner_up is None:
                why = "only legal mapping"
            elif kernel.mapping == choice.mapping:
                r = choice.runner_up
                why = (f"est {choice.cycles:,.0f} cyc {byte_size(choice.dram_bytes)}; next m={r.tile_m} "
                       f"n={r.tile_n} k={r.tile_k} {r.order} {choice.runner_up_cycles:,.0f} cyc "
                       f"{byte_size(choice.runner_up_dram_bytes)}")
            else:
                why = f"simulated faster than the closed-form best (est {choice.cycles:,.0f} cyc)"
        lines.append(f"{kernel.name:<{nw}} {kr.mapping:<{mw}} {mib(kr.dram_input_read_bytes):>7} "
                     f"{mib(kr.dram_weight_read_bytes):>7} {mib(kr.dram_output_write_bytes):>7}  {why}".rstrip())
    if schedule.notes:
        lines += ["", f"fusion ({schedule.fusion}): what was fused, and why the rest was not"]
        lines += [f"  {note}" for note in schedule.notes]
    return "\n".join(lines) + "\n"
