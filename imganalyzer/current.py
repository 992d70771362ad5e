"""The current state of the library, shard by shard, and the module results of those images.

The index and the export read only current entries (the newest catalogued version of each
path whose file still has that size and mtime): superseded, removed and outdated entries are
left out. Per-shard result files hold one row per manifest entry, in manifest order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog import Catalog, Entry, LibraryState
from imganalyzer.results import OK, read_rows


@dataclass(frozen=True)
class CurrentShard:
    """The current entries of one shard, in manifest order."""

    shard: str
    entries: list[Entry]


def current_shards(results: str | os.PathLike, library: str | os.PathLike) -> CurrentView:
    """Stat the library and group its current entries by shard (stat only, no results read)."""
    results = Path(results)
    state = Catalog(results / "catalog").state(library, exclude=[results])
    return CurrentView(results, state)


class CurrentView:
    """The library's current entries and where their per-shard results lie."""

    def __init__(self, results: Path, state: LibraryState) -> None:
        self.results = results
        self.state = state
        by_shard: dict[str, list[Entry]] = {}
        for shard, entry in state.current.values():
            by_shard.setdefault(shard, []).append(entry)
        self.shards = {s: CurrentShard(s, by_shard[s]) for s in sorted(by_shard)}

    def result_file(self, module: str, shard: str, suffix: str = ".jsonl") -> Path:
        return self.results / module / f"{shard}{suffix}"

    def rows(self, module: str, shard: str) -> dict[str, dict[str, Any]]:
        """``{path: row}`` of the module's rows that describe a current entry of ``shard``
        (empty when the module has no result file for the shard)."""
        path = self.result_file(module, shard)
        if not path.is_file():
            return {}
        current = {e.path: e.version for e in self.shards[shard].entries}
        return {
            row["path"]: row
            for row in read_rows(path)
            if current.get(row["path"]) == (row["size"], row["mtime_ns"])
        }

    def vectors(self, shard: str) -> tuple[list[str], np.ndarray] | None:
        """The current, successfully embedded images of ``shard`` and their rows of
        ``embedding/<shard>.npy``: (paths, (n,) row indices), or None without embeddings."""
        npy, jsonl = (
            self.result_file("embedding", shard, ".npy"),
            self.result_file("embedding", shard),
        )
        if not (npy.is_file() and jsonl.is_file()):
            return None
        current = {e.path: e.version for e in self.shards[shard].entries}
        paths, rows = [], []
        for index, row in enumerate(read_rows(jsonl)):
            if row["status"] == OK and current.get(row["path"]) == (row["size"], row["mtime_ns"]):
                paths.append(row["path"])
                rows.append(index)
        return paths, np.array(rows, dtype=np.int64)


def file_versions(paths: Iterable[Path]) -> list[tuple[str, int, int] | None]:
    """(name, size, mtime_ns) of each file, None where it does not exist: a cheap
    fingerprint of a job's inputs (result files are only ever replaced, never edited)."""
    versions = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            versions.append(None)
            continue
        versions.append((path.name, st.st_size, st.st_mtime_ns))
    return versions
