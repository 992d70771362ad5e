"""The current state of the library, shard by shard, and the module results of those images.

The index and the export read only current entries (the newest catalogued version of each
path whose file still has that size and mtime): superseded, removed and outdated entries are
left out. Per-shard result files hold one row per manifest entry, in manifest order.

A moved file is current at its new path and keeps the rows of the entry it was moved from:
:meth:`CurrentView.rows` gives them with ``path`` set to the current path and the catalogued
path kept in ``catalog_path``. Their ``size`` and ``mtime_ns`` stay those of the catalogued
version, so :func:`row_identity` (catalogued path, size, mtime) names a file's content the
same way before and after a move: faces and people use it to keep names across moves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog.manifests import Catalog, Entry, LibraryState
from imganalyzer.results import OK, read_rows


@dataclass(frozen=True)
class CurrentShard:
    """The current entries of one shard, in manifest order: each file's path and its
    version on disk (for a moved file, its new path)."""

    shard: str
    entries: list[Entry]


def current_shards(results: str | os.PathLike, library: str | os.PathLike) -> CurrentView:
    """Stat the library and group its current entries by shard (stat only, no results read)."""
    results = Path(results)
    state = Catalog(results / "catalog").state(library, exclude=[results])
    return CurrentView(results, state)


def row_identity(row: dict[str, Any]) -> tuple[str, int, int]:
    """The catalogued version a result row describes: (path, size, mtime_ns), the same
    before and after the file is moved."""
    return (row.get("catalog_path", row["path"]), row["size"], row["mtime_ns"])


class CurrentView:
    """The library's current entries and where their per-shard results lie."""

    def __init__(self, results: Path, state: LibraryState) -> None:
        self.results = results
        self.state = state
        by_shard: dict[str, list[Entry]] = {}
        # per shard: catalogued (path, size, mtime_ns) -> the current entry it backs
        self._backs: dict[str, dict[tuple[str, int, int], Entry]] = {}
        for path, (shard, catalogued) in state.current.items():
            move = state.moved.get(path)
            entry = move.entry if move is not None else catalogued
            by_shard.setdefault(shard, []).append(entry)
            key = (catalogued.path, catalogued.size, catalogued.mtime_ns)
            self._backs.setdefault(shard, {})[key] = entry
        self.shards = {s: CurrentShard(s, by_shard[s]) for s in sorted(by_shard)}

    def result_file(self, module: str, shard: str, suffix: str = ".jsonl") -> Path:
        return self.results / module / f"{shard}{suffix}"

    def moved(self, shard: str) -> dict[str, str]:
        """{current path: catalogued path} of the moved files of ``shard``."""
        return {
            entry.path: key[0]
            for key, entry in self._backs.get(shard, {}).items()
            if entry.path != key[0]
        }

    def numbered_rows(self, module: str, shard: str) -> list[tuple[int, dict[str, Any]]]:
        """(row number in the result file, row) of the module's rows that describe a current
        entry of ``shard``, paths rewritten as in :meth:`rows` (empty without a result file)."""
        path = self.result_file(module, shard)
        if not path.is_file():
            return []
        backs = self._backs.get(shard, {})
        found = []
        for number, row in enumerate(read_rows(path)):
            entry = backs.get((row["path"], row["size"], row["mtime_ns"]))
            if entry is None:
                continue
            if entry.path != row["path"]:
                row = {**row, "path": entry.path, "catalog_path": row["path"]}
            found.append((number, row))
        return found

    def rows(self, module: str, shard: str) -> dict[str, dict[str, Any]]:
        """``{current path: row}`` of the module's rows that describe a current entry of
        ``shard`` (empty when the module has no result file for the shard). A moved file's
        row has its current ``path`` and its catalogued one in ``catalog_path``."""
        return {row["path"]: row for _, row in self.numbered_rows(module, shard)}

    def vectors(self, shard: str) -> tuple[list[str], np.ndarray] | None:
        """The current, successfully embedded images of ``shard`` (current paths) and their
        rows of ``embedding/<shard>.npy``: (paths, (n,) row indices), or None without
        embeddings."""
        npy = self.result_file("embedding", shard, ".npy")
        if not (npy.is_file() and self.result_file("embedding", shard).is_file()):
            return None
        ok = [
            (n, r["path"]) for n, r in self.numbered_rows("embedding", shard) if r["status"] == OK
        ]
        return [p for _, p in ok], np.array([n for n, _ in ok], dtype=np.int64)


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
