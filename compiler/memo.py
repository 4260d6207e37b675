"""Memos kept within a size: the mapping search's rankings, build_program's tile commands, an evaluator's
pipelines (issue 21: peak memory bounded)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, MutableMapping, ValuesView
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def drop_oldest(kept: MutableMapping[K, V], size: Callable[[V], int], max_size: float,
                max_len: int | None = None) -> None:
    """Drop a memo's oldest entries (first in its order: insertion, or an OrderedDict's move_to_end) while their
    sizes sum past `max_size` or it holds more than `max_len`; the newest always stays."""
    total = sum(size(v) for v in kept.values())
    while len(kept) > 1 and (total > max_size or (max_len is not None and len(kept) > max_len)):
        total -= size(kept.pop(next(iter(kept))))


class SizedMemo(Generic[K, V]):
    """A memo whose entries' sizes are taken when they are put and summed as they come and go, so that dropping the
    least recently used (trim) does not sum them all again (the mapping search's rankings: ~0.5 ms a search in a
    sweep, where hundreds are kept). Not locked: the caller holds its lock."""

    def __init__(self, size: Callable[[V], int]):
        self.size = size
        self.entries: OrderedDict[K, V] = OrderedDict()     # least recently used first
        self.sizes: dict[K, int] = {}
        self.total = 0

    def get(self, key: K) -> V | None:
        """The entry, now the most recently used; None when missing."""
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Put (or put again, after it grew) an entry, as the most recently used."""
        self.total += (size := self.size(value)) - self.sizes.get(key, 0)
        self.sizes[key] = size
        self.entries[key] = value
        self.entries.move_to_end(key)

    def trim(self, max_size: float) -> None:
        """Drop the oldest entries while the sizes sum past `max_size`; the newest always stays."""
        while len(self.entries) > 1 and self.total > max_size:
            key, _ = self.entries.popitem(last=False)
            self.total -= self.sizes.pop(key)

    def clear(self) -> None:
        """Drop every entry."""
        self.entries.clear()
        self.sizes.clear()
        self.total = 0

    def values(self) -> ValuesView[V]:
        """The entries, least recently used first."""
        return self.entries.values()

    def __len__(self) -> int:
        return len(self.entries)
