"""The library's derived state: which catalogued entries are current, superseded or removed."""

from __future__ import annotations

from dataclasses import dataclass, field

from imganalyzer.catalog.manifests import Entry, Move, version_key


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


@dataclass
class Records:
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
            path, source = move.entry.path, version_key(move.source)
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


def derive_state(records: Records, on_disk: dict, passed_over: dict | None = None) -> LibraryState:
    """Compare the catalog's ``records`` with the files on disk (``{path: version}``)."""
    catalogued, moved = records.resolve(on_disk)
    moved_to = {version_key(m.source): path for path, m in moved.items()}
    current: dict[str, tuple[str, Entry]] = {}
    others: dict[str, list[tuple[str, Entry]]] = {}
    for shard, entry in records.entries:  # current in manifest order
        key = version_key(entry)
        if records.shard_of[key] == shard:
            if on_disk.get(entry.path) == entry.version:
                current[entry.path] = (shard, entry)
                continue
            if key in moved_to:
                current[moved_to[key]] = (shard, entry)
                continue
        others.setdefault(entry.path, []).append((shard, entry))
    sources = {m.source.path for m in moved.values()}
    superseded: list[tuple[str, Entry]] = []
    removed: list[tuple[str, Entry]] = []
    outdated: list[tuple[str, Entry]] = []
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
