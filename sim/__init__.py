"""tilesim: a cycle-approximate accelerator simulator (workload -> Graph -> Schedule -> SimResult -> report).

The Python API, with the CLI's options as keyword arguments (sim/studies/options.py, CompileOptions):

    import tilesim
    r = tilesim.run("resnet50", "tpu-v1", batch=4, fusion="epilogue")      # RunResult; r.to_dict() = run -f json
    c = tilesim.compare("bert-base", "h100", policies=("none", "full"))    # CompareResult
    rows = tilesim.sweep({"array.rows": [16, 32]}, "resnet18", "edge-npu", output="s.csv")

Names are imported on first use (module __getattr__), so `import tilesim.arch` loads neither numba nor the studies.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "run": "tilesim.studies.api", "compare": "tilesim.studies.api", "sweep": "tilesim.studies.api",
    "run_system": "tilesim.studies.api",
    "load_arch": "tilesim.studies.api", "load_workload": "tilesim.studies.api",
    "RunResult": "tilesim.studies.api", "CompareResult": "tilesim.studies.api",
    "serve": "tilesim.studies.api", "ServeResult": "tilesim.studies.api", "serve_rates": "tilesim.studies.api",
    "RateSweep": "tilesim.studies.api", "serve_grid": "tilesim.studies.api",
    "SimResult": "tilesim.core.result", "KernelResult": "tilesim.core.result",
    "simulate": "tilesim.core.simulate", "kernel_evaluator": "tilesim.core.simulate",
}

__all__ = ["CompareResult", "KernelResult", "RateSweep", "RunResult", "ServeResult", "SimResult", "compare",
           "kernel_evaluator", "load_arch", "load_workload", "run", "run_system", "serve", "serve_grid", "serve_rates",
           "simulate", "sweep"]


def __getattr__(name: str) -> Any:
    """The public names, imported from their modules on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'tilesim' has no attribute '{name}'")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names."""
    return sorted(__all__)
