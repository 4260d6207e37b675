"""Output files: regular files are written whole or not at all; devices, FIFOs and symlinks are written through.

A regular file is written to a temporary file in its folder, then renamed over the target (readers see the old file
or the complete new one). A symlink is followed and its target written the same way (the link stays). A device node
or FIFO (/dev/null, /dev/stdout, a named pipe) is opened and written in place: renaming over it would replace the
node with a plain file. An output that is one of the command's inputs is refused.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from tilesim.arch.errors import InputError


def output_target(path: str | Path, inputs: tuple[str | Path, ...] = (), flag: str = "-o") -> Path:
    """The file an output at `path` will write: the symlink's target resolved; InputError for a folder, a missing
    folder or one of the command's inputs."""
    target = written_through(path)
    if target.is_dir():
        raise InputError(f"{flag}: '{path}' is a directory; give a file name")
    if not target.parent.is_dir():
        raise InputError(f"{flag}: directory '{target.parent}' does not exist")
    if target.exists():
        for source in inputs:
            if Path(source).exists() and os.path.samefile(source, target):
                raise InputError(f"{flag}: '{path}' is an input of this command; writing it would destroy it")
    return target


def is_regular_or_new(target: Path) -> bool:
    """True if `target` is a regular file or does not exist yet (it is then written through a temporary file)."""
    try:
        return stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        return True


def written_through(path: str | Path) -> Path:
    """The file a write to `path` lands in: a symlink's target, else `path` itself."""
    given = Path(path)
    return given.resolve() if given.is_symlink() else given


def write_in_place(target: Path, content: str | bytes) -> None:
    """Open and write a device node or FIFO as it is."""
    if isinstance(content, bytes):
        with open(target, "wb") as f:
            f.write(content)
    else:
        with open(target, "w", newline="") as f:
            f.write(content)


def stage(target: Path, content: str | bytes) -> str:
    """Write `content` to a new temporary file beside `target` (mode as for any new file) and return its path."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(content, bytes) else os.fdopen(fd, "w", newline="")) as f:
            f.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; an output is an ordinary file
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: str | Path, content: str | bytes) -> None:
    """Write text or bytes to `path`: a regular file whole or not at all, a device or FIFO in place."""
    write_all([(Path(path), content)])


def write_all(outputs: list[tuple[Path, str | bytes]]) -> None:
    """Write the outputs of one command so that either every regular file appears or none does.

    Each regular file is first written to a temporary file beside it; only when all are written are they renamed
    into place (a rename within a folder needs no space). Devices and FIFOs are written in place, last.
    """
    targets = [(written_through(path), content) for path, content in outputs]
    staged: list[tuple[str, Path]] = []
    try:
        for target, content in targets:
            if is_regular_or_new(target):
                staged.append((stage(target, content), target))
        for tmp, target in staged:
            os.replace(tmp, target)
        staged = []
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    for target, content in targets:
        if not is_regular_or_new(target):
            write_in_place(target, content)
