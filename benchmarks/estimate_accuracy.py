"""How well the mapping search's closed-form estimate ranks tilings (by hand, not a test; prints a table): over the
contraction kernels of the invariant profile's random archs (tests/invariants.py, seed 0), each kernel's shortlist
of 12 candidates is estimated (compiler.mapper.score) and simulated alone (sim.kernel_evaluator).

    python benchmarks/estimate_accuracy.py [--cases N] [--first I]

Columns: |error| of the estimate against the simulated cycles (median, 90th percentile, max) and its mean (signed),
over every candidate; how often the estimate's first candidate is within 1% of the shortlist's simulated best; and
the regret (the estimate's first against the simulated best: mean and max). Plain kernels: no operands kept on chip
(the CLI's `--fusion full` passes them through KernelContext; tests/test_invariants.py checks one such kernel).

Measured on the 2-CPU development machine, cases 0-1,499 (4,580 kernels, about 57,400 candidates):

    commit    |err| median   p90     max    mean     first within 1%   regret mean   max
    b304e8b   0.02%          1.71%   69.2%  -0.19%   92.2%             0.71%         83.9%
    fb1cca7   0.02%          1.50%   45.6%  -0.40%   92.6%             0.69%         83.9%
    (drains)  0.02%          1.41%   45.6%  -0.31%   93.0%             0.66%         83.9%

Cases 0-599 (1,847 kernels), before and after the short last tile's wait (0d4f645):

    commit    |err| median   p90     max    mean     first within 1%   regret mean   max
    46a2bd7   0.01%          1.45%   45.6%  -0.25%   93.5%             0.57%         83.9%
    0d4f645   0.01%          1.42%   45.6%  -0.25%   93.8%             0.55%         83.9%
    (held)    0.01%          1.53%   44.7%  -0.34%   94.0%             0.41%         46.5%

fb1cca7: the last tile's compute hidden behind the previous tile's store where the DMA is the bottleneck, and the
in-flight bound without the first load and last store counted twice (issue 21). (drains): a fused epilogue's time
on each output tile's last tile, not spread over every tile. (held): held operands and tiled folds (shortlists of
12 rows' candidates), with tiles of under a cycle's compute costed in whole cycles.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from invariants import PROFILE_WORKLOADS, cases, workload_graph

from tilesim.arch import arch_from_dict
from tilesim.arch.errors import InputError
from tilesim.compiler import mapper
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.schedule import Kernel, choose_split, core_shares, kernel_context, make_kernels
from tilesim.compiler.sparsity import on_array
from tilesim.core.simulate import kernel_evaluator

SHORTLIST = 12          # candidates per kernel (the search hands 4 and the naive tiling to the simulator)
KERNELS_PER_CASE = 7    # distinct contraction kernels looked at per case


def kernel_errors(case) -> list[tuple[list[float], list[float]]]:
    """(estimates, simulated cycles) of each distinct contraction kernel's shortlist in one profile case."""
    arch = arch_from_dict(case.arch)
    graph = workload_graph(case.workload, case.options)
    evaluate = kernel_evaluator(arch, "pipelined")
    seen, out = set(), []
    for k in make_kernels(graph, case.fusion):
        if not isinstance(k.work, Contraction) or len(seen) >= KERNELS_PER_CASE:
            continue
        work = on_array(k.work, arch.array)
        split = choose_split(work, arch.cores, arch.array) if arch.cores > 1 else ""
        share = core_shares(work, split, arch.cores)[0][0] if split else work
        context = kernel_context(k.epilogue, share, work, split, arch)
        if (work, context, split) in seen:
            continue
        seen.add((work, context, split))
        core = arch.per_core()
        one = np.array([1])
        try:
            shortlist = mapper.search(share, core, "pipelined", context=context).shortlist
            est = [float(mapper.score(share, core, "pipelined", m.dataflow, one * m.tile_m, one * m.tile_n,
                                      one * m.tile_k, m.order, context, m.hold)[0][0]) for m in shortlist]
            sim = [float(evaluate(Kernel(k.name, k.ops, work, m, split=split, epilogue=k.epilogue)))
                   for m in shortlist]
        except InputError:
            continue
        out.append((est, sim))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1500, help="profile cases to look at (default 1500)")
    ap.add_argument("--first", type=int, default=0, help="the first case (default 0)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    mapper.SHORTLIST = SHORTLIST
    errors, regret, first_ok = [], [], 0
    for case in cases(0, args.first + args.cases, PROFILE_WORKLOADS)[args.first:]:
        try:
            found = kernel_errors(case)
        except InputError:
            continue
        for est, sim in found:
            errors += [e / s - 1 for e, s in zip(est, sim, strict=True)]
            picked = sim[int(np.argmin(est))]
            regret.append(picked / min(sim) - 1)
            first_ok += picked <= min(sim) * 1.01
    e, r = np.abs(np.array(errors)), np.array(regret)
    print(f"{len(r)} kernels, {len(e)} candidates (cases {args.first}-{args.first + args.cases - 1})")
    print(f"{'|err| median':>13} {'p90':>7} {'max':>7} {'mean':>7} {'first within 1%':>16} {'regret mean':>12} "
          f"{'max':>7}")
    print(f"{np.median(e):>13.2%} {np.percentile(e, 90):>7.2%} {e.max():>7.1%} {np.mean(errors):>+7.2%} "
          f"{first_ok / len(r):>16.1%} {r.mean():>12.2%} {r.max():>7.1%}")


if __name__ == "__main__":
    main()
