"""Energy breakdown of AlexNet and VGG-16 conv layers on the Eyeriss preset's relative table, by Eyeriss's storage
levels (run by hand; docs/energy-eyeriss.md compares it with the Eyeriss papers).

    python benchmarks/eyeriss_breakdown.py [--workload alexnet vgg16] [--batch 1] [--mapper search|naive]
        [--set K=V ...]

The preset's table is Chen, Emer and Sze (ISCA 2016)'s relative cost per 16-bit access, 1 unit = 1 pJ: MAC 1,
RF 1, PE-to-PE (array) 2, global buffer 6, DRAM 200. Each action folds into one of the paper's levels:
  ALU     mac.*                                    (vector.op, ReLU and pooling on the way out, is listed apart)
  RF      array.reg_byte, spad.*                   (the stationary operand's register; the filter scratchpads)
  array   array.hop_byte                           (operands and partial sums moved PE to PE)
  buffer  glb.*                                    (the 108 KB global buffer)
  DRAM    dram.*
"""
from __future__ import annotations

import argparse
from collections import Counter

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.commands import build_program
from tilesim.core.energy import action_counts, dynamic_energy_pj
from tilesim.core.simulate import kernel_evaluator
from tilesim.workloads import load_workload

LEVELS = ("ALU", "RF", "array", "buffer", "DRAM", "other")


def level_of(action: str) -> str:
    """The Eyeriss storage level an action of the eyeriss preset belongs to."""
    comp, _what = action.split(".", 1)
    if comp == "mac":
        return "ALU"
    if comp == "spad" or action == "array.reg_byte":
        return "RF"
    if action == "array.hop_byte":
        return "array"
    return {"glb": "buffer", "dram": "DRAM"}.get(comp, "other")


def conv_breakdown(workload: str, batch: int, mapper: str, overrides: list[str]) -> tuple[dict, dict]:
    """Per conv layer and in total, pJ by Eyeriss level (dynamic energy: the relative table has no leakage)."""
    arch = load_arch("eyeriss", overrides)
    graph = load_workload(workload, batch=batch, dtype=arch.array.dtype)
    options = CompileOptions(mapper=mapper)
    schedule = lower(graph, arch, options, kernel_evaluator(arch, options.resolved_timing(arch), options.objective)
                     if mapper == "search" else None)
    result = simulate(schedule, arch)
    convs = {op.name for op in graph.ops if op.op_type == "Conv"}
    prog = build_program(schedule, arch)
    layers, total = {}, Counter()
    for kernel, cmds, kr in zip(schedule.kernels, prog.per_kernel, result.kernels, strict=False):
        if not convs & set(kernel.ops):
            continue
        pj = Counter()
        for action, e in dynamic_energy_pj(action_counts(kernel, cmds, arch), arch, kernel.name).items():
            pj[level_of(action)] += e
        assert abs(sum(pj.values()) - kr.energy_pj) <= 1e-6 * kr.energy_pj      # no leakage on this table
        layers[kernel.name] = (pj, kr.macs)
        total.update(pj)
    return layers, total


def _row(name: str, pj: Counter, macs: int) -> str:
    energy = sum(pj.values())
    shares = " | ".join(f"{pj[level] / energy:.1%}" for level in LEVELS)
    return f"| {name} | {macs / 1e6:,.1f} | {energy / macs:.2f} | {shares} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", nargs="+", default=["alexnet", "vgg16"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mapper", choices=("search", "naive"), default="search")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="arch override, as tilesim run --set (e.g. energy.actions.dram.read_byte.pj=50)")
    args = p.parse_args()
    for workload in args.workload:
        layers, total = conv_breakdown(workload, args.batch, args.mapper, args.overrides)
        print(f"\n{workload} conv layers on eyeriss, batch {args.batch}, {args.mapper} mapper: share of dynamic "
              "energy by Eyeriss level (1 unit = 1 pJ = one 16-bit MAC)\n")
        print("| layer | MMACs | units/MAC | " + " | ".join(LEVELS) + " |")
        print("|---|---:|---:|" + "---:|" * len(LEVELS))
        for name, (pj, macs) in layers.items():
            print(_row(name, pj, macs))
        print(_row("**all conv layers**", total, sum(macs for _, macs in layers.values())))


if __name__ == "__main__":
    main()
