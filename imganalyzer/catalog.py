"""The append-only catalog of a photo library.

A *version* of a file is (path relative to the library root, size, mtime_ns). The scan
only stats files: no image content is read. Versions not yet catalogued form a new
*ingest batch*, cut in path order into shards of at most ``shard_size`` images. Each
shard manifest (``<catalog>/shards/<batch>-<index>.tsv``) is written once, atomically,
and never rewritten. The current state of the library is derived: the newest entry of
each path, if the file still has that size and mtime. Superseded and deleted entries
stay in their manifests and are filtered out by readers.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imganalyzer.files import atomic_open

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".png",
        ".tif",
        ".tiff",
        ".webp",
        ".heic",
        ".heif",
        ".dng",
        ".arw",
        ".cr2",
        ".cr3",
        ".nef",
        ".raf",
        ".orf",
        ".rw2",
    ]
)
MANIFEST_HEADER = "path\tsize\tmtime_ns"
SHARD_ID_PATTERN = r"\d{6}-\d{5}"
JOB_ID_PATTERN = r"\d{6}-\d{5}-\d{5}"
_SHARD_FILE = re.compile(rf"^({SHARD_ID_PATTERN})\.tsv$")
# Backslash escapes keep one entry per line whatever characters a file name holds.
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"[\\\t\n\r]")
_UNESCAPE_RE = re.compile(r"\\[\\tnr]")


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of one file: its path relative to the library root, size and mtime."""

    path: str
    size: int
    mtime_ns: int

    @property
    def version(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def escape_path(path: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], path)


def unescape_path(text: str) -> str:
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES[m.group()], text)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_library(library: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> dict:
    """Stat every image under ``library``; return ``{relative path: (size, mtime_ns)}``.

    Reads no file content. Skips hidden files and folders, the ``exclude`` folders (the
    results folder when it lies inside the library), symlinks whose target is outside
    the library, and symlink loops. Unreadable folders are logged and skipped.
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


def write_manifest(path: str | os.PathLike, entries: Iterable[Entry]) -> None:
    lines = [MANIFEST_HEADER]
    lines += [f"{escape_path(e.path)}\t{e.size}\t{e.mtime_ns}" for e in entries]
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


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
    # Digest of the catalogued paths whose files are gone: deletions create no shard,
    # so the index rule takes this as a parameter to notice them.
    removed_digest: str = ""

    def summary(self) -> str:
        if not self.new_shards:
            return f"catalog: {self.scanned} images scanned, nothing new"
        return (
            f"catalog: {self.scanned} images scanned, {self.new_entries} new or changed "
            f"in {len(self.new_shards)} new shard(s) {self.new_shards[0]}..{self.new_shards[-1]}"
        )


@dataclass
class LibraryState:
    """The derived state: which catalogued entries are current, superseded or removed."""

    current: dict[str, tuple[str, Entry]]  # path -> (shard, entry) of the current version
    superseded: list[tuple[str, Entry]]  # older versions of a path
    removed: list[tuple[str, Entry]]  # newest entry of a path whose file is gone
    outdated: list[tuple[str, Entry]]  # newest entry of a path whose file has since changed
    uncatalogued: list[str]  # paths on disk with a version no manifest holds yet


class Catalog:
    """The catalog folder: ``shards/`` of immutable manifests and a lock file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.shards_dir = self.root / "shards"

    def manifest_path(self, shard: str) -> Path:
        return self.shards_dir / f"{shard}.tsv"

    def shard_ids(self) -> list[str]:
        """All shard ids in ingest order (the order in which they were created)."""
        if not self.shards_dir.is_dir():
            return []
        with os.scandir(self.shards_dir) as it:
            ids = [m.group(1) for e in it if (m := _SHARD_FILE.match(e.name))]
        return sorted(ids)

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

    def ingest(
        self,
        library: str | os.PathLike,
        shard_size: int,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> IngestReport:
        """Scan the library and write new shards for versions not yet catalogued."""
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        with self.locked():
            on_disk = scan_library(library, exclude)
            newest = self.newest_entries()
            changed = [
                Entry(path, *version)
                for path, version in sorted(on_disk.items())
                if path not in newest or newest[path][1].version != version
            ]
            shards = self._write_batch(changed, shard_size)
        removed = sorted(path for path in newest if path not in on_disk)
        return IngestReport(
            scanned=len(on_disk),
            new_entries=len(changed),
            new_shards=shards,
            removed_digest=_digest(removed),
        )

    def state(self, library: str | os.PathLike, exclude: Iterable = ()) -> LibraryState:
        """Compare the catalog with the library on disk (stat only)."""
        on_disk = scan_library(library, exclude)
        current, superseded, removed, outdated = {}, [], [], []
        newest = self.newest_entries()
        for shard, entry in self.entries():
            if newest[entry.path][0] != shard:
                superseded.append((shard, entry))
            elif entry.path not in on_disk:
                removed.append((shard, entry))
            elif on_disk[entry.path] == entry.version:
                current[entry.path] = (shard, entry)
            else:
                outdated.append((shard, entry))
        uncatalogued = [
            p for p, v in on_disk.items() if p not in newest or newest[p][1].version != v
        ]
        return LibraryState(current, superseded, removed, outdated, sorted(uncatalogued))

    def _write_batch(self, entries: list[Entry], shard_size: int) -> list[str]:
        shards = self.reserve_batch(len(entries), shard_size)
        for index, shard in enumerate(shards):
            chunk = entries[index * shard_size : (index + 1) * shard_size]
            write_manifest(self.manifest_path(shard), chunk)
        return shards

    def reserve_batch(self, n_entries: int, shard_size: int) -> list[str]:
        """Ids of the shards a new batch of ``n_entries`` needs (call under ``locked()``)."""
        existing = self.shard_ids()
        batch = int(existing[-1].split("-")[0]) + 1 if existing else 1
        count = -(-n_entries // shard_size)
        return [f"{batch:06d}-{index:05d}" for index in range(count)]

    def locked(self) -> _FileLock:
        """An exclusive lock so that two runs never write the same batch."""
        return _FileLock(self.root / ".lock")


def _digest(paths: list[str]) -> str:
    text = "\n".join(paths).encode("utf-8", "surrogateescape")
    return f"{len(paths)}:{hashlib.sha1(text).hexdigest()[:16]}"


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.handle = open(self.path, "a")  # noqa: SIM115 (held until __exit__)
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
