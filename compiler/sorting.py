"""np.lexsort, faster where the primary key has few ties (the mapping search's rankings): the same permutation."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.int64]
Keys = Sequence[npt.NDArray[np.generic]]


def lexsort(keys: Keys) -> Array:
    """np.lexsort(keys) for 1-D keys (the last the primary): a stable sort by the primary key, then np.lexsort of
    the elements whose primary key ties (when they are few), each tied group in its place; stable, as np.lexsort."""
    primary = np.asarray(keys[-1])
    order: Array = np.argsort(primary, kind="stable")
    ranked = primary[order]
    if primary.dtype.kind == "f" and ranked.size and np.isnan(ranked[-1]):
        return np.lexsort(keys)                    # NaNs tie with each other there: left to numpy
    same = ranked[1:] == ranked[:-1]
    if len(keys) == 1 or not same.any():
        return order
    tied = np.zeros(ranked.shape[0], dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    at = np.flatnonzero(tied)
    if 2 * at.size > ranked.shape[0]:              # mostly ties: numpy's own is no slower
        return np.lexsort(keys)
    group = np.cumsum(np.concatenate(([True], ~same)))[at]      # tied groups, in sorted order
    members = order[at]
    order[at] = members[np.lexsort((*(np.asarray(k)[members] for k in keys[:-1]), group))]
    return order


def then_by(order: Array, key: npt.NDArray[np.generic]) -> Array:
    """The permutation `order` stably sorted by key[order]: np.lexsort((*keys, key)) when `order` is
    np.lexsort(keys) (ties in `key` keep the order of `keys`)."""
    return order[np.argsort(key[order], kind="stable")]
