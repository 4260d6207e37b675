"""Kernels compiled by numba at their first use (numba is imported then, not before), with its on-disk cache where
a folder can hold it and without the cache otherwise; small inputs may run the same code in Python instead."""
from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_mode = threading.local()        # .interpret: True while `interpreted()` is active in this thread


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


def _njit(func: Callable[..., Any], inline: bool = False, leaf: bool = False) -> Any:
    """njit(cache=True); on a read-only install with no writable user cache, a private temporary cache, else none.
    `inline`: compiled into each kernel that calls it (numba's inline="always": no call, its arrays not passed).
    `leaf`: compiled without the runtime's reference counts (numba's _nrt=False), for a helper that allocates
    nothing: a call that passes a dozen arrays then costs a few ns, not the ~300 of their counts going up and down.

    numba raises "cannot cache function ...: no locator available" when neither the source's __pycache__ nor the
    user's cache folder (NUMBA_CACHE_DIR, XDG_CACHE_HOME or ~/.cache) can be written.
    """
    from numba import njit  # noqa: PLC0415 (numba loads at the first compiled call: start-up time)
    from numba.core import config  # noqa: PLC0415
    from numba.core.cpu import CPUTargetOptions  # noqa: PLC0415
    # numba's option for it is private (CPUTargetOptions._nrt): without it a leaf compiles as any kernel does
    leaf = leaf and hasattr(CPUTargetOptions, "_nrt")
    options: dict[str, Any] = {"inline": "always" if inline else "never"} | ({"_nrt": False} if leaf else {})
    try:
        return njit(cache=True, **options)(func)
    except RuntimeError:
        pass
    folder = private_cache_dir()
    if folder is not None:
        config.CACHE_DIR = folder
        try:
            return njit(cache=True, **options)(func)
        except RuntimeError:
            pass
    return njit(**options)(func)


class Kernel:
    """A numba kernel made at its first compiled call: every Kernel of its module is compiled together, on copies
    of the functions whose globals name the other kernels' compiled versions. Inside `interpreted()` a call runs
    the Python function itself (the same code: the same IEEE double arithmetic, so the same results)."""

    def __init__(self, func: Callable[..., Any], inline: bool = False, leaf: bool = False):
        self.py_func = func
        self.inline, self.leaf = inline, leaf
        self.compiled: Any = None
        self.__name__, self.__doc__, self.__module__ = func.__name__, func.__doc__, func.__module__
        self.__wrapped__ = func

    def __call__(self, *args: Any) -> Any:
        if getattr(_mode, "interpret", False):
            return self.py_func(*args)
        if self.compiled is None:
            _compile_module(self.__module__)
        return self.compiled(*args)


def _compile_module(name: str) -> None:
    """Compiled versions of every Kernel in module `name`, resolving each other by name."""
    module = sys.modules[name]
    kernels = {attr: k for attr, k in vars(module).items() if isinstance(k, Kernel)}
    scope = dict(vars(module))
    for attr, k in kernels.items():
        f = k.py_func
        copy = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, f.__closure__)
        copy.__qualname__, copy.__module__, copy.__doc__ = f.__qualname__, f.__module__, f.__doc__
        scope[attr] = _njit(copy, k.inline, k.leaf)
    for attr, k in kernels.items():
        k.compiled = scope[attr]


def is_compiled(kernel: Kernel) -> bool:
    """Whether the kernel's module has been compiled in this process."""
    return kernel.compiled is not None


@contextmanager
def interpreted() -> Iterator[None]:
    """Kernels called in this block (and the kernels they call) run as plain Python."""
    before = getattr(_mode, "interpret", False)
    _mode.interpret = True
    try:
        yield
    finally:
        _mode.interpret = before


def cached_njit(func: Callable[..., Any]) -> Kernel:
    """The function as a Kernel: numba-compiled (njit, cached on disk) at its first call, see Kernel."""
    return Kernel(func)


def inlined_njit(func: Callable[..., Any]) -> Kernel:
    """cached_njit for a helper of other kernels that numba compiles into each of them (a call per candidate and
    row that passes arrays costs more than the work: sim/core/kernels/estimate.py)."""
    return Kernel(func, inline=True)


def leaf_njit(func: Callable[..., Any]) -> Kernel:
    """cached_njit for a helper that allocates nothing (no arrays made, only read and written), called in a kernel's
    inner loop: compiled without reference counts (see _njit's `leaf`), its results the same."""
    return Kernel(func, leaf=True)
