"""The append-only catalog of a photo library.

A *version* of a file is (path relative to the library root, size, mtime_ns). The scan
only stats files: no image content is read. Versions not yet catalogued form a new
*ingest batch*, cut in path order into shards of at most ``shard_size`` images. Each
shard manifest (``<catalog>/shards/<batch>-<index>.tsv``) is written once, atomically,
and never rewritten. The current state of the library is derived: each file on disk is
current through the catalogued entry of its version (path, size, mtime), else through a
recorded move. Superseded and deleted entries stay in their manifests and are filtered
out by readers.

Moved and renamed files keep their results. The decode job records a cheap content
fingerprint of each image (:func:`content_fingerprint`: size plus the first and last MiB) in
its technical row. When a scan finds new paths *and* catalogued files that disappeared, the
new paths whose size equals a vanished file's size are fingerprinted (2 MiB read each, no
other file is opened); a match is a *move*, recorded in ``<catalog>/moves/<batch>.tsv``
(the file's version at its new path and the catalogued version it carries on) instead of a
new shard, so no decode or model job runs for it. A move is keyed by the catalogued
version, not by its shard, so it survives compaction; a file moved twice is recorded
against the original entry. Images never decoded (metadata-only runs) have no fingerprint
and are processed as new when moved, as are moved-and-edited files. A fingerprint misses an
edit that keeps the size and leaves the first and last MiB untouched (files over 2 MiB).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imganalyzer.decode import formats
from imganalyzer.files import atomic_open
from imganalyzer.layout import Layout
from imganalyzer.results import OK, read_rows

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = formats.IMAGE_EXTENSIONS
MANIFEST_HEADER = "path\tsize\tmtime_ns"
MOVES_HEADER = "path\tsize\tmtime_ns\tsource_path\tsource_size\tsource_mtime_ns"
# Bytes hashed at each end of a file by content_fingerprint.
FINGERPRINT_BYTES = 1 << 20
SHARD_ID_PATTERN = r"\d{6}-\d{5}"
JOB_ID_PATTERN = r"\d{6}-\d{5}-\d{5}"
_SHARD_FILE = re.compile(rf"^({SHARD_ID_PATTERN})\.tsv$")
_MOVES_FILE = re.compile(r"^(\d{6})\.tsv$")
# The text form of a path: backslash escapes keep one entry per line whatever characters a
# file name holds, and a byte that is not UTF-8 (a lone surrogate from os.fsdecode) becomes
# \xHH, so that manifests, the index and exports hold valid UTF-8 and name the file exactly.
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"[\\\t\n\r\ud800-\udfff]")
_UNESCAPE_RE = re.compile(r"\\(?:[\\tnr]|x[89a-f][0-9a-f]|u[dD][89a-fA-F][0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of one file: its path relative to the library root, size and mtime."""

    path: str
    size: int
    mtime_ns: int

    @property
    def version(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


@dataclass(frozen=True, slots=True)
class Move:
    """A file found at a new path with the content of a catalogued entry (``source``),
    whose results it carries on. ``entry``: the file at its new path when it was found."""

    entry: Entry
    source: Entry


def content_fingerprint(path: str | os.PathLike, size: int | None = None) -> str:
    """Hex blake2b of the file size, its first and its last MiB (the whole file up to 2 MiB)."""
    if size is None:
        size = os.stat(path).st_size
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as handle:
        if size <= 2 * FINGERPRINT_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(FINGERPRINT_BYTES))
            handle.seek(size - FINGERPRINT_BYTES)
            digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def escape_path(path: str) -> str:
    """The lossless, valid UTF-8 text form of a path (see ``_ESCAPES``)."""
    return _ESCAPE_RE.sub(_escape_char, path)


def unescape_path(text: str) -> str:
    """The path of a text form made by :func:`escape_path`."""
    return _UNESCAPE_RE.sub(_unescape_match, text)


def _escape_char(match: re.Match) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"  # a lone surrogate from elsewhere (JSON text)


def _unescape_match(match: re.Match) -> str:
    text = match.group()
    if text in _UNESCAPES:
        return _UNESCAPES[text]
    if text[1] == "x":
        return chr(0xDC00 + int(text[2:], 16))
    return chr(int(text[2:], 16))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_library(
    library: str | os.PathLike,
    exclude: Iterable[str | os.PathLike] = (),
    passed_over: Counter | None = None,
) -> dict:
    """Stat every image under ``library``; return ``{relative path: (size, mtime_ns)}``.

    Reads no file content. Skips hidden files and folders, the ``exclude`` folders (the
    results folder when it lies inside the library), symlinks whose target is outside
    the library, and symlink loops. Unreadable folders are logged and skipped.
    ``passed_over``, if given, counts the other regular files by lower-case extension.
    """
    root = Path(library).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"library folder not found: {library}")
    excluded = {_dir_key(p) for p in exclude if Path(p).is_dir()}
    found: dict[str, tuple[int, int]] = {}
    seen_dirs = {_dir_key(root)}
    pending = [(str(root), "")]
    # Folders reached through a symlink wait until every real folder is scanned, so a
    # folder reachable both ways is always listed under its real path.
    linked: list[tuple[str, str]] = []
    while pending:
        folder, rel_folder = pending.pop()
        for item in _list_dir(folder):
            if item.name.startswith("."):
                continue
            st = _stat_inside(item, root)
            if st is None:
                continue
            rel = f"{rel_folder}{item.name}"
            if stat.S_ISDIR(st.st_mode):
                if item.is_symlink():
                    linked.append((item.path, f"{rel}/"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in seen_dirs and key not in excluded:
                    seen_dirs.add(key)
                    pending.append((item.path, f"{rel}/"))
            elif stat.S_ISREG(st.st_mode) and is_image_name(item.name):
                found[rel] = (st.st_size, st.st_mtime_ns)
            elif passed_over is not None and stat.S_ISREG(st.st_mode):
                passed_over[os.path.splitext(item.name)[1].lower() or "(no extension)"] += 1
        while not pending and linked:
            path, rel = linked.pop(0)
            key = _dir_key(path)
            if key not in seen_dirs and key not in excluded:
                seen_dirs.add(key)
                pending.append((path, rel))
    return found


def _dir_key(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _list_dir(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as error:
        log.warning("skipping unreadable folder %s: %s", folder, error.strerror or error)
        return []


def _stat_inside(item: os.DirEntry, root: Path) -> os.stat_result | None:
    """The stat of ``item`` (following a symlink only if it stays inside ``root``)."""
    try:
        if item.is_symlink():
            target = Path(os.path.realpath(item.path))
            if not target.is_relative_to(root):
                return None
        return item.stat(follow_symlinks=True)
    except OSError:
        return None  # dangling symlink, symlink loop or a file that vanished mid-scan


MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: a manifest line is at most this plus numbers


def write_manifest(path: str | os.PathLike, entries: Iterable[Entry]) -> None:
    lines = [MANIFEST_HEADER]
    lines += [_manifest_line(e) for e in entries]
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def manifest_rows(path: str | os.PathLike, at_least: int) -> int | None:
    """How many entries a manifest holds, or None when it holds ``at_least`` or more for
    sure (judged by its size, unread) or does not exist. Cheap: no entry is parsed."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return None
    if size > at_least * (MAX_PATH_BYTES + 64):
        return None
    with open(path, "rb") as handle:
        return handle.read().count(b"\n") - 1  # the header's line


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    """The entries of one shard manifest, in row order."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
        header, *lines = handle.read().split("\n")
    if header != MANIFEST_HEADER:
        raise ValueError(f"{path}: not a shard manifest (header {header!r})")
    entries = []
    for line in lines:
        if line:
            name, size, mtime = line.rsplit("\t", 2)
            if "\\" in name:  # most paths need no unescaping: skip the regex
                name = unescape_path(name)
            entries.append(Entry(name, int(size), int(mtime)))
    return entries


def write_moves(path: str | os.PathLike, moves: Iterable[Move]) -> None:
    lines = [MOVES_HEADER]
    lines += [f"{_manifest_line(m.entry)}\t{_manifest_line(m.source)}" for m in moves]
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def read_moves(path: str | os.PathLike) -> list[Move]:
    """The moves recorded by one ingest batch."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
        header, *lines = handle.read().split("\n")
    if header != MOVES_HEADER:
        raise ValueError(f"{path}: not a moves table (header {header!r})")
    moves = []
    for line in lines:
        if line:
            path_, size, mtime, source, source_size, source_mtime = line.split("\t")
            moves.append(
                Move(
                    Entry(unescape_path(path_), int(size), int(mtime)),
                    Entry(unescape_path(source), int(source_size), int(source_mtime)),
                )
            )
    return moves


def _manifest_line(entry: Entry) -> str:
    return f"{escape_path(entry.path)}\t{entry.size}\t{entry.mtime_ns}"


def group_shards(shards: Iterable[str], per_job: int) -> dict[str, list[str]]:
    """Cut each ingest batch's shards into jobs of at most ``per_job`` shards.

    Model jobs run per group so that one model load serves many shards. A job never
    spans two batches, so new imports never change the jobs (or re-run the models) of
    earlier ones. Job id: ``<batch>-<first shard index>-<last shard index>``.
    """
    by_batch: dict[str, list[str]] = {}
    for shard in shards:
        by_batch.setdefault(shard.split("-")[0], []).append(shard)
    jobs = {}
    for batch, members in by_batch.items():
        members.sort()
        for start in range(0, len(members), per_job):
            chunk = members[start : start + per_job]
            first, last = chunk[0].split("-")[1], chunk[-1].split("-")[1]
            jobs[f"{batch}-{first}-{last}"] = chunk
    return jobs


@dataclass
class IngestReport:
    scanned: int
    new_entries: int
    new_shards: list[str] = field(default_factory=list)
    moved: int = 0  # files found at a new path, their results carried over
    removed: int = 0  # catalogued files no longer in the library (not moved)

    def summary(self) -> str:
        moved = f", {self.moved} moved (results kept)" if self.moved else ""
        moved += f", {self.removed} removed" if self.removed else ""
        if not self.new_shards:
            return f"catalog: {self.scanned} images scanned{moved}, nothing new"
        return (
            f"catalog: {self.scanned} images scanned{moved}, {self.new_entries} new or changed "
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
    records: _Records | None = field(default=None, repr=False)  # the catalog when planned

    def library_state(self) -> LibraryState:
        """The library's state once this plan is written (computed in memory from the
        plan's one scan): what every global step of the run works from."""
        records = self.records or self.catalog._load()
        entries = list(records.entries)
        shard_of = dict(records.shard_of)
        for shard, members in self.shards.items():  # the newest batch
            for entry in members:
                entries.append((shard, entry))
                shard_of[_key(entry)] = shard
        planned = _Records(entries, list(self.moves) + records.moves, shard_of)
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


@dataclass
class LibraryState:
    """The derived state: which catalogued entries are current, superseded or removed.

    A moved file is current at its new path, backed by the catalogued entry it was moved
    from: ``current[new path] = (shard, entry at the old path)`` and ``moved[new path]``.
    """

    current: dict[str, tuple[str, Entry]]  # path -> (shard, entry) of the current version
    superseded: list[tuple[str, Entry]]  # older versions of a path
    removed: list[tuple[str, Entry]]  # newest entry of a path whose file is gone
    outdated: list[tuple[str, Entry]]  # newest entry of a path whose file has since changed
    uncatalogued: list[str]  # paths on disk with a version no manifest holds yet
    moved: dict[str, Move] = field(default_factory=dict)  # current path -> its move
    passed_over: dict[str, int] = field(default_factory=dict)  # other files, by extension


def _key(entry: Entry) -> tuple[str, int, int]:
    """A hashable version key: tuples hash in C, many times faster than the dataclass."""
    return (entry.path, entry.size, entry.mtime_ns)


@dataclass
class _Records:
    """Everything the catalog holds, loaded once."""

    entries: list[tuple[str, Entry]]  # every manifest entry, oldest shard first
    moves: list[Move]  # newest batch first
    shard_of: dict[tuple[str, int, int], str]  # the newest shard holding each version

    def resolve(self, on_disk: dict) -> tuple[set[str], dict[str, Move]]:
        """(the paths on disk that are catalogued, the moved files among them). A file is
        current through its own version first, else through its newest recorded move; one
        catalogued entry backs at most one file."""
        shard_of = self.shard_of
        catalogued = {p for p, (size, mtime) in on_disk.items() if (p, size, mtime) in shard_of}
        moved: dict[str, Move] = {}
        used: set[tuple[str, int, int]] = set()
        for move in self.moves:
            path, source = move.entry.path, _key(move.source)
            if path in catalogued or on_disk.get(path) != move.entry.version:
                continue
            if (
                source in shard_of
                and source not in used
                and not self.is_direct(move.source, on_disk)
            ):
                catalogued.add(path)
                used.add(source)
                moved[path] = move
        return catalogued, moved

    @staticmethod
    def is_direct(entry: Entry, on_disk: dict) -> bool:
        """Whether ``entry`` is current at its own path."""
        return on_disk.get(entry.path) == entry.version


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
        return plan.report

    def plan(
        self,
        library: str | os.PathLike,
        shard_size: int,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> IngestPlan:
        """What ``ingest`` would write, computed in memory: nothing is written (a dry-run or
        a lint plans the same batch a real run writes). See ``IngestPlan``."""
        on_disk = scan_library(library, exclude)
        records = self._load()
        catalogued, moved = records.resolve(on_disk)
        new = [Entry(p, *on_disk[p]) for p in sorted(on_disk.keys() - catalogued)]
        sizes = {e.size for e in new}
        vanished = _vanished(records, on_disk, moved, sizes) if new else []
        moves = find_moves(new, vanished, records.shard_of, self.layout, Path(library))
        moved_paths = {m.entry.path for m in moves}
        changed = [e for e in new if e.path not in moved_paths]
        batch = self._next_batch()
        count = -(-len(changed) // shard_size)
        shards = {
            f"{batch:06d}-{index:05d}": changed[index * shard_size : (index + 1) * shard_size]
            for index in range(count)
        }
        moved |= {m.entry.path: m for m in moves}
        report = IngestReport(
            scanned=len(on_disk),
            new_entries=len(changed),
            new_shards=list(shards),
            moved=len(moves),
            removed=_removed_count(records, on_disk, moved),
        )
        return IngestPlan(self, batch, shards, moves, report, on_disk, records)

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

    def last_catalogued(self, records: _Records | None = None) -> dict:
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

    def _load(self) -> _Records:
        entries = list(self.entries())
        shard_of = {_key(entry): shard for shard, entry in entries}
        return _Records(entries, self.moves(), shard_of)

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


def derive_state(records: _Records, on_disk: dict, passed_over: dict | None = None) -> LibraryState:
    """Compare the catalog's ``records`` with the files on disk (``{path: version}``)."""
    catalogued, moved = records.resolve(on_disk)
    moved_to = {_key(m.source): path for path, m in moved.items()}
    current: dict[str, tuple[str, Entry]] = {}
    others: dict[str, list[tuple[str, Entry]]] = {}
    for shard, entry in records.entries:  # current in manifest order
        key = _key(entry)
        if records.shard_of[key] == shard:
            if on_disk.get(entry.path) == entry.version:
                current[entry.path] = (shard, entry)
                continue
            if key in moved_to:
                current[moved_to[key]] = (shard, entry)
                continue
        others.setdefault(entry.path, []).append((shard, entry))
    sources = {m.source.path for m in moved.values()}
    superseded, removed, outdated = [], [], []
    for path, items in others.items():
        if path in current or path in sources:
            superseded += items
            continue
        superseded += items[:-1]
        (outdated if path in on_disk else removed).append(items[-1])
    uncatalogued = sorted(on_disk.keys() - catalogued)
    return LibraryState(
        current, superseded, removed, outdated, uncatalogued, moved, passed_over or {}
    )


def _matching_ids(folder: Path, pattern: re.Pattern) -> list[str]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        return sorted(m.group(1) for e in it if (m := pattern.match(e.name)))


def _vanished(
    records: _Records, on_disk: dict, moved: dict[str, Move], sizes: set[int]
) -> list[Entry]:
    """Catalogued entries of one of ``sizes`` whose content is at no path on disk: not
    current at their own path and not the source of a move in effect."""
    used = {_key(m.source) for m in moved.values()}
    found = []
    for shard, entry in records.entries:
        if entry.size in sizes:  # cheap first: new files are usually few
            key = _key(entry)
            newest, direct = records.shard_of[key] == shard, records.is_direct(entry, on_disk)
            if newest and key not in used and not direct:
                found.append(entry)
    return found


def find_moves(
    new: list[Entry],
    vanished: list[Entry],
    shard_of: dict[tuple[str, int, int], str],
    layout: Layout,
    library: Path,
) -> list[Move]:
    """Pair new files with vanished entries of the same size and content fingerprint.

    Reads the technical rows of the shards holding a vanished entry of a size that some new
    file has, then fingerprints only the new files of a size some such row has."""
    new_sizes = {e.size for e in new}
    wanted = [e for e in vanished if e.size in new_sizes]
    if not wanted:
        return []
    sources = _recorded_fingerprints(wanted, shard_of, layout)
    sizes = {size for size, _ in sources}
    targets: dict[tuple[int, str], list[Entry]] = {}
    for entry in new:
        if entry.size in sizes:
            try:
                fingerprint = content_fingerprint(library / entry.path, entry.size)
            except OSError as error:
                log.warning("catalog: cannot read %s: %s", entry.path, error)
                continue
            targets.setdefault((entry.size, fingerprint), []).append(entry)
    moves = []
    for key, group in targets.items():
        moves += _pair(group, sources.get(key, []))
    return sorted(moves, key=lambda m: m.entry.path)


def _recorded_fingerprints(
    wanted: list[Entry], shard_of: dict[tuple[str, int, int], str], layout: Layout
) -> dict[tuple[int, str], list[Entry]]:
    """{(size, fingerprint): entries} from the technical rows of the wanted entries."""
    by_shard: dict[str, set[Entry]] = {}
    for entry in wanted:
        by_shard.setdefault(shard_of[_key(entry)], set()).add(entry)
    found: dict[tuple[int, str], list[Entry]] = {}
    for shard, entries in sorted(by_shard.items()):
        rows_file = layout.technical(shard)
        if not rows_file.is_file():
            continue
        for row in read_rows(rows_file):
            entry = Entry(row["path"], row["size"], row["mtime_ns"])
            if entry in entries and row.get("status") == OK and row.get("fingerprint"):
                found.setdefault((entry.size, row["fingerprint"]), []).append(entry)
    return found


def _pair(targets: list[Entry], sources: list[Entry]) -> list[Move]:
    """One-to-one pairs of identical-content files, deterministically: same file name and
    mtime first, then same file name, then path order. Unpaired targets are new files."""
    left = sorted(set(sources), key=lambda e: e.path)
    moves = []
    rules = (
        lambda t, s: _name(t) == _name(s) and t.mtime_ns == s.mtime_ns,
        lambda t, s: _name(t) == _name(s),
        lambda t, s: True,
    )
    todo = sorted(targets, key=lambda e: e.path)
    for rule in rules:
        for target in list(todo):
            source = next((s for s in left if rule(target, s)), None)
            if source is not None:
                moves.append(Move(target, source))
                left.remove(source)
                todo.remove(target)
    return moves


def _name(entry: Entry) -> str:
    return entry.path.rpartition("/")[2]


def _removed_count(records: _Records, on_disk: dict, moved: dict[str, Move]) -> int:
    gone = {entry.path for _, entry in records.entries}.difference(on_disk)
    return len(gone.difference(m.source.path for m in moved.values()))


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.handle = open(self.path, "a")  # noqa: SIM115 (held until __exit__)
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
