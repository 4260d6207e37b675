"""Memos kept within a size: the mapping search's rankings, build_program's tile commands, an evaluator's
pipelines (issue 21: peak memory bounded)."""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def drop_oldest(kept: MutableMapping[K, V], size: Callable[[V], int], max_size: float,
                max_len: int | None = None) -> None:
    """Drop a memo's oldest entries (first in its order: insertion, or an OrderedDict's move_to_end) while their
    sizes sum past `max_size` or it holds more than `max_len`; the newest always stays."""
    total = sum(size(v) for v in kept.values())
    while len(kept) > 1 and (total > max_size or (max_len is not None and len(kept) > max_len)):
        total -= size(kept.pop(next(iter(kept))))
