"""What the on-disk stores kept between runs share (serve_store.py's step-cost grids, schedule_store.py's schedules):
the folder, the fingerprint of the source a stored result depends on, and keys that hash inputs by value.

The folder is $TILESIM_CACHE_DIR, else $XDG_CACHE_HOME/tilesim, else ~/.cache/tilesim (one subfolder per store),
or, where that cannot be written, a private per-user temporary folder (as the numba cache falls back,
core/kernels/jit.py); with neither, nothing is stored.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib
import importlib.metadata
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tilesim.core.kernels.jit import private_cache_dir


@functools.cache
def source_fingerprint(packages: tuple[str, ...], modules: tuple[str, ...] = ()) -> str:
    """The installed tilesim version and a hash of the source files of `packages` (with one level of subpackages)
    and `modules`: a stored result is read only by the source that stored it."""
    try:
        version = importlib.metadata.version("tilesim")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    h = hashlib.sha256(version.encode())
    files = []
    for name in packages:
        root = Path(importlib.import_module(name).__file__ or "").parent
        files += [(f"{name}/{f.relative_to(root)}", f) for f in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py"))]
    files += [(name, Path(importlib.import_module(name).__file__ or "")) for name in modules]
    for label, f in files:
        h.update(label.encode())
        h.update(f.read_bytes())
    return f"{version}-{h.hexdigest()[:16]}"


def user_cache_dir() -> Path:
    """$TILESIM_CACHE_DIR, else $XDG_CACHE_HOME/tilesim, else ~/.cache/tilesim."""
    if os.environ.get("TILESIM_CACHE_DIR"):
        return Path(os.environ["TILESIM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tilesim"


def writable_folder(name: str, mode: int = 0o777) -> Path | None:
    """A store's folder `name` (made with `mode` if new): under the user's cache folder if it can be made and
    written, else under a private temporary folder of ours (private_cache_dir), else None."""
    for base in (user_cache_dir(), None):
        if base is None:
            tmp = private_cache_dir()
            if tmp is None:
                return None
            base = Path(tmp)
        folder = base / name
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=mode, exist_ok=True)
            if os.access(folder, os.W_OK | os.X_OK):
                return folder
        except OSError:
            continue
    return None


def save_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically (a temporary file beside it, mode 0600, renamed over it): False when it
    cannot be written. The temporary file goes whatever happens, an interrupt included."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)           # nothing there once it was renamed


def ours_alone(info: os.stat_result) -> bool:
    """True if a file or folder (its lstat) belongs to us and no one else may write it: a pickle read from it runs
    code, so it must be one that only we could have written."""
    return info.st_uid == os.getuid() and not info.st_mode & 0o022 and not stat.S_ISLNK(info.st_mode)


def canonical(value: Any) -> Any:
    """`value` as nested tuples of plain values, equal for equal inputs in any process: dataclasses by their
    fields, other objects by their attributes (cached properties left out: they are derived), mappings in their
    order, sets sorted, numpy arrays by dtype, shape and bytes. TypeError for anything else (a function, say)."""
    return _canonical(value, {})


_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})


def _canonical(value: Any, seen: dict[int, tuple[Any, Any]]) -> Any:
    """canonical, with each object met before in this value (by identity: a graph's ops share their tensors) worked
    out once; `seen` holds the object with its form, so that its id stays its own while the call lasts."""
    if type(value) in _PLAIN:
        return value
    if id(value) in seen:
        return seen[id(value)][1]
    out = _canonical_new(value, seen)
    seen[id(value)] = (value, out)
    return out


def _canonical_new(value: Any, seen: dict[int, tuple[Any, Any]]) -> Any:
    """canonical of an object not met before (_canonical)."""
    if isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    kind = _kind(type(value))
    if isinstance(value, enum.Enum):
        return kind, value.name
    if isinstance(value, (tuple, list)):
        return kind, tuple(_canonical(v, seen) for v in value)
    if isinstance(value, Mapping):
        return kind, tuple((_canonical(k, seen), _canonical(v, seen)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return kind, tuple(sorted((_canonical(v, seen) for v in value), key=repr))
    if isinstance(value, np.ndarray):
        return kind, value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, np.generic):
        return kind, value.dtype.str, value.tobytes()
    names = _field_names(type(value))
    if names is not None:
        return kind, tuple((n, _canonical(getattr(value, n), seen)) for n in names)
    if hasattr(value, "__dict__") and not callable(value):
        derived = _derived(type(value))
        return kind, tuple((n, _canonical(v, seen)) for n, v in vars(value).items() if n not in derived)
    raise TypeError(f"no canonical form for {kind}")


@functools.cache
def _kind(cls: type) -> str:
    """A class's module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names, None for other classes."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


@functools.cache
def _derived(cls: type) -> frozenset[str]:
    """The names of a class's cached properties (values derived from the others)."""
    return frozenset(n for k in cls.__mro__ for n, a in vars(k).items() if isinstance(a, functools.cached_property))


def value_key(*parts: Any) -> str:
    """A hash of the parts by value: of their canonical form's repr (plain values only, so equal values give equal
    text, which pickle's object-identity memo would not); TypeError where a part has no canonical form."""
    return hashlib.sha256(repr(canonical(parts)).encode()).hexdigest()[:32]
