"""The long invariant profile (issue 21): random archs x small workloads x fusion policies, by hand.

    python benchmarks/invariants.py [--cases 5000] [--seed 0] [--progress 100] [--cpu-limit-s 0]

Prints, per invariant, how many cases broke it and the first example, then the totals (and a running count every
--progress cases, so a long run can be read while it goes); tests/invariants.py holds the archs and the checks
(the short profile runs in CI, tests/test_invariants.py). The workloads are PROFILE_WORKLOADS: the CI profile's,
decoders cut to 2 layers (every kind of kernel and the layer hand-off kept, ~4x cheaper); each case's runs share
its graph, kernel evaluators and tile commands (tests/invariants.py run).

Measured on the 2-CPU development machine, `--cases 5200 --seed 0 --cpu-limit-s 30` at 2e76408 (held operands,
tiled folds, sub-cycle tiles in the estimate): 4,583 cases simulated, 617 refused by the arch, 0 given up, 0
violations; 450 slowdowns with more resources inside the latency tie band (the largest 0.97%); 2,916 s.
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import resource
import signal
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from invariants import PROFILE_WORKLOADS, cases, violations

from tilesim.arch.errors import InputError

# Kinds of violation, by the start of their message.
KINDS = ("pe_utilization", "mbu", "bandwidth utilization", "below the compute bound", "below the off-chip bound",
         "below compulsory", "below the graph outputs", "energy breakdown", "fusion adds", "2x DRAM bandwidth slower",
         "2x SRAM slower", "2x SRAM reads more")


def limited(case, limit_s: float):
    """("ok", (violations, tie-band slowdowns)), ("refused", None), or ("gave up", None) when the case needs more
    than `limit_s` seconds of CPU: run in a forked child under RLIMIT_CPU (it inherits the loaded numba kernels;
    a signal raised inside numba's dispatch would break them), the result sent back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: its CPU time starts at 0
        os.close(read)
        resource.setrlimit(resource.RLIMIT_CPU, (max(1, math.ceil(limit_s)), resource.RLIM_INFINITY))
        band: list[str] = []
        try:
            out = ("ok", (violations(case, band), band))
        except InputError:
            out = ("refused", None)                # the arch cannot hold the workload: a one-line error
        with os.fdopen(write, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return "gave up", None
    if not data:
        raise RuntimeError(f"case child ended with status {status} and no result")
    return pickle.loads(data)


def main() -> None:
    """Run the profile and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", type=int, default=100, help="print a running count every N cases (0: never)")
    p.add_argument("--cpu-limit-s", type=float, default=0.0,
                   help="give up a case after this much CPU time (0: never; else each case runs in a forked child "
                        "under RLIMIT_CPU); given-up cases are counted apart")
    args = p.parse_args()
    counts, first, refused, ran = Counter(), {}, 0, 0
    band: list[str] = []                       # slowdowns the latency objective's 1% tie band allows
    slow: list[tuple[float, int, str]] = []    # (seconds, case, workload)
    gave_up: list[str] = []                    # cases past --cpu-limit-s: neither passed nor violated
    start = time.time()
    for i, case in enumerate(cases(args.seed, args.cases, PROFILE_WORKLOADS)):
        if args.progress and i and i % args.progress == 0:
            worst = f"; slowest #{max(slow)[1]} {max(slow)[0]:.1f} s" if slow else ""
            print(f"{i} cases: {ran} simulated, {refused} refused, {len(gave_up)} given up, "
                  f"{sum(counts.values())} violations "
                  f"({dict(counts)}), {time.time() - start:.0f} s{worst}", flush=True)
        began = time.time()
        if args.cpu_limit_s and i:             # the first case loads numba's kernels here, for every child
            what, out = limited(case, args.cpu_limit_s)
        else:
            try:
                what, out = "ok", (violations(case, band), [])
            except InputError:
                what, out = "refused", None
        if what == "refused":
            refused += 1                       # the arch cannot hold the workload: a one-line error, not a result
            continue
        if what == "gave up":
            gave_up.append(f"#{i} {case.workload} {case.options} {case.fusion} {case.arch['array']} "
                           f"cores={case.arch['cores']} sram={case.arch['memory'][1]['capacity_bytes']} B")
            print(f"gave up: case {gave_up[-1]} after {args.cpu_limit_s:g} s of CPU", flush=True)
            continue
        found, more = out
        band += more
        ran += 1
        slow.append((time.time() - began, i, case.workload))
        for v in found:
            kind = next((k for k in KINDS if k in v), v)
            counts[kind] += 1
            first.setdefault(kind, f"{case.workload} {case.arch['array']} cores={case.arch['cores']}: {v}")
            print(f"violation: case #{i} {case.workload} {case.options} {case.fusion}: {v}", flush=True)
    print(f"{ran} cases simulated, {refused} refused by the arch, {len(gave_up)} given up past "
          f"{args.cpu_limit_s:g} s of CPU, {time.time() - start:.0f} s")
    print(f"{'invariant':<28} {'violations':>10}  first example")
    for kind in KINDS:
        print(f"{kind:<28} {counts[kind]:>10}  {first.get(kind, '')[:150]}")
    print(f"total violations: {sum(counts.values())}")
    print("slowest cases: " + ", ".join(f"#{i} {w} {t:.1f} s" for t, i, w in sorted(slow, reverse=True)[:5]))
    worst = max((int(v.split()[-2]) / int(v.split()[-4]) - 1 for v in band), default=0.0)
    print(f"within the latency tie band (not violations): {len(band)} slowdowns with more resources, "
          f"the largest {worst:.3%}")


if __name__ == "__main__":
    main()
