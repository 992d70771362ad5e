"""Moved and renamed files keep their results. The decode job records a cheap content
fingerprint of each image (:func:`~imganalyzer.catalog.scan.content_fingerprint`: size plus
the first and last MiB) in its technical row. When a scan finds new paths *and* catalogued
files that disappeared, the new paths whose size equals a vanished file's size are
fingerprinted (2 MiB read each, no other file is opened); a match is a *move*, recorded in
``<catalog>/moves/<batch>.tsv`` (the file's version at its new path and the catalogued
version it carries on) instead of a new shard, so no decode or model job runs for it. A move
is keyed by the catalogued version, not by its shard, so it survives compaction; a file
moved twice is recorded against the original entry. Images never decoded (metadata-only
runs) have no fingerprint and are processed as new when moved, as are moved-and-edited
files. A fingerprint misses an edit that keeps the size and leaves the first and last MiB
untouched (files over 2 MiB).
"""

from __future__ import annotations

import logging
from pathlib import Path

from imganalyzer.catalog.manifests import Entry, Move, version_key
from imganalyzer.catalog.scan import content_fingerprint
from imganalyzer.layout import Layout
from imganalyzer.results import OK
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)


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
        by_shard.setdefault(shard_of[version_key(entry)], set()).add(entry)
    found: dict[tuple[int, str], list[Entry]] = {}
    store = ResultsStore(layout)
    for shard, entries in sorted(by_shard.items()):
        if not store.has_rows("technical", shard):
            continue
        for row in store.rows("technical", shard):
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
