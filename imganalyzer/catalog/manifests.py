"""The text files of the catalog: shard manifests (one :class:`Entry` a line) and moves
tables (one :class:`Move` a line), with the escaped text form of a path they use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from imganalyzer.files import atomic_open

MANIFEST_HEADER = "path\tsize\tmtime_ns"
MOVES_HEADER = "path\tsize\tmtime_ns\tsource_path\tsource_size\tsource_mtime_ns"
SHARD_ID_PATTERN = r"\d{6}-\d{5}"
JOB_ID_PATTERN = r"\d{6}-\d{5}-\d{5}"


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


def version_key(entry: Entry) -> tuple[str, int, int]:
    """A hashable version key: tuples hash in C, many times faster than the dataclass."""
    return (entry.path, entry.size, entry.mtime_ns)
