"""The images a filter passes, from the browse table's columns, kept for the next queries
with the same filter (a user tries several words, and pages, with the same filters): the
rows of ``vectors.npy`` they have (ranked by :mod:`.vector_scan`) and the key ids of all of
them (which cut the ranking of the words, :func:`words_cut`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imganalyzer.search.column_filters import FilterColumns
from imganalyzer.search.vector_scan import RowSet, VectorMatrix

# Filters whose images are kept: at most this many, in at most this many bytes.
KEPT = 8
KEPT_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Passing:
    rows: RowSet  # the rows of vectors.npy of the images that pass
    keys: np.ndarray  # the key ids of every image that passes, ascending (uint64)
    images: int  # how many images the browse table holds

    def nbytes(self, vectors: VectorMatrix) -> int:
        return self.rows.nbytes(vectors) + int(self.keys.nbytes)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Whether each key id passes."""
        if not len(self.keys):
            return np.zeros(len(ids), bool)
        at = np.minimum(np.searchsorted(self.keys, ids), len(self.keys) - 1)
        return self.keys[at] == ids


def passing_of(columns: FilterColumns, filters: object) -> Passing | None:
    """What ``filters`` pass (None: a filter only Tantivy answers, see FilterColumns)."""
    mask = columns.mask(filters)
    if mask is None:
        return None
    rows = columns.vector_row[mask]
    keys = np.sort(columns.table.key_id[mask])
    return Passing(RowSet(np.sort(rows[rows >= 0])), keys, columns.table.n)


class PassingCache:
    """The :class:`Passing` of the last few filters, by their ``repr``; thread-safe, and
    each made once (a hybrid search asks for it from two threads at once)."""

    def __init__(self, vectors: VectorMatrix) -> None:
        self.vectors = vectors
        self._kept: OrderedDict[str, tuple[Passing | None, int]] = OrderedDict()
        self._making: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, filters: object, make: Callable[[], Passing | None]) -> Passing | None:
        key = repr(filters)
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                if key in self._kept:
                    self._kept.move_to_end(key)
                    return self._kept[key][0]
            found = make()
            with self._lock:
                self._kept[key] = (found, 0 if found is None else found.nbytes(self.vectors))
                self._making.pop(key, None)
                while len(self._kept) > 1 and (
                    len(self._kept) > KEPT
                    or sum(size for _, size in self._kept.values()) > KEPT_BYTES
                ):
                    self._kept.popitem(last=False)
        return found


def words_depth(passing: Passing, limit: int, most: int) -> int | None:
    """How deep to rank the words alone so that ``limit`` of them likely pass (twice the
    depth the share of passing images asks), or None beyond ``most``."""
    if not len(passing.keys):
        return None
    depth = int(np.ceil(2 * limit * passing.images / len(passing.keys)))
    return max(depth, limit) if depth <= most else None


def words_cut(
    hits: Sequence[tuple[float, int]], depth: int, passing: Passing, limit: int
) -> list[tuple[int, float]] | None:
    """The first ``limit`` passing images of the words' ranking ``hits`` ((score, key id),
    best first, at most ``depth`` of them): Tantivy's ranking of the words with the filters,
    whose scores are the words' (the filters score 0). None where the ranking cannot tell it:
    it was cut at ``depth`` before ``limit`` images passed, or the last one kept ties with
    the cut (an image as good may lie beyond it)."""
    ids = np.fromiter((key for _, key in hits), np.uint64, len(hits))
    kept = np.flatnonzero(passing.holds(ids))[:limit]
    complete = len(hits) < depth  # every image the words match is in ``hits``
    if not complete and (len(kept) < limit or hits[kept[-1]][0] <= hits[-1][0]):
        return None
    return [(int(ids[i]), float(hits[i][0])) for i in kept]
