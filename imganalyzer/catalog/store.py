"""The append-only catalog of a photo library.

A *version* of a file is (path relative to the library root, size, mtime_ns). The scan
only stats files: no image content is read. Versions not yet catalogued form a new
*ingest batch*, cut in path order into shards of at most ``shard_size`` images. Each
shard manifest (``<catalog>/shards/<batch>-<index>.tsv``) is written once, atomically,
and never rewritten. The current state of the library is derived: each file on disk is
current through the catalogued entry of its version (path, size, mtime), else through a
recorded move. Superseded and deleted entries stay in their manifests and are filtered
out by readers.

Moved files: see :mod:`imganalyzer.catalog.moves`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imganalyzer.catalog.manifests import (
    SHARD_ID_PATTERN,
    Entry,
    Move,
    read_manifest,
    read_moves,
    version_key,
    write_manifest,
    write_moves,
)
from imganalyzer.catalog.moves import find_moves
from imganalyzer.catalog.retries import files_to_retry, formats_checked, record_formats_checked
from imganalyzer.catalog.scan import scan_library
from imganalyzer.catalog.state import LibraryState, Records, derive_state
from imganalyzer.formats import FORMATS_VERSION
from imganalyzer.layout import Layout

log = logging.getLogger(__name__)

_SHARD_FILE = re.compile(rf"^({SHARD_ID_PATTERN})\.tsv$")
_MOVES_FILE = re.compile(r"^(\d{6})\.tsv$")


@dataclass
class IngestReport:
    scanned: int
    new_entries: int  # new or changed files, the retried ones not counted
    new_shards: list[str] = field(default_factory=list)
    moved: int = 0  # files found at a new path, their results carried over
    removed: int = 0  # catalogued files no longer in the library (not moved)
    retried: int = 0  # unchanged files an older decoder refused and this one reads

    def summary(self) -> str:
        moved = f", {self.moved} moved (results kept)" if self.moved else ""
        moved += f", {self.removed} removed" if self.removed else ""
        if not self.new_shards:
            return f"catalog: {self.scanned} images scanned{moved}, nothing new"
        what = f"{self.new_entries} new or changed"
        if self.retried:
            what += f", {self.retried} in newly supported formats"
        return (
            f"catalog: {self.scanned} images scanned{moved}, {what} "
            f"in {len(self.new_shards)} new shard(s) {self.new_shards[0]}..{self.new_shards[-1]}"
        )


@dataclass
class IngestPlan:
    """A planned ingest batch: new shard manifests and moves, held in memory until a real
    run writes them (``write_moves`` first, then ``write_shard`` per shard, each written
    once, atomically). ``batch`` is the batch number reserved when planning:
    ``is_current`` says whether another run has written that batch since."""

    catalog: Catalog
    batch: int
    shards: dict[str, list[Entry]]  # shard id -> its entries, in path order
    moves: list[Move]
    report: IngestReport
    on_disk: dict = field(default_factory=dict, repr=False)  # the scan: {path: version}
    records: Records | None = field(default=None, repr=False)  # the catalog when planned
    # The formats version to record as checked once this plan is written: set when the
    # plan looked for files to retry (catalog.retries) and found none; else None.
    formats_checked: int | None = None

    def library_state(self) -> LibraryState:
        """The library's state once this plan is written (computed in memory from the
        plan's one scan): what every global step of the run works from."""
        records = self.records or self.catalog._load()
        entries = list(records.entries)
        shard_of = dict(records.shard_of)
        for shard, members in self.shards.items():  # the newest batch
            for entry in members:
                entries.append((shard, entry))
                shard_of[version_key(entry)] = shard
        planned = Records(entries, list(self.moves) + records.moves, shard_of)
        return derive_state(planned, self.on_disk)

    @property
    def shard_pattern(self) -> str:
        """A regular expression matching exactly the ids of this batch's shards."""
        return rf"{self.batch:06d}-\d{{5}}" if self.shards else r"(?!)"

    def is_current(self) -> bool:
        return self.catalog._next_batch() == self.batch

    def write_moves(self) -> None:
        if self.moves:
            write_moves(self.catalog.layout.moves_batch(f"{self.batch:06d}"), self.moves)

    def record_formats_checked(self) -> None:
        """Record that no file awaits a retry under this formats version (when the plan
        found none), so that later plans do not look again. A real run calls it."""
        if self.formats_checked is not None:
            record_formats_checked(self.catalog.layout, self.formats_checked)

    def write_shard(self, shard: str) -> Path:
        """Write one planned manifest (a shard not in this plan is an error: manifests are
        immutable and never rewritten)."""
        if shard not in self.shards:
            raise KeyError(f"shard {shard} is not part of this run's catalog batch")
        path = self.catalog.manifest_path(shard)
        write_manifest(path, self.shards[shard])
        return path

    def stage(self) -> None:
        """Write every planned manifest into ``staged/`` (from where the workflow's
        catalog_shard jobs move them into ``shards/``); leftovers of an earlier run that
        was stopped are removed."""
        staged = self.catalog.staged_dir
        if staged.is_dir():
            for leftover in staged.glob("*.tsv"):
                leftover.unlink(missing_ok=True)
        for shard, entries in self.shards.items():
            write_manifest(self.catalog.layout.staged_manifest(shard), entries)


class Catalog:
    """The catalog folder of a results folder: ``shards/`` of immutable manifests,
    ``moves/`` and a lock file (where each lies: :class:`~imganalyzer.layout.Layout`)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.root = layout.catalog
        self.shards_dir = layout.manifests
        self.moves_dir = layout.moves
        self.staged_dir = layout.staged  # planned manifests of a starting run

    def manifest_path(self, shard: str) -> Path:
        return self.layout.manifest(shard)

    def shard_ids(self) -> list[str]:
        """All shard ids in ingest order (the order in which they were created)."""
        return _matching_ids(self.shards_dir, _SHARD_FILE)

    def read(self, shard: str) -> list[Entry]:
        return read_manifest(self.manifest_path(shard))

    def entries(self) -> Iterator[tuple[str, Entry]]:
        """Every (shard, entry) ever catalogued, oldest shard first."""
        for shard in self.shard_ids():
            for entry in read_manifest(self.manifest_path(shard)):
                yield shard, entry

    def newest_entries(self) -> dict[str, tuple[str, Entry]]:
        """The newest catalogued (shard, entry) of every path."""
        newest: dict[str, tuple[str, Entry]] = {}
        for shard, entry in self.entries():
            newest[entry.path] = (shard, entry)
        return newest

    def moves(self) -> list[Move]:
        """Every recorded move, newest batch first."""
        batches = _matching_ids(self.moves_dir, _MOVES_FILE)
        return [m for b in reversed(batches) for m in read_moves(self.layout.moves_batch(b))]

    def ingest(
        self,
        library: str | os.PathLike,
        shard_size: int,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> IngestReport:
        """Scan the library; record moved files and write new shards for the other versions
        not yet catalogued (the technical rows of decoded images hold their fingerprints)."""
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        with self.locked():
            plan = self.plan(library, shard_size, exclude)
            plan.write_moves()
            for shard in plan.shards:
                plan.write_shard(shard)
            plan.record_formats_checked()
        return plan.report

    def plan(
        self,
        library: str | os.PathLike,
        shard_size: int,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> IngestPlan:
        """What ``ingest`` would write, computed in memory: nothing is written (a dry-run or
        a lint plans the same batch a real run writes). See ``IngestPlan``. Files an older
        decoder refused and this one reads are planned again (``catalog.retries``)."""
        on_disk = scan_library(library, exclude)
        records = self._load()
        catalogued, moved = records.resolve(on_disk)
        new = [Entry(p, *on_disk[p]) for p in sorted(on_disk.keys() - catalogued)]
        sizes = {e.size for e in new}
        vanished = _vanished(records, on_disk, moved, sizes) if new else []
        moves = find_moves(new, vanished, records.shard_of, self.layout, Path(library))
        moved_paths = {m.entry.path for m in moves}
        changed = [e for e in new if e.path not in moved_paths]
        retried, checked = self._retries(records, on_disk, moved, Path(library))
        planned = sorted(changed + retried, key=lambda e: e.path)
        batch = self._next_batch()
        count = -(-len(planned) // shard_size)
        shards = {
            f"{batch:06d}-{index:05d}": planned[index * shard_size : (index + 1) * shard_size]
            for index in range(count)
        }
        moved |= {m.entry.path: m for m in moves}
        report = IngestReport(
            scanned=len(on_disk),
            new_entries=len(changed),
            new_shards=list(shards),
            moved=len(moves),
            removed=_removed_count(records, on_disk, moved),
            retried=len(retried),
        )
        return IngestPlan(self, batch, shards, moves, report, on_disk, records, checked)

    def _retries(
        self, records: Records, on_disk: dict, moved: dict[str, Move], library: Path
    ) -> tuple[list[Entry], int | None]:
        """(the files to catalogue again for newly supported formats, the formats version
        to record as checked: when none awaits a retry and it is not recorded yet)."""
        if formats_checked(self.layout) >= FORMATS_VERSION:
            return [], None
        retried = files_to_retry(records, on_disk, moved, self.layout, library)
        return retried, None if retried else FORMATS_VERSION

    def state(self, library: str | os.PathLike, exclude: Iterable = ()) -> LibraryState:
        """Compare the catalog with the library on disk (stat only). A library that is not
        mounted is taken as it was last catalogued (see :meth:`last_catalogued`)."""
        passed_over: Counter = Counter()
        records = self._load()
        if Path(library).is_dir():
            on_disk = scan_library(library, exclude, passed_over)
        else:
            log.warning("library %s not found: using its last catalogued state", library)
            on_disk = self.last_catalogued(records)
        return derive_state(records, on_disk, dict(passed_over))

    def last_catalogued(self, records: Records | None = None) -> dict:
        """``{path: (size, mtime_ns)}`` of the library as the catalog last saw it: the
        newest version of every path, recorded moves applied (files removed since the last
        run are not known here)."""
        records = records or self._load()
        files = {entry.path: entry.version for _, entry in records.entries}
        for move in reversed(records.moves):  # oldest batch first
            if files.get(move.source.path) == move.source.version:
                del files[move.source.path]
            files[move.entry.path] = move.entry.version
        return files

    def _load(self) -> Records:
        entries = list(self.entries())
        shard_of = {version_key(entry): shard for shard, entry in entries}
        return Records(entries, self.moves(), shard_of)

    def reserve_batch(self, n_entries: int, shard_size: int) -> list[str]:
        """Ids of the shards a new batch of ``n_entries`` needs (call under ``locked()``)."""
        batch = self._next_batch()
        count = -(-n_entries // shard_size)
        return [f"{batch:06d}-{index:05d}" for index in range(count)]

    def _next_batch(self) -> int:
        """One past the newest batch of shards or moves."""
        shards = [int(s.split("-")[0]) for s in self.shard_ids()]
        moves = [int(b) for b in _matching_ids(self.moves_dir, _MOVES_FILE)]
        return max(shards + moves, default=0) + 1

    def locked(self) -> _FileLock:
        """An exclusive lock so that two runs never write the same batch."""
        return _FileLock(self.layout.catalog_lock)


def _matching_ids(folder: Path, pattern: re.Pattern) -> list[str]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        return sorted(m.group(1) for e in it if (m := pattern.match(e.name)))


def _vanished(
    records: Records, on_disk: dict, moved: dict[str, Move], sizes: set[int]
) -> list[Entry]:
    """Catalogued entries of one of ``sizes`` whose content is at no path on disk: not
    current at their own path and not the source of a move in effect."""
    used = {version_key(m.source) for m in moved.values()}
    found = []
    for shard, entry in records.entries:
        if entry.size in sizes:  # cheap first: new files are usually few
            key = version_key(entry)
            newest, direct = records.shard_of[key] == shard, records.is_direct(entry, on_disk)
            if newest and key not in used and not direct:
                found.append(entry)
    return found


def _removed_count(records: Records, on_disk: dict, moved: dict[str, Move]) -> int:
    gone = {entry.path for _, entry in records.entries}.difference(on_disk)
    return len(gone.difference(m.source.path for m in moved.values()))


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.handle = open(self.path, "a")  # noqa: SIM115 (held until __exit__)
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
