"""Time each op of eager PyTorch's unfused attention chain on a GPU, and softmax by row length (issue 6).

    python benchmarks/hardware/measure_attention_ops.py --out attention_ops.csv

measure_h100.py times the whole chain (QK^T, scale, softmax, PV) against SDPA. This splits the chain, at B=1,
H=32, D=128, bf16 and S = 512 ... 8192, into its four kernels, each timed alone (CUDA graphs, medians as in
measure_h100.py), and times softmax and an elementwise multiply over the same 2**28 elements arranged as rows of
512 ... 16384, and over tensors of 0.5 ... 4 GiB. Each row: case, S or row length, median ms and the effective
bandwidth of one read of every input and one write of the output (GB/s).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_h100 import graph_timed, stats

DT = torch.bfloat16
FIELDS = ["group", "case", "seq", "rows", "cols", "median_ms", "p10_ms", "p90_ms", "gb_s", "note"]


def chain_ops(writer, seqs: list[int]) -> None:
    """Each kernel of softmax(Q K^T * scale) V alone, and SDPA, per sequence length."""
    for s in seqs:
        one_length(writer, s)
        torch.cuda.empty_cache()


def one_length(writer, s: int, heads: int = 32, d: int = 128) -> None:
    """The chain's kernels at one sequence length (tensors freed on return)."""
    scale = 1 / math.sqrt(d)
    q, k, v = (torch.randn(1, heads, s, d, device="cuda", dtype=DT) for _ in range(3))
    kt = k.transpose(-2, -1)
    scores = torch.matmul(q, kt)
    scaled = scores * scale
    probs = torch.softmax(scaled, dim=-1)
    sbytes, qkv = scores.numel() * 2, q.numel() * 2
    ops = {"qk": (lambda i=0: torch.matmul(q, kt), 2 * qkv + sbytes),
           "scale": (lambda i=0: scores * scale, 2 * sbytes),
           "softmax": (lambda i=0: torch.softmax(scaled, dim=-1), 2 * sbytes),
           "pv": (lambda i=0: torch.matmul(probs, v), sbytes + 2 * qkv),
           "chain": (lambda i=0: torch.matmul(torch.softmax(torch.matmul(q, kt) * scale, dim=-1), v), 0),
           "sdpa": (lambda i=0: torch.nn.functional.scaled_dot_product_attention(q, k, v), 4 * qkv)}
    for name, (fn, nbytes) in ops.items():
        per, calls = graph_timed(fn, 20 if s <= 2048 else 5)
        st = stats(per)
        writer.writerow(dict(group="attention_ops", case=f"{name}_S{s}", seq=s, **st,
                             gb_s=nbytes / st["median_ms"] / 1e6 if nbytes else "", note=f"{calls} calls/graph"))


def rows_of(writer, cols: int, elements: int) -> None:
    """Softmax and a multiply over `elements` bf16 values as rows of `cols`."""
    x = torch.randn(elements // cols, cols, device="cuda", dtype=DT)
    for name, fn in (("softmax", lambda i=0: torch.softmax(x, dim=-1)), ("mul", lambda i=0: x * 0.5)):
        st = stats(graph_timed(fn, 10)[0])
        writer.writerow(dict(group="rows", case=f"{name}_cols{cols}", rows=x.shape[0], cols=cols, **st,
                             gb_s=2 * x.numel() * 2 / st["median_ms"] / 1e6))


def sized(writer, gib: float) -> None:
    """A multiply over a `gib` GiB tensor."""
    x = torch.randn(int(gib * 2**30) // 2, device="cuda", dtype=DT)
    st = stats(graph_timed(lambda i=0: x * 0.5, 5)[0])
    writer.writerow(dict(group="size", case=f"mul_{gib}GiB", cols=x.numel(), **st,
                         gb_s=2 * x.numel() * 2 / st["median_ms"] / 1e6))


def by_row_length(writer, elements: int = 2**28) -> None:
    """Softmax and a multiply over `elements` bf16 values as rows of 512 ... 16384 columns."""
    for cols in (512, 1024, 2048, 4096, 8192, 16384):
        rows_of(writer, cols, elements)
        torch.cuda.empty_cache()


def by_size(writer) -> None:
    """A multiply over 0.5 ... 4 GiB tensors: does streaming bandwidth fall with size?"""
    for gib in (0.5, 1, 2, 4):
        sized(writer, gib)
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        chain_ops(writer, [512, 1024, 2048, 4096, 8192])
        by_row_length(writer)
        by_size(writer)
    print(open(args.out).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
