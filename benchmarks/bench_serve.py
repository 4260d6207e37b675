"""`tilesim serve` run times (by hand; prints a table): a 1,000-request Poisson stream (10 requests/s, log-normal
prompts of median 512 and outputs of median 128 tokens) under each scheduler, each in a fresh step-cost model: cold
(its grid simulated: the first run of a model on an arch), with the time in graph simulations and in the scheduler
loop apart, then warm (a new process's run: the grid read from the on-disk step-cost store, serve_store.py, here
in a temporary folder).

    python benchmarks/bench_serve.py [WORKLOAD ARCH]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies import serve_cost
from tilesim.studies.options import WorkloadOptions
from tilesim.studies.serve import SchedulerOptions, TraceOptions, serve

STREAM = TraceOptions(rate=10.0, requests=1000, prompt_lengths="lognormal:512,0.6", output_lengths="lognormal:128,0.8")


def timed_serve(workload: str, arch: str, policy: str) -> tuple[float, float, object]:
    """(wall s, s inside graph simulations, result) of one serve in a fresh step-cost model."""
    spent = [0.0]
    simulate = serve_cost.StepCostModel.simulate

    def counting(self, make):
        t = time.perf_counter()
        try:
            return simulate(self, make)
        finally:
            spent[0] += time.perf_counter() - t
    serve_cost.StepCostModel.simulate = counting
    try:
        t0 = time.perf_counter()
        r = serve(WorkloadOptions(workload), load_arch(arch), CompileOptions(), STREAM,
                  SchedulerOptions(scheduler=policy))
        return time.perf_counter() - t0, spent[0], r
    finally:
        serve_cost.StepCostModel.simulate = simulate


def main_() -> None:
    workload, arch = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("llama2-7b", "h100")
    os.environ["TILESIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-serve-")
    timed_serve("gpt2", arch, "continuous")       # numba compiled, modules loaded: not counted below
    print(f"{'workload':<10} {'arch':<6} {'scheduler':<11} {'requests':>8} {'steps':>7} {'sims':>5} "
          f"{'cold':>7} {'in sims':>8} {'loop':>7} {'warm':>7}")
    for policy in ("static", "continuous", "chunked"):
        os.environ["TILESIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-serve-")  # an empty store: cold
        wall, sims, r = timed_serve(workload, arch, policy)
        warm, _, again = timed_serve(workload, arch, policy)
        assert again.simulations == 0 and again.summary == r.summary      # the store gives the same grid
        s = r.summary
        print(f"{workload:<10} {arch:<6} {policy:<11} {s['requests']:>8} {s['steps']:>7} {r.simulations:>5} "
              f"{wall:>6.2f}s {sims:>7.2f}s {wall - sims:>6.2f}s {warm:>6.2f}s")


if __name__ == "__main__":
    main_()
