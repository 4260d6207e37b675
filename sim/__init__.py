"""The simulator: tile commands, numba pipeline, energy, results, reports and the CLI."""
from .result import KernelResult, SimResult
from .simulate import simulate

__all__ = ["simulate", "SimResult", "KernelResult"]
