"""LLM run times (by hand; prints a table): prefill, one decode step and a 128 + 1024-token generation, warm.

    python benchmarks/bench_llm.py
"""
from __future__ import annotations

import time

from tilesim.cli.main import main

CASES = [
    ["--phase", "prefill", "--prompt-len", "128"],
    ["--phase", "decode", "--context", "1024"],
    ["--phase", "generate", "--prompt-len", "128", "--gen-tokens", "1024"],
]


def seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    assert main([*argv, "-o", "/dev/null"]) == 0
    return time.perf_counter() - t0


def main_() -> None:
    print(f"{'workload':<12} {'arch':<8} {'run':<52} {'cold':>7} {'warm':>7}")
    for workload, arch in (("llama2-7b", "tpu-v4"), ("llama3-8b", "tpu-v4"), ("gemma-2b", "tpu-v4")):
        for case in CASES:
            argv = ["run", "-w", workload, "-a", arch, *case]
            cold = seconds(argv)         # first in this process: builds graphs, searches mappings
            warm = seconds(argv)         # again: mapping searches cached, numba loaded
            print(f"{workload:<12} {arch:<8} {' '.join(case):<52} {cold:>6.2f}s {warm:>6.2f}s")


if __name__ == "__main__":
    main_()
