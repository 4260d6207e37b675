"""The simulator: tile commands, numba pipeline, energy, results, reports and the CLI."""
from tilesim.core.result import KernelResult, SimResult
from tilesim.core.simulate import kernel_evaluator, simulate

__all__ = ["simulate", "kernel_evaluator", "SimResult", "KernelResult"]
