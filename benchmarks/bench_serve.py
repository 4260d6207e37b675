"""`tilesim serve` run times (by hand; prints tables): a 1,000-request Poisson stream (10 requests/s, log-normal
prompts of median 512 and outputs of median 128 tokens) under each scheduler, each in a fresh step-cost model: cold
(its grid simulated: the first run of a model on an arch), with the time in graph simulations and in the scheduler
loop apart, then warm (a new process's run: the grid read from the on-disk step-cost store, serve_store.py, here
in a temporary folder). `--whole` simulates every grid point's whole graph (no layer cuts, serve_layers.py): the
cold time before the cuts. Then the step-cost model against direct simulation of the whole graph on random step
shapes (prefill chunks and decode batches off the grid): the error of grid interpolation and layer cuts together.

    python benchmarks/bench_serve.py [WORKLOAD ARCH] [--whole] [--shapes N]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from tilesim.arch import load_arch
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.simulate import simulate
from tilesim.studies import serve_cost
from tilesim.studies.options import WorkloadOptions
from tilesim.studies.serve import SchedulerOptions, TraceOptions, serve
from tilesim.workloads import decoder_config
from tilesim.workloads import llm as wl

STREAM = TraceOptions(rate=10.0, requests=1000, prompt_lengths="lognormal:512,0.6", output_lengths="lognormal:128,0.8")


def timed_serve(workload: str, arch: str, policy: str) -> tuple[float, float, object]:
    """(wall s, s inside graph simulations, result) of one serve in a fresh step-cost model."""
    spent = [0.0]
    simulate_ = serve_cost.StepCostModel.simulate

    def counting(self, make):
        t = time.perf_counter()
        try:
            return simulate_(self, make)
        finally:
            spent[0] += time.perf_counter() - t
    serve_cost.StepCostModel.simulate = counting
    try:
        t0 = time.perf_counter()
        r = serve(WorkloadOptions(workload), load_arch(arch), CompileOptions(), STREAM,
                  SchedulerOptions(scheduler=policy))
        return time.perf_counter() - t0, spent[0], r
    finally:
        serve_cost.StepCostModel.simulate = simulate_


def shape_errors(workload: str, arch_name: str, n: int, seed: int = 0) -> None:
    """Step costs against the whole graph simulated directly, on n random shapes: a prefill chunk of 1-2048 tokens
    (no cache), or a decode batch of 1-64 sequences at one context of 0-4000 tokens (log-uniform sizes)."""
    arch = load_arch(arch_name)
    cfg = decoder_config(workload)
    model = serve_cost.StepCostModel(cfg, arch, CompileOptions(), wl.resolve_dtypes(None, arch.array.dtype))
    rng = np.random.default_rng(seed)
    print(f"\n{'step shape':<26} {'model ms':>9} {'direct ms':>10} {'latency err':>12} {'energy err':>11}")
    worst = 0.0
    for i in range(n):
        if i % 2 == 0:
            t = int(np.exp(rng.uniform(0, np.log(2048))))
            label, step, graph = f"prefill {t}", model.step([(t, 0)], []), wl.prefill_graph(cfg, 1, t, model.dtypes)
        else:
            b, c = int(np.exp(rng.uniform(0, np.log(64)))), int(rng.uniform(0, 4000))
            label, step = f"decode {b} x context {c}", model.step([], [c] * b)
            graph = wl.decode_graph(cfg, b, c, model.dtypes)
        direct = simulate(lower(graph, arch, model.options, model.evaluate), arch, flash_share=0.0, memo=model.memo)
        el, ee = step.latency_s / direct.latency_s - 1, step.energy_pj / direct.energy_pj - 1
        worst = max(worst, abs(el), abs(ee))
        print(f"{label:<26} {step.latency_s * 1e3:>9.3f} {direct.latency_s * 1e3:>10.3f} {el:>+11.2%} {ee:>+10.2%}")
    print(f"largest error {worst:.2%} over {n} shapes")


def main_() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    workload, arch = (args[0], args[1]) if len(args) > 1 else ("llama2-7b", "h100")
    shapes = int(sys.argv[sys.argv.index("--shapes") + 1]) if "--shapes" in sys.argv else 8
    if "--whole" in sys.argv:
        serve_cost.stackable = lambda cfg: False          # every grid point's whole graph: the cold time before cuts
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
    if shapes:
        shape_errors(workload, arch, shapes)


if __name__ == "__main__":
    main_()
