"""The simulator: tile commands, numba pipeline, energy, results, reports and the CLI."""
from .result import KernelResult, SimResult
from .simulate import kernel_evaluator, simulate

__all__ = ["simulate", "kernel_evaluator", "SimResult", "KernelResult"]
