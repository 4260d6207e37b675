"""numba's njit with its on-disk cache where a folder can hold it, and without the cache otherwise."""
from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any

from numba import njit
from numba.core import config


def private_cache_dir() -> str | None:
    """A per-user cache folder under the temporary directory, or None if it is not safely ours.

    numba's cache index is a pickle, so a folder another user could write to would let them run code in ours: the
    folder must belong to us and be writable by us alone.
    """
    path = os.path.join(tempfile.gettempdir(), f"tilesim-numba-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return path


def cached_njit(func: Callable[..., Any]) -> Any:
    """njit(cache=True); on a read-only install with no writable user cache, a private temporary cache, else none.

    numba raises "cannot cache function ...: no locator available" when neither the source's __pycache__ nor the
    user's cache folder (NUMBA_CACHE_DIR, XDG_CACHE_HOME or ~/.cache) can be written.
    """
    try:
        return njit(cache=True)(func)
    except RuntimeError:
        pass
    folder = private_cache_dir()
    if folder is not None:
        config.CACHE_DIR = folder
        try:
            return njit(cache=True)(func)
        except RuntimeError:
            pass
    return njit(func)
