"""Peak memory per run (issue 21): hostile inputs of at most 1 MB and the built-ins, each in its own process.

    python benchmarks/peak_memory.py [--quick]

Each case runs `python -m tilesim ...` as a child process; its peak resident set comes from os.wait4's rusage
(ru_maxrss of that child alone). Prints one row per case: exit status, seconds, peak MiB, the input's size and the
last line of stderr; the target is <= 1 GiB for every input <= 1 MB (an exit 2 is a refusal, one line).

Measured on the 2-CPU development machine (2026-12-07): largest peak 853 MiB (resnet50 at batch 100,000 with 1 TiB
of DRAM, refused in 7.9 s: its program would take more than the simulator's 500 MB; it took 18,260 MiB and 96 s
before the search's shared commands and kept pipelines were bounded and programs limited by their bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_MIB = 1024


def files(folder: Path) -> dict[str, Path]:
    """The hostile input files, written to `folder`."""
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    conv = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
    hf = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 100_000, "num_attention_heads": 32,
          "intermediate_size": 11008, "vocab_size": 32000}
    texts = {
        "laughs.yaml": "\n".join(laughs) + "\n",
        "big.yaml": "# padding\n" * 100_000,
        "deep.yaml": "a: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "dw_million.csv": conv + "DPconv, 3, 3, 3, 3, 1000000, 1, 1,\n",
        "dw_limit.csv": conv + "DPconv, 3, 3, 3, 3, 50000, 1, 1,\n",         # at the kernel limit: accepted
        "layers.json": json.dumps(hf),
        "deep.json": "[" * 200_000 + "]" * 200_000,
        "huge_int.json": '{"hidden_size": ' + "9" * 5000 + "}",
    }
    out = {}
    for name, text in texts.items():
        out[name] = folder / name
        out[name].write_text(text)
    return out


def cases(f: dict[str, Path], quick: bool) -> list[tuple[str, list[str], Path | None]]:
    """(label, tilesim arguments, input file or None)."""
    hostile = [
        ("billion laughs arch", ["run", "-a", str(f["laughs.yaml"]), "-w", "gemm:8,8,8"], f["laughs.yaml"]),
        ("1 MB arch YAML", ["run", "-a", str(f["big.yaml"]), "-w", "gemm:8,8,8"], f["big.yaml"]),
        ("arch nested 20,000 deep", ["run", "-a", str(f["deep.yaml"]), "-w", "gemm:8,8,8"], f["deep.yaml"]),
        ("DP conv of 10^6 channels", ["run", "-a", "edge-npu", "-w", str(f["dw_million.csv"])], f["dw_million.csv"]),
        ("HF config of 10^5 layers", ["run", "-a", "h100", "-w", str(f["layers.json"])], f["layers.json"]),
        ("JSON nested 200,000 deep", ["run", "-w", str(f["deep.json"])], f["deep.json"]),
        ("JSON integer of 5000 digits", ["run", "-w", str(f["huge_int.json"])], f["huge_int.json"]),
        ("attention --seq-len 100000", ["run", "-w", "attention", "--seq-len", "100000", "-a", "edge-npu"], None),
        ("attention --seq-len 100000 h100", ["run", "-w", "attention", "--seq-len", "100000", "-a", "h100"], None),
        ("resnet50 --batch 100000", ["run", "-w", "resnet50", "--batch", "100000", "-a", "edge-npu"], None),
        ("resnet50 --batch 100000, 1 TiB DRAM", ["run", "-w", "resnet50", "--batch", "100000", "-a", "edge-npu",
                                                 "--set", "memory.dram.capacity_bytes=1 TiB"], None),
        ("compare llama2-7b on edge-npu", ["compare", "-w", "llama2-7b", "-a", "edge-npu"], None),
        ("gemm of 2**56 MACs", ["run", "-w", "gemm:262144,524288,524288", "-a", "edge-npu", "--set",
                                "memory.dram.capacity_bytes=1024 TiB"], None),
    ]
    limits = [
        ("resnet50 --batch 1500 (near 4 M tiles)", ["run", "-w", "resnet50", "--batch", "1500", "-a", "edge-npu"],
         None),
        ("DP conv of 50,000 channels (kernel limit)", ["run", "-a", "edge-npu", "-w", str(f["dw_limit.csv"])],
         f["dw_limit.csv"]),
    ]
    builtins = [(f"built-in {w}", ["run", "-w", w, "-a", a], None) for w, a in (
        ("resnet50", "edge-npu"), ("vgg16", "tpu-v4"), ("bert-base", "gemmini"), ("vit-b16", "tpu-v4"),
        ("attention", "h100"), ("llama2-7b", "tpu-v4"), ("mixtral-8x7b", "h200"), ("qwen3-30b-a3b", "h100"))]
    builtins.append(("sweep resnet18, 8 points, 2 jobs", ["sweep", "-w", "resnet18", "-a", "edge-npu", "--grid",
                                                          "array.rows=8,16,32,64", "--grid", "array.cols=16,32",
                                                          "--jobs", "2", "--no-progress", "-o", "{tmp}/s.csv"], None))
    return hostile + builtins + ([] if quick else limits)


def run_case(args: list[str], tmp: Path) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak MiB of the child, last stderr line) of `python -m tilesim ARGS`."""
    err_path = tmp / "stderr.txt"
    start = time.perf_counter()
    with open(os.devnull, "w") as out, open(err_path, "w") as err:
        child = subprocess.Popen([sys.executable, "-m", "tilesim", *[a.replace("{tmp}", str(tmp)) for a in args]],
                                 stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    last = (err_path.read_text().strip().splitlines() or [""])[-1]
    return child.returncode, seconds, usage.ru_maxrss / 1024, last     # ru_maxrss: KiB on Linux


def main() -> None:
    """Run every case and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="leave out the two slow cases at the limits")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"{'case':<42} {'input':>9} {'exit':>4} {'s':>6} {'peak MiB':>9}  stderr")
        worst = 0.0
        for label, argv, path in cases(files(tmp), args.quick):
            code, seconds, mib, last = run_case(argv, tmp)
            size = f"{path.stat().st_size:,}" if path else "-"
            worst = max(worst, mib)
            print(f"{label:<42} {size:>9} {code:>4} {seconds:>6.1f} {mib:>9.0f}  {last[:70]}", flush=True)
        print(f"largest peak: {worst:.0f} MiB ({'within' if worst <= LIMIT_MIB else 'OVER'} the {LIMIT_MIB} MiB "
              "target)")


if __name__ == "__main__":
    main()
