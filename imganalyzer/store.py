"""The results store: what the jobs leave under a results folder, read and written by
module and shard (or job) in one place (where each file lies:
:class:`~imganalyzer.layout.Layout`; the decode jobs write their declared output files
with :mod:`imganalyzer.results` directly).

- *rows*: ``<module>/<shard>.jsonl``, one row per manifest row, in manifest order (the
  row format: :mod:`imganalyzer.results`);
- *arrays*: ``<module>/<shard>.npy`` of the embedding and faces modules;
- *job summaries* ``<module>/jobs/<job>.json`` and *failure records*
  ``<module>/failed/<job>.json`` of the model jobs (see :mod:`imganalyzer.runtime.jobstatus`);
- the *current-view join*: the rows of a shard's current images. A moved file is current at
  its new path and keeps the rows of the entry it was moved from: its row comes with
  ``path`` set to the current path and the catalogued path kept in ``catalog_path``. Its
  ``size`` and ``mtime_ns`` stay those of the catalogued version, so :func:`row_identity`
  names a file's content the same way before and after a move (faces and people use it to
  keep names across moves).

Every file is written to a temporary name and renamed into place (:mod:`imganalyzer.files`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imganalyzer.files import atomic_open, atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK, FileVersion, read_rows, write_rows

Version = tuple[str, int, int]  # a file version: (path, size, mtime_ns)
VERSION = ("path", "size", "mtime_ns")  # the fields of a row that name its file version
EMBEDDING = "embedding"
DECODE = "decode"  # the decode step: a failed decode job leaves every module short
SHARD_GLOB = "[0-9]" * 6 + "-" + "[0-9]" * 5  # a shard id (catalog.manifests) as a glob
FAILED = "failed"  # a failure record's status while its job has not succeeded since


class CurrentFiles(Protocol):
    """A shard's current files as the catalog lists them: ``catalog.current.CurrentShard``
    (the catalog imports this module, so the type is described here): ``entries`` in
    manifest order, a moved file at its new path; ``catalogued``: the catalogued version of
    each -> its current path."""

    @property
    def id(self) -> str: ...
    @property
    def entries(self) -> Sequence[FileVersion]: ...
    @property
    def catalogued(self) -> Mapping[Version, str]: ...


def row_identity(row: dict[str, Any]) -> Version:
    """The catalogued version a result row describes: (path, size, mtime_ns), the same
    before and after the file is moved."""
    return (row.get("catalog_path", row["path"]), row["size"], row["mtime_ns"])


def check_row_count(path: str | os.PathLike, n_rows: int, n_manifest: int) -> None:
    if n_rows != n_manifest:
        raise ValueError(f"{path}: {n_rows} rows, expected {n_manifest} (manifest rows)")


def file_versions(paths: Iterable[Path]) -> list[Version | None]:
    """(name, size, mtime_ns) of each file, None where it does not exist: a cheap
    fingerprint of what a step reads (result files are only ever replaced, never edited)."""
    versions: list[Version | None] = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            versions.append(None)
            continue
        versions.append((path.name, st.st_size, st.st_mtime_ns))
    return versions


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON record (a job summary, a failure record), or None when it is missing or
    unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class ShardResults:
    """The rows of a shard's current images, module by module, each file read once:
    ``numbered[module]`` = (row number in the result file, row), re-pathed as the module
    docstring says (empty for a module without a result file)."""

    shard: CurrentFiles
    numbered: dict[str, list[tuple[int, dict[str, Any]]]]

    def rows(self, module: str) -> dict[str, dict[str, Any]]:
        """``{current path: row}`` of ``module``'s rows of the shard's current images."""
        return {row["path"]: row for _, row in self.numbered.get(module, ())}

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """The current, successfully embedded images (current paths) and their rows of the
        shard's embedding array: (paths, (n,) int64 row indices)."""
        ok = [(n, row["path"]) for n, row in self.numbered[EMBEDDING] if row["status"] == OK]
        return [path for _, path in ok], np.array([n for n, _ in ok], dtype=np.int64)


@dataclass(frozen=True)
class ResultsStore:
    """The rows, arrays, job summaries and failure records of one results folder."""

    layout: Layout

    # ------------------------------------------------------------ rows and arrays of a shard

    def has_rows(self, module: str, shard: str) -> bool:
        return self.layout.rows(module, shard).is_file()

    def has_results(self, module: str) -> bool:
        """Whether ``module`` has written the rows of any shard."""
        pattern = self.layout.rows(module, SHARD_GLOB).name
        return any(self.layout.module_dir(module).glob(pattern))

    def rows(self, module: str, shard: str) -> list[dict[str, Any]]:
        """Every row of ``module`` for ``shard``, in manifest order."""
        return list(read_rows(self.layout.rows(module, shard)))

    def write_rows(self, module: str, shard: str, rows: Iterable[dict[str, Any]]) -> int:
        """Write the shard's rows atomically; returns how many."""
        return write_rows(self.layout.rows(module, shard), rows)

    def checked_rows(
        self, module: str, shard: str, entries: Sequence[FileVersion], same_files: bool = True
    ) -> list[dict[str, Any]]:
        """The shard's rows, refused (ValueError naming the file) unless there is one per
        manifest entry and, with ``same_files``, each describes its entry's file version."""
        path = self.layout.rows(module, shard)
        rows = list(read_rows(path))
        check_row_count(path, len(rows), len(entries))
        for row, entry in zip(rows, entries, strict=True) if same_files else ():
            if [row.get(k) for k in VERSION] != [entry.path, entry.size, entry.mtime_ns]:
                raise ValueError(f"{path}: row of {row.get('path')!r} is not {entry.path!r}")
        return rows

    def image_rows(self, shard: str, row: int, modules: Iterable[str]) -> dict[str, dict]:
        """``{module: row}`` of the image at manifest row ``row`` of ``shard``, for the
        modules that have a result file there."""
        found = {}
        for module in modules:
            if self.has_rows(module, shard):
                stored = next(islice(read_rows(self.layout.rows(module, shard)), row, None), None)
                if stored is not None:
                    found[module] = stored
        return found

    def has_array(self, module: str, shard: str) -> bool:
        return self.layout.array(module, shard).is_file()

    def array(
        self, module: str, shard: str, n_rows: int | None = None, mmap: bool = False
    ) -> np.ndarray:
        """The shard's array (memory-mapped with ``mmap``); with ``n_rows``, refused unless
        it has that many rows."""
        path = self.layout.array(module, shard)
        array = np.load(path, mmap_mode="r" if mmap else None)
        if n_rows is not None:
            check_row_count(path, len(array), n_rows)
        return array

    def write_array(self, module: str, shard: str, array: np.ndarray) -> None:
        with atomic_open(self.layout.array(module, shard), "wb") as handle:
            np.save(handle, array)

    def versions(
        self, modules: Iterable[str], shard: str, arrays: Iterable[str] = ()
    ) -> list[Version | None]:
        """:func:`file_versions` of the row files of ``modules`` for ``shard``, then of the
        arrays of ``arrays``."""
        files = [self.layout.rows(module, shard) for module in modules]
        return file_versions(files + [self.layout.array(module, shard) for module in arrays])

    def embedding_versions(self, shard: str) -> list[Version | None]:
        """:func:`file_versions` of the shard's embedding array and rows (what its vectors
        come from)."""
        return file_versions(
            [self.layout.array(EMBEDDING, shard), self.layout.rows(EMBEDDING, shard)]
        )

    # ------------------------------------------------------------ the current-view join

    def numbered_rows(self, module: str, shard: CurrentFiles) -> list[tuple[int, dict]]:
        """(row number in the result file, row) of ``module``'s rows that describe a current
        file of ``shard``, a moved file's row re-pathed (empty without a result file)."""
        path = self.layout.rows(module, shard.id)
        if not path.is_file():
            return []
        current = shard.catalogued
        found = []
        for number, row in enumerate(read_rows(path)):
            now = current.get((row["path"], row["size"], row["mtime_ns"]))
            if now is None:
                continue
            if now != row["path"]:
                row = {**row, "path": now, "catalog_path": row["path"]}
            found.append((number, row))
        return found

    def current_rows(self, module: str, shard: CurrentFiles) -> dict[str, dict[str, Any]]:
        """``{current path: row}`` of ``module``'s rows of the shard's current files."""
        return {row["path"]: row for _, row in self.numbered_rows(module, shard)}

    def shard_results(self, shard: CurrentFiles, modules: Iterable[str]) -> ShardResults:
        """The rows of the shard's current files for each of ``modules``, read once."""
        return ShardResults(shard, {m: self.numbered_rows(m, shard) for m in modules})

    def has_vectors(self, shard: str) -> bool:
        """Whether the shard has embeddings (its array and its rows)."""
        return self.has_array(EMBEDDING, shard) and self.has_rows(EMBEDDING, shard)

    def current_vectors(self, shard: CurrentFiles) -> tuple[list[str], np.ndarray] | None:
        """:meth:`ShardResults.vectors` of ``shard``, or None without embeddings."""
        if not self.has_vectors(shard.id):
            return None
        return self.shard_results(shard, [EMBEDDING]).vectors()

    # ------------------------------------------------------------ model jobs

    def summary(self, module: str, job: str) -> dict[str, Any] | None:
        """A model job's summary, None when it is missing or unreadable."""
        return read_record(self.layout.job_summary(module, job))

    def write_summary(self, module: str, job: str, summary: dict[str, Any]) -> None:
        atomic_write_text(
            self.layout.job_summary(module, job), json.dumps(summary, indent=2) + "\n"
        )

    def failure(self, module: str, job: str) -> dict[str, Any] | None:
        """A model job's failure record, None when it never failed."""
        return read_record(self.layout.job_failure(module, job))

    def write_failure(self, module: str, job: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.layout.job_failure(module, job), json.dumps(record, indent=1) + "\n")

    def failures(self, modules: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The records of every job whose last run failed (``status: failed``; a job that has
        since succeeded keeps its record as ``retried``), optionally only of ``modules`` and
        of the decode step, whose jobs serve them all (its tiers and technical rows)."""
        records = (read_record(path) for path in self.layout.failure_records())
        return [
            record
            for record in records
            if record
            and record.get("status") == FAILED
            and (modules is None or record.get("module") in (*modules, DECODE))
        ]
