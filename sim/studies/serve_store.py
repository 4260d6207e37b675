"""The on-disk store of serving step-cost grids: a StepCostModel's simulated grid points (serve_cost.py) kept between
runs, so a stream already served on the same model, arch and options costs no graph simulation the next time.

One JSON file per (model config, arch, dtypes, compile options, tilesim version and source) key, under the user's
cache folder (stores.py; subfolder serve-steps). TILESIM_STEP_CACHE=0 turns the store off. The key hashes the
source that computes a step's cost (the simulator's packages, serve_cost.py and serve_layers.py), so a changed
simulator never reads an old grid. Floats go through JSON's shortest round-trip repr: a cached grid point is
bit-identical to the simulation it stands for. A file that cannot be read or parsed is ignored (and replaced at the
next save); saves are atomic (temporary file + rename).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tilesim.studies import stores

STORE_VERSION = 1           # the file layout below
SOURCE_PACKAGES = ("tilesim.core", "tilesim.compiler", "tilesim.arch", "tilesim.workloads")
# how a grid point is simulated (the schedulers, which only read the grid, do not matter)
SOURCE_MODULES = ("tilesim.studies.serve_cost", "tilesim.studies.serve_layers")


def source_fingerprint() -> str:
    """The installed tilesim version and a hash of the source files a step cost depends on: the simulator's
    packages and the step-cost model (not the schedulers, which only read the grid)."""
    return stores.source_fingerprint(SOURCE_PACKAGES, SOURCE_MODULES)


def store_key(*parts: Any) -> str:
    """A hash of the parts by value (stores.value_key, as the schedule store's keys) and the source fingerprint."""
    return stores.value_key(STORE_VERSION, source_fingerprint(), *parts)


class StepStore:
    """One grid's file: `load()` the points stored, `save(points)` them back (atomic, best effort)."""

    def __init__(self, key: str):
        self.key = key
        on = os.environ.get("TILESIM_STEP_CACHE", "1") != "0"
        self.folder = stores.writable_folder("serve-steps") if on else None

    @property
    def path(self) -> Path | None:
        """The file, or None when nothing can be stored."""
        return self.folder / f"{self.key}.json" if self.folder is not None else None

    def load(self) -> dict:
        """The stored points ({} when there is no readable file of this key)."""
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("key") == self.key else {}

    def save(self, points: dict) -> bool:
        """Write the points (with the key) atomically (stores.save_file); False when they could not be written
        (nothing is left)."""
        if self.path is None:
            return False
        return stores.save_file(self.path, json.dumps(points | {"key": self.key}).encode())
