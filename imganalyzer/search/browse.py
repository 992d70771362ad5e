"""Reading the browse table (``index/browse.npz``, see :mod:`.browse_write`): every current
image in timeline order, newest first. Positions index that order. A page is found by a
binary search on (date, key id) and read as a slice, so it costs the same at any depth."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from imganalyzer.search.browse_write import (
    BROWSE_VERSION,
    EPOCH,
    FAILED,
    FILE_TIME,
    NO_OFFSET,
    NO_THUMBNAIL,
)

__all__ = ["FAILED", "FILE_TIME", "NO_OFFSET", "NO_THUMBNAIL", "BrowseTable", "Cursor"]


@dataclass(frozen=True)
class Cursor:
    """A place in the timeline: just after the image with this date and key id."""

    date: int
    key_id: int

    def text(self) -> str:
        return f"{self.date}_{self.key_id:x}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        date, _, key = text.partition("_")
        try:
            return cls(int(date), int(key, 16))
        except ValueError:
            return None


class BrowseTable:
    """The arrays of ``browse.npz`` in memory (a few tens of bytes per image)."""

    def __init__(self, path: Path) -> None:
        self.arrays = LazyArrays(path)
        if int(self.arrays["version"][0]) != BROWSE_VERSION:
            raise LookupError(f"{path}: an older browse table: run `imganalyzer index`")
        self.date: np.ndarray = self.arrays["date"]
        self.key_id: np.ndarray = self.arrays["key_id"]
        self.flags: np.ndarray = self.arrays["flags"]
        self.n = len(self.date)
        self._neg_date = -self.date  # ascending: binary searches run on it

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------ strings

    def key(self, position: int) -> str:
        return self._string("key", position)

    def _string(self, name: str, index: int) -> str:
        at = self.arrays[f"{name}_at"]
        blob = self.arrays[f"{name}_blob"][at[index] : at[index + 1]]
        return blob.tobytes().decode("utf-8", "surrogateescape")

    @functools.cache  # noqa: B019 - one table per index version, dropped with it
    def table(self, name: str) -> list[str]:
        """The distinct values of a coded column (or the label names), by code."""
        return [self._string(name, i) for i in range(len(self.arrays[f"{name}_at"]) - 1)]

    def codes(self, name: str) -> np.ndarray:
        return self.arrays[f"{name}_code"]

    def value(self, name: str, position: int) -> str | None:
        code = int(self.codes(name)[position])
        return None if code < 0 else self.table(name)[code]

    def code_of(self, name: str, value: str) -> int | None:
        found = self._code_index(name).get(value)
        return found

    @functools.cache  # noqa: B019
    def _code_index(self, name: str) -> dict[str, int]:
        return {value: code for code, value in enumerate(self.table(name))}

    def column(self, name: str) -> np.ndarray:
        return self.arrays[name]

    # ------------------------------------------------------------ positions

    @functools.cached_property
    def _by_key_id(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.key_id, kind="stable")
        return self.key_id[order], order

    def positions_of(self, key_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions of the images with these key ids (unknown ids left out), ascending."""
        ids, order = self._by_key_id
        wanted = np.asarray(key_ids, dtype=np.uint64)
        if not len(ids) or not len(wanted):
            return np.empty(0, np.int64)
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        return np.unique(order[at[ids[at] == wanted]]).astype(np.int64)

    def position_of(self, key_id: int) -> int | None:
        found = self.positions_of([key_id])
        return int(found[0]) if len(found) else None

    def after(self, cursor: Cursor) -> int:
        """The first position after ``cursor`` in timeline order (O(log n))."""
        neg = -cursor.date
        lo = int(np.searchsorted(self._neg_date, neg, "left"))
        hi = int(np.searchsorted(self._neg_date, neg, "right"))
        return lo + int(np.searchsorted(self.key_id[lo:hi], np.uint64(cursor.key_id), "right"))

    def cursor(self, position: int) -> Cursor:
        return Cursor(int(self.date[position]), int(self.key_id[position]))

    def before_date(self, when: datetime) -> int:
        """The first position dated before ``when`` (the newest image older than it)."""
        return int(np.searchsorted(self._neg_date, -seconds(when), "left"))

    @functools.cached_property
    def months(self) -> list[tuple[int, int, int, int]]:
        """(year, month, images, first position) of every month with images, newest first."""
        days = self.date // 86400
        dates = (np.datetime64("1970-01-01") + days.astype("timedelta64[D]")).astype("M8[M]")
        codes = dates.astype(np.int64)  # months since 1970-01
        if not len(codes):
            return []
        change = np.flatnonzero(np.diff(codes)) + 1
        starts = np.concatenate([[0], change])
        counts = np.diff(np.concatenate([starts, [len(codes)]]))
        return [
            (int(codes[s]) // 12 + 1970, int(codes[s]) % 12 + 1, int(c), int(s))
            for s, c in zip(starts, counts, strict=True)
        ]


class LazyArrays:
    """The arrays of an ``.npz`` file, each read on first use (a search that filters by two
    columns reads two columns, not the whole table)."""

    def __init__(self, path: Path) -> None:
        self._file = np.load(path)
        self._lock = threading.Lock()
        self._loaded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        found = self._loaded.get(name)
        if found is None:
            with self._lock:
                found = self._loaded.get(name)
                if found is None:
                    found = self._loaded[name] = self._file[name]
        return found


def seconds(when: datetime) -> int:
    """A naive wall-clock time as the table stores it."""
    return int((when - EPOCH).total_seconds())


def wall_clock(value: int) -> datetime:
    return EPOCH + timedelta(seconds=int(value))
