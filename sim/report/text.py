"""Render a SimResult as a terminal table, JSON (docs/design.md section 8) or CSV; all carry the same numbers."""
from __future__ import annotations

import csv
import io
import json
import math
import textwrap

from tilesim.arch.errors import InputError
from tilesim.core.result import SimResult
from tilesim.report.format import area, byte_size, joules, pj, seconds, si, sig, watts

KERNEL_COLUMNS = ("name", "engine", "bound", "cycles", "compute_cycles", "stall_cycles", "macs", "pe_utilization",
                  "mapping_efficiency", "dram_read_bytes", "dram_write_bytes", "energy_pj", "tiles", "mapping",
                  "compute_utilization", "sram_input_reads", "sram_weight_reads", "sram_output_writes",
                  "dram_input_read_bytes", "dram_weight_read_bytes", "dram_output_write_bytes",
                  "stall_dram_cycles", "stall_dependency_cycles", "stall_slot_cycles", "stall_order_cycles",
                  "sram_wait_cycles", "arithmetic_intensity", "attained_macs_per_cycle", "flash_read_bytes",
                  "stall_flash_cycles", "clock_hz", "power_w")
# columns whose '(total)' row is the sum over kernels (the others are the run's own totals, or blank)
SUMMED_COLUMNS = ("compute_cycles", "stall_cycles", "tiles", "sram_input_reads", "sram_weight_reads",
                  "sram_output_writes", "dram_input_read_bytes", "dram_weight_read_bytes", "dram_output_write_bytes",
                  "stall_dram_cycles", "stall_dependency_cycles", "stall_slot_cycles", "stall_order_cycles",
                  "sram_wait_cycles", "flash_read_bytes", "stall_flash_cycles")



def to_json(result: SimResult, data: dict | None = None) -> str:
    """Pretty JSON (`data`: result.to_dict() when the caller has it); NaN or infinity is a bug and raises."""
    return json.dumps(result.to_dict() if data is None else data, indent=2, allow_nan=False) + "\n"


def to_csv(result: SimResult) -> str:
    """One row per kernel, then a '(total)' row with the run's totals."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("workload", "arch", *KERNEL_COLUMNS, "latency_s", "mbu"))
    for k in result.kernels:
        row = [getattr(k, c) for c in KERNEL_COLUMNS]
        w.writerow([result.workload, result.arch, *row, "", ""])
    total = dict.fromkeys(KERNEL_COLUMNS, "")
    total.update({c: sum(getattr(k, c) for k in result.kernels) for c in SUMMED_COLUMNS})
    traffic = result.dram_read_bytes + result.dram_write_bytes
    total.update(name="(total)", cycles=result.cycles, macs=result.macs, pe_utilization=result.pe_utilization,
                 dram_read_bytes=result.dram_read_bytes, dram_write_bytes=result.dram_write_bytes,
                 energy_pj=result.energy_pj, clock_hz=result.clock_hz, power_w=result.power_w,
                 arithmetic_intensity=result.macs / traffic if traffic else 0.0,
                 attained_macs_per_cycle=result.macs / result.cycles if result.cycles else 0.0)
    w.writerow([result.workload, result.arch] + [total[c] for c in KERNEL_COLUMNS]
               + [result.latency_s, result.mbu])
    return buf.getvalue()


def to_table(result: SimResult, top: int | None = None, objective: str | None = None) -> str:
    """Summary block and per-kernel table, at most 100 columns wide; `objective`: the mapping search's, named in
    the header."""
    r = result
    searched = f", objective {objective}" if objective else ""
    lines = [
        f"tilesim: {r.workload} on {r.arch} ({r.timing} timing, {si(r.clock_hz, 'Hz')}{searched})",
        *([f"  clock           {si(r.clock_hz, 'Hz')}: the {r.power_cap_w:g} W power cap lowered it from "
           f"{si(r.top_clock_hz, 'Hz')}"]
          if r.clock_capped else []),
        f"  cycles          {r.cycles:,}   latency {seconds(r.latency_s)}",
        f"  MACs            {r.macs:,}   ({si(r.macs / r.latency_s if r.latency_s else 0, 'MAC/s')})",
        f"  PE utilization  {r.pe_utilization:.1%}   of {r.peak_macs_per_cycle:,} MACs/cycle",
        f"  off-chip        read {byte_size(r.dram_read_bytes)}, write {byte_size(r.dram_write_bytes)}, "
        f"MBU {r.mbu:.1%} of {si(r.offchip_bytes_per_cycle * r.clock_hz, 'B/s')}",
        *([f"  flash           read {byte_size(r.flash_read_bytes)} of weights (staged in DRAM), "
           f"{r.flash_utilization:.1%} of {si(r.flash_bytes_per_cycle * r.clock_hz, 'B/s')}"]
          if r.flash_bytes_per_cycle else []),
        f"  energy          {joules(r.energy_pj)}   {pj(r.pj_per_mac)}/MAC",
        f"  power           {watts(r.power_w)} average" + (f" (TDP {r.tdp_w:g} W)" if r.tdp_w else ""),
        *([f"  static power    {si(sum(r.static_power_mw.values()) * 1e-3, 'W')} (" + ", ".join(
            f"{k} {si(v * 1e-3, 'W')}" for k, v in r.static_power_mw.items()) + ")"] if r.static_power_mw else []),
        f"  area            {area(r.area_mm2)} (" + ", ".join(f"{k} {sig(v)}" for k, v in
                                                         r.area_breakdown_mm2.items()) + ")" if r.area_mm2 else
        "  area            (the arch has no area section)",
        f"  engines busy    array {r.engine_busy['array']:.1%}, vector {r.engine_busy['vector']:.1%}, "
        f"DMA {r.engine_busy['dma']:.1%}",
        *textwrap.wrap(", ".join(f"{name} {t['bandwidth_utilization']:.1%}" for name, t in r.memory_traffic.items()),
                       width=100, initial_indent="  level BW used   ", subsequent_indent=" " * 18),
        *textwrap.wrap(", ".join(f"{k} {v / r.energy_pj:.1%}" for k, v in
                                 sorted(r.energy_breakdown_pj.items(), key=lambda kv: -kv[1]) if r.energy_pj),
                       width=100, initial_indent="  energy by part  ", subsequent_indent=" " * 18),
        "",
        *kernel_lines(r.kernels, top),
    ]
    return "\n".join(lines) + "\n"


def kernel_lines(kernels, top: int | None = None) -> list[str]:
    """The per-kernel table, 100 columns: header and rows (only the `top` longest when given)."""
    lines = [f"{'kernel':<16} {'bound':<7} {'cycles':>11} {'stall':>10} {'util':>6} {'map eff':>7} "
             f"{'DRAM rd':>9} {'DRAM wr':>9} {'energy':>9} {'power':>7}"]
    shown = kernels if top is None else sorted(kernels, key=lambda k: -k.cycles)[:top]
    for k in shown:
        eff = f"{k.mapping_efficiency:.0%}" if k.engine == "array" else "-"
        lines.append(f"{k.name[:16]:<16} {k.bound:<7} {k.cycles:>11,} {k.stall_cycles:>10,} "
                     f"{k.pe_utilization:>6.1%} {eff:>7} {byte_size(k.dram_read_bytes):>9} "
                     f"{byte_size(k.dram_write_bytes):>9} {si(k.energy_pj * 1e-12, 'J'):>9} {si(k.power_w, 'W'):>7}")
    if top is not None and top < len(kernels):
        lines.append(f"... {len(kernels) - top} more kernels (showing the {top} longest)")
    return lines


def tdp_warning(power_w: float, tdp_w: float, arch: str, what: str = "the run") -> str | None:
    """One warning line when an average power exceeds the arch's TDP (none without a TDP)."""
    if not tdp_w or power_w <= tdp_w:
        return None
    return (f"tilesim: warning: {what}'s average power {watts(power_w)} exceeds {arch}'s TDP {tdp_w:g} W "
            "(power.tdp_w); the energy table or the workload's intensity is past what the chip can sustain")


def check_finite(value, path: str = "result") -> None:
    """Raise a one-line InputError naming the first NaN or infinite number in a report's values (dicts, lists,
    dataclass fields already turned into dicts): tilesim never prints them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{path}: {value} is not a finite number; tilesim never reports NaN or infinity (an arch "
                         "value is out of range, or this is a bug: please report it)")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{path}[{i}]")


def render(result: SimResult, fmt: str, top: int | None = None, objective: str | None = None) -> str:
    """The report in format table, json or csv; a NaN or infinite number is refused, naming its field."""
    data = result.to_dict()
    check_finite(data)
    return {"table": lambda: to_table(result, top, objective), "json": lambda: to_json(result, data),
            "csv": lambda: to_csv(result)}[fmt]()
