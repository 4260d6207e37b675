"""The simulator: tile commands, numba pipeline, energy, results, reports and the CLI."""
from tilesim.core.result import KernelResult, SimResult
from tilesim.core.simulate import kernel_evaluator, simulate

__all__ = ["KernelResult", "SimResult", "kernel_evaluator", "simulate"]
