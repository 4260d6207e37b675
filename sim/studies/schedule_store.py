"""The on-disk store of lowered schedules: the Schedule a graph lowers to on an arch with a run's compile options
(fusion, the mapping search, the simulator's pick among its shortlist, the fusion guard: ~1.5 s of ResNet-50 on
tpu-v1) kept between runs, so the same run again only simulates it.

A schedule is a function of what lower() is given: the graph, the arch, the compile options and the evaluator's
flash share, hashed by value (stores.value_key), and of the source that lowers and evaluates (the compiler, arch and
simulator core packages: stores.source_fingerprint) with the numerical libraries' versions. What is stored is the
Schedule object lower() returned (a pickle), so a run from the store reports byte for byte what it would otherwise;
with it, where the caller says where they go (CommandMemo), the tile commands its simulation builds on that arch
(commands.kept_commands, up to 32 MiB: they depend on nothing a power cap's clocks change) and the DRAM traffic
behind the arch's cache they were built from, so that the run from the store builds neither again (llama3-8b
prefill 64 x 4096 on h100: ~0.1 s).

One file per key under the user's cache folder (stores.py; subfolder schedules, made 0700). A pickle runs code
when it is read, so a file is read only where it and its folder belong to us and no one else may write them. A file
that cannot be read or does not hold this key's schedule is ignored and replaced. Saves are atomic (temporary file
+ rename). The store keeps at most MAX_FILES files and MAX_BYTES in all, dropping the least recently used.
TILESIM_SCHEDULE_CACHE=0 turns it off (the tests do: a test that changes a module's constants must lower anew);
so does off(), around each of a sweep's design points.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import pickle
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilesim.arch.config import ArchConfig
from tilesim.compiler.ir import Graph
from tilesim.compiler.schedule import Schedule
from tilesim.core.commands import kept_commands, remember_commands
from tilesim.studies import stores

STORE_VERSION = 2                 # the file layout: a pickle of (key, Schedule, what keep() gave)
SOURCE_PACKAGES = ("tilesim.core", "tilesim.compiler", "tilesim.arch")
SOURCE_MODULES = ("tilesim.studies.schedule_store",)
MAX_FILES = 2_000
MAX_BYTES = 256 * 2**20
SUFFIX = ".schedule"
STALE_S = 3600                    # a temporary file this old was left by a killed process


def enabled() -> bool:
    """False when TILESIM_SCHEDULE_CACHE is 0, or inside off() in this thread."""
    return os.environ.get("TILESIM_SCHEDULE_CACHE", "1") != "0" and not getattr(_mode, "off", 0)


@contextmanager
def off() -> Iterator[None]:
    """Neither read nor write the store in this thread while inside (a sweep's design points: each is lowered
    once)."""
    _mode.off = getattr(_mode, "off", 0) + 1
    try:
        yield
    finally:
        _mode.off -= 1


_mode = threading.local()


@functools.cache
def versions() -> tuple[str, ...]:
    """Python's, numpy's and numba's versions: the search's arithmetic runs on them."""
    found = []
    for package in ("numpy", "numba"):
        try:
            found.append(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            found.append("none")
    return (sys.version, *found)


def graph_key(graph: Graph) -> str:
    """A graph's value key, worked out once per Graph object (a graph is not changed once made; a sweep's design
    points share one: hashing a 1,000-op LLM graph takes ~0.1 s)."""
    if graph not in _GRAPH_KEYS:
        _GRAPH_KEYS[graph] = stores.value_key(graph)
    return _GRAPH_KEYS[graph]


_GRAPH_KEYS: weakref.WeakKeyDictionary[Graph, str] = weakref.WeakKeyDictionary()


def schedule_key(graph: Graph, *inputs: Any) -> str | None:
    """The store's key for lowering `graph` with `inputs`, None where one has no canonical form."""
    try:
        return stores.value_key(STORE_VERSION, stores.source_fingerprint(SOURCE_PACKAGES, SOURCE_MODULES),
                                versions(), graph_key(graph), *inputs)
    except TypeError:
        return None


@dataclass(frozen=True, eq=False)
class CommandMemo:
    """Where a run keeps the tile commands of the schedules it simulates (build_program's memo for one arch, the
    schedule's timing and the flash share it is simulated with): a stored schedule's are stored with it and put back
    when it is read, so a run from the store builds none of them again (nor works out a cache's traffic)."""
    arch: ArchConfig
    memo: dict
    share: float | None = None


def lowered(make: Callable[[], Schedule], graph: Graph, *inputs: Any, commands: CommandMemo | None = None
            ) -> Schedule:
    """make()'s schedule, read from the store when one is stored for `graph` and `inputs` (all that make() lowers
    from), else made and stored; with `commands`, its tile commands too (commands.kept_commands; made into that memo
    when the schedule is made, put into it when it is read)."""
    folder = stores.writable_folder("schedules", mode=0o700) if enabled() else None
    key = schedule_key(graph, *inputs) if folder is not None else None
    if folder is None or key is None:
        return make()
    path = folder / f"{key}{SUFFIX}"
    found = load(path, key)
    if found is not None:
        if commands is not None and isinstance(found[1], dict):
            remember_commands(found[1], commands.arch, found[0].timing, commands.memo)
        return found[0]
    schedule = make()
    kept = kept_commands(schedule, commands.arch, commands.share, commands.memo) if commands is not None else None
    if save(path, key, schedule, kept):
        prune(folder)
    return schedule


def load(path: Path, key: str) -> tuple[Schedule, Any] | None:
    """The schedule stored at `path` for `key` and what was kept with it; None when there is none, it is not ours
    alone, or it is damaged."""
    try:
        if not stores.ours_alone(os.lstat(path.parent)):
            return None
        with open(path, "rb") as f:
            if not stores.ours_alone(os.fstat(f.fileno())):
                return None
            data = f.read()
        stored = pickle.loads(data)                     # a file only we could have written
    except Exception:                                   # missing, unreadable or damaged: make it anew
        return None
    if not (isinstance(stored, tuple) and len(stored) == 3 and stored[0] == key and isinstance(stored[1], Schedule)):
        return None
    try:
        os.utime(path)                                  # recently used: pruned last
    except OSError:
        pass
    return stored[1], stored[2]


def save(path: Path, key: str, schedule: Schedule, kept: Any = None) -> bool:
    """Write (key, schedule, kept) to `path` atomically (stores.save_file); False when it cannot be written. A
    temporary file a killed process left is pruned later."""
    try:
        data = pickle.dumps((key, schedule, kept), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return stores.save_file(path, data)


def prune(folder: Path, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> None:
    """Drop the least recently used stored schedules while there are more than `max_files` or they hold more than
    `max_bytes`, and temporary files older than STALE_S (left by a process killed while it saved)."""
    entries = []
    stale_ns = time.time_ns() - STALE_S * 10**9
    try:
        with os.scandir(folder) as it:
            for e in it:
                if not e.is_file(follow_symlinks=False):
                    continue
                info = e.stat(follow_symlinks=False)
                if e.name.endswith(SUFFIX):
                    entries.append((info.st_mtime_ns, info.st_size, e.path))
                elif e.name.startswith(".") and e.name.endswith(".tmp") and info.st_mtime_ns < stale_ns:
                    Path(e.path).unlink(missing_ok=True)
    except OSError:
        return
    count, total = len(entries), sum(size for _, size, _ in entries)
    entries.sort()
    for _, size, name in entries[:-1]:                  # the newest stays
        if count <= max_files and total <= max_bytes:
            break
        try:
            os.unlink(name)
        except FileNotFoundError:                       # another run pruned it
            pass
        except OSError:
            continue
        count, total = count - 1, total - size
