"""Exact copies: content digests, read only where file sizes collide, cached by version."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imganalyzer.catalog.manifests import Entry
from imganalyzer.results import read_rows, write_rows

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024


# --- Exact copies --------------------------------------------------------------------------------
def content_digest(path: Path, limit: int | None = None) -> str:
    """blake2b of a file's first ``limit`` bytes (None: all), read in chunks, read-only."""
    digest = hashlib.blake2b(digest_size=16)
    remaining = limit if limit is not None else math.inf
    with open(path, "rb") as handle:
        while remaining > 0:
            chunk = handle.read(int(min(READ_CHUNK, remaining)))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


@dataclass
class ExactStats:
    size_collisions: int = 0  # files sharing their size with another current file
    heads_read: int = 0
    files_read: int = 0  # files read in full
    cache_hits: int = 0
    unreadable: int = 0


class DigestCache:
    """``duplicates/hashes.jsonl``: head and full digests by (path, size, mtime_ns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, int, int], dict[str, str | None]] = {}
        if path.is_file():
            for row in read_rows(path):
                key = (row["path"], row["size"], row["mtime_ns"])
                self.rows[key] = {"head": row.get("head"), "full": row.get("full")}
        self.changed = False

    def get(self, entry: Entry, kind: str) -> str | None:
        return self.rows.get((entry.path, entry.size, entry.mtime_ns), {}).get(kind)

    def put(self, entry: Entry, kind: str, digest: str) -> None:
        self.rows.setdefault((entry.path, entry.size, entry.mtime_ns), {})[kind] = digest
        self.changed = True

    def save(self, keep: Iterable[Entry]) -> None:
        """Write the cache, keeping only the rows of ``keep`` (current entries)."""
        keys = {(e.path, e.size, e.mtime_ns) for e in keep}
        stale = len(self.rows.keys() - keys)
        if not (self.changed or stale):
            return
        rows = [
            {"path": p, "size": s, "mtime_ns": m, **digests}
            for (p, s, m), digests in sorted(self.rows.items())
            if (p, s, m) in keys
        ]
        write_rows(self.path, rows)


def exact_digests(
    entries: Sequence[Entry], library: Path, cache: DigestCache, stats: ExactStats
) -> dict[str, str]:
    """{path: full content digest} of the files that may have a byte-identical copy: those
    whose size collides, then whose first ``HEAD_BYTES`` collide too. Others are not read."""
    by_size: dict[int, list[Entry]] = {}
    for entry in entries:
        by_size.setdefault(entry.size, []).append(entry)
    colliding = [group for group in by_size.values() if len(group) > 1]
    stats.size_collisions = sum(len(group) for group in colliding)
    digests: dict[str, str] = {}
    for group in colliding:
        by_head: dict[str, list[Entry]] = {}
        for entry in group:
            head = _cached_digest(entry, library, "head", cache, stats)
            if head is not None:
                by_head.setdefault(head, []).append(entry)
        for head, same_head in by_head.items():
            if len(same_head) < 2:
                continue
            for entry in same_head:
                # A file no longer than the head was read whole already.
                full = head if entry.size <= HEAD_BYTES else None
                full = full or _cached_digest(entry, library, "full", cache, stats)
                if full is not None:
                    digests[entry.path] = full
    return digests


def _cached_digest(
    entry: Entry, library: Path, kind: str, cache: DigestCache, stats: ExactStats
) -> str | None:
    cached = cache.get(entry, kind)
    if cached is not None:
        stats.cache_hits += 1
        return cached
    path = library / entry.path
    try:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != entry.version:
            return None  # changed since the scan: the next run sees its new version
        digest = content_digest(path, HEAD_BYTES if kind == "head" else None)
    except OSError as error:
        log.warning("duplicates: cannot read %s: %s", entry.path, error)
        stats.unreadable += 1
        return None
    if kind == "head":
        stats.heads_read += 1
    else:
        stats.files_read += 1
    cache.put(entry, kind, digest)
    return digest
