"""Regenerate the README's pictures in docs/images from built-in runs: roofline, energy and timeline of MobileNetV2
on Gemmini, and the latency/energy Pareto chart of a small sweep of Gemmini's dataflow and array shape.

Run from anywhere: python scripts/make_readme_pictures.py (needs tilesim[plot]); prints each file and its size.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tilesim.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WORKLOAD, ARCH = "mobilenet_v2", "gemmini"
SWEEP_SET = ["array.dataflows=[]"]         # each point keeps the dataflow of its grid value
SWEEP_GRID = ["array.dataflow=ws,os", "array.rows=8,16,32", "array.cols=8,16,32,64"]
MAX_BYTES = 200_000


def tilesim(*args: str) -> None:
    """Run one tilesim command; stop on failure."""
    status = main(list(args))
    if status:
        sys.exit(f"tilesim {' '.join(args)}: exit status {status}")


def run_plots(tmp: Path) -> list[Path]:
    """Roofline, energy and timeline of one run."""
    paths = [IMAGES / f"{kind}.png" for kind in ("roofline", "energy", "timeline")]
    plots = [arg for p in paths for arg in ("--plot", str(p))]
    tilesim("run", "-w", WORKLOAD, "-a", ARCH, "-o", str(tmp / "run.txt"), *plots)
    return paths


def sweep_plot(tmp: Path) -> list[Path]:
    """The Pareto chart of a small design sweep."""
    path = IMAGES / "pareto.png"
    grids = [arg for g in SWEEP_GRID for arg in ("--grid", g)] + [arg for s in SWEEP_SET for arg in ("--set", s)]
    tilesim("sweep", "-w", WORKLOAD, "-a", ARCH, *grids, "--backend", "serial", "--no-progress",
            "-o", str(tmp / "sweep.csv"), "--plot", str(path))
    return [path]


def main_script() -> int:
    """Draw every picture and check its size."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = run_plots(Path(tmp)) + sweep_plot(Path(tmp))
    too_big = [p for p in paths if p.stat().st_size > MAX_BYTES]
    for p in paths:
        print(f"{p.relative_to(ROOT)}  {p.stat().st_size / 1000:.0f} kB")
    if too_big:
        print(f"over {MAX_BYTES // 1000} kB: {', '.join(p.name for p in too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main_script())
