"""What every plot shares (optional extra tilesim[plot]: matplotlib, Agg, no display): the kind read from a file
name, the check that matplotlib is installed, a new Figure, and writing it whole."""
from __future__ import annotations

import io
from pathlib import Path

from tilesim.arch.errors import InputError
from tilesim.core.files import write_atomic

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
DPI = 100


def plot_kind(path: str, allowed: tuple[str, ...]) -> str:
    """The plot kind named in the file name (e.g. pareto.png, resnet-heatmap.svg), one of `allowed`."""
    stem = Path(path).stem.lower()
    kinds = [k for k in allowed if k in stem]
    if len(kinds) != 1:
        raise InputError(f"--plot {path}: name exactly one kind in the file name, one of {', '.join(allowed)} "
                         f"(e.g. {', '.join(k + '.png' for k in allowed)})")
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"--plot {path}: the file must end in {', '.join(PLOT_SUFFIXES)}")
    return kinds[0]


def plots_available() -> bool:
    """Whether matplotlib (tilesim[plot]) is installed."""
    try:
        import matplotlib  # noqa: F401, PLC0415 (optional dependency)
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    """One-line InputError when matplotlib (tilesim[plot]) is missing."""
    if not plots_available():
        raise InputError("--plot: matplotlib is not installed; pip install 'tilesim[plot]'")


def new_figure(width: float, height: float, **kw):
    """A matplotlib Figure (no pyplot: no global state, no display)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 (optional dependency)
    return Figure(figsize=(width, height), layout="constrained", **kw)


# Metadata that would make two renderings of one figure differ: the date (svg, pdf); matplotlib's version is kept.
NO_DATES = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {}}


def figure_bytes(fig, fmt: str = "png", dpi: int = DPI) -> bytes:
    """The figure rendered to bytes (png, svg or pdf), byte-identical for the same figure: no dates, and SVG ids
    (clip paths, glyphs) hashed with a fixed salt instead of a random one."""
    from matplotlib import rc_context  # noqa: PLC0415 (optional dependency)
    buf = io.BytesIO()
    with rc_context({"svg.hashsalt": "tilesim"}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=NO_DATES.get(fmt, {}))
    return buf.getvalue()


def save(fig, path: str, dpi: int = DPI) -> None:
    """Write the figure to `path` atomically (temporary file beside it, then rename): no half-written file."""
    target = Path(path)
    write_atomic(target, figure_bytes(fig, target.suffix.lower().lstrip(".") or "png", dpi))
