"""The current state of the library, shard by shard: which catalogued entries are current.

The index and the export read only current entries (the newest catalogued version of each
path whose file still has that size and mtime): superseded, removed and outdated entries are
left out. A moved file is current at its new path through the entry it was moved from
(:attr:`CurrentShard.catalogued`); the results store (:mod:`imganalyzer.store`) joins the
module results to these entries.

One scan per workflow run: the run's catalog plan computes the :class:`LibraryView` (which
files are current, in which shard, moved from where) and the workflow records it in
``run/library.tsv``; the global steps read that file (``view_file``) instead of scanning
the library again, so every step of a run sees the same library. Commands run outside the
workflow scan; with the library unmounted they use the last run's view.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from imganalyzer.catalog.manifests import Entry, Move, escape_path, unescape_path
from imganalyzer.catalog.state import LibraryState
from imganalyzer.catalog.store import Catalog
from imganalyzer.files import atomic_open
from imganalyzer.layout import Layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurrentShard:
    """The current entries of shard ``id``, in manifest order: each file's path and its
    version on disk (for a moved file, its new path); ``catalogued``: the catalogued
    version (path, size, mtime_ns) of each -> its current path."""

    id: str
    entries: list[Entry]
    catalogued: dict[tuple[str, int, int], str]

    def moved(self) -> dict[str, str]:
        """{current path: catalogued path} of the shard's moved files."""
        return {now: key[0] for key, now in self.catalogued.items() if now != key[0]}


# The library view file (``Layout.library_view``): one line per current file, in manifest
# order, paths escaped as in the manifests. A moved file adds the catalogued version it
# carries on (its results are that entry's rows).
VIEW_HEADER = "shard\tpath\tsize\tmtime_ns\tsource_path\tsource_size\tsource_mtime_ns"


@dataclass
class LibraryView:
    """The current library as one scan saw it: ``current[path] = (shard, catalogued
    entry)`` and ``moved[path]``, the move of each moved file (as in :class:`LibraryState`).

    A workflow run computes it once, when it plans the catalog batch, and its global steps
    (duplicates, people, index, xmp) read it from ``Layout.library_view``: one scan per run,
    and every step sees the same library."""

    current: dict[str, tuple[str, Entry]]
    moved: dict[str, Move]

    @classmethod
    def of(cls, state: LibraryState) -> LibraryView:
        return cls(state.current, state.moved)

    def text(self) -> str:
        lines = [VIEW_HEADER]
        for path, (shard, entry) in self.current.items():
            move = self.moved.get(path)
            if move is None:
                lines.append(f"{shard}\t{escape_path(path)}\t{entry.size}\t{entry.mtime_ns}")
            else:
                now, source = move.entry, move.source
                lines.append(
                    f"{shard}\t{escape_path(now.path)}\t{now.size}\t{now.mtime_ns}\t"
                    f"{escape_path(source.path)}\t{source.size}\t{source.mtime_ns}"
                )
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        return text_digest(self.text())

    def write(self, path: str | os.PathLike) -> None:
        write_view_text(path, self.text())

    @classmethod
    def read(cls, path: str | os.PathLike) -> LibraryView:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            header, *lines = handle.read().split("\n")
        if header != VIEW_HEADER:
            raise ValueError(f"{path}: not a library view (header {header!r})")
        current: dict[str, tuple[str, Entry]] = {}
        moved: dict[str, Move] = {}
        for line in lines:
            if not line:
                continue
            shard, name, size, mtime, *source = line.split("\t")
            if "\\" in name:  # most paths need no unescaping: skip the regex
                name = unescape_path(name)
            entry = Entry(name, int(size), int(mtime))
            if source:
                origin = Entry(unescape_path(source[0]), int(source[1]), int(source[2]))
                moved[entry.path] = Move(entry, origin)
                current[entry.path] = (shard, origin)
            else:
                current[entry.path] = (shard, entry)
        return cls(current, moved)


def text_digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


def write_view_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        f.write(text)


def file_digest_of_view(path: str | os.PathLike) -> str | None:
    """The digest of a view file's text (None when there is none): a run re-stages its
    view only when it differs."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            return text_digest(handle.read())
    except FileNotFoundError:
        return None


def stage_view(layout: Layout, text: str, digest: str) -> Path:
    """Stage a starting run's library view (``text``, of ``digest``) for its library_view
    job, which moves it into place. When the placed view is the same already, the staged
    one is a hard link to it (nothing rewritten; that job re-runs only if forced)."""
    staged = layout.staged_library_view
    staged.unlink(missing_ok=True)
    if file_digest_of_view(layout.library_view) == digest:
        try:
            os.link(layout.library_view, staged)
            return staged
        except OSError:  # a file system without hard links: write it
            pass
    write_view_text(staged, text)
    return staged


def current_shards(
    layout: Layout, library: str | os.PathLike, view_file: str | os.PathLike | None = None
) -> CurrentView:
    """The library's current entries grouped by shard (stat only, no results read).

    ``view_file``: a recorded :class:`LibraryView` (a workflow's global steps pass the run's
    own): read, the library is not scanned. Without it the library is scanned; when the
    library is not mounted, the last run's recorded view is used, else the catalog's last
    catalogued state."""
    if view_file is not None:
        return CurrentView(LibraryView.read(view_file))
    if not Path(library).is_dir() and layout.library_view.is_file():
        log.warning("library %s not found: using the last run's view of it", library)
        return CurrentView(LibraryView.read(layout.library_view))
    state = Catalog(layout).state(library, exclude=[layout.root])
    return CurrentView(LibraryView.of(state))


class CurrentView:
    """The library's current entries, shard by shard (``shards``, in shard order), and
    ``current[path] = (shard, catalogued entry)`` as in :class:`LibraryView`."""

    def __init__(self, view: LibraryView) -> None:
        self.current = view.current
        by_shard: dict[str, list[Entry]] = {}
        catalogued: dict[str, dict[tuple[str, int, int], str]] = {}
        for path, (shard, entry) in view.current.items():
            move = view.moved.get(path)
            by_shard.setdefault(shard, []).append(move.entry if move is not None else entry)
            catalogued.setdefault(shard, {})[(entry.path, entry.size, entry.mtime_ns)] = path
        self.shards = {s: CurrentShard(s, by_shard[s], catalogued[s]) for s in sorted(by_shard)}
