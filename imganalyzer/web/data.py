"""What the pages read from a results folder: the search index, the stored thumbnails and
tiers, an image's result rows, people and duplicate groups. Nothing here writes."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import imagecodecs
import numpy as np

from imganalyzer.catalog.manifests import SHARD_ID_PATTERN, read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.thumbnails import read_thumbnail
from imganalyzer.layout import Layout
from imganalyzer.search.documents import key_id
from imganalyzer.search.query import SearchIndex
from imganalyzer.steps.people import PeopleFile, load_people
from imganalyzer.store import ResultsStore

SHARD_ID = re.compile(rf"^{SHARD_ID_PATTERN}$")
# Modules whose rows the image page shows, in the order it shows them.
DETAIL_MODULES = ("metadata", "technical", "aesthetic", "captions", "objects", "faces", "ocr")
# JPEG quality of the tier image sent to the browser (the stored tier is already lossy).
TIER_JPEG_QUALITY = 88


@dataclass(frozen=True)
class Location:
    """Where an image's results lie: its shard, manifest row and catalogued path."""

    shard: str
    row: int
    catalog_path: str


class ResultsData:
    """Read access to one results folder, shared by all requests (thread-safe)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.results = Path(config["results"]).resolve()
        self.layout = Layout(self.results)
        self.store = ResultsStore(self.layout)
        self.library = Path(config["library"])
        self.catalog = Catalog(self.layout)
        self._lock = threading.Lock()
        self._index: SearchIndex | None = None
        self._index_stamp: float | None = None
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._moves = Stamped(self._read_moves, self.catalog.moves_dir)
        people_files = (self.layout.people, self.layout.people_edits)
        self._people = Stamped(self._read_people, *people_files)
        self._groups = Stamped(self._read_groups, self.groups_file)

    @property
    def groups_file(self) -> Path:
        return self.layout.duplicate_groups

    @property
    def keepers_file(self) -> Path:
        """The keepers the user picked in the duplicates page (the step's own file stays)."""
        return self.layout.keeper_choices

    # ------------------------------------------------------------ index

    def index(self) -> SearchIndex:
        """The search index, reopened when ``imganalyzer index`` or a run changed it."""
        state = self.layout.index_files.state
        stamp = state.stat().st_mtime_ns if state.is_file() else None
        with self._lock:
            if self._index is None or stamp != self._index_stamp:
                self._index = SearchIndex(self.layout, resident=True)
                self._index_stamp = stamp
            return self._index

    def document(self, path: str) -> dict[str, Any] | None:
        """The index fields of the image at ``path`` (relative to the library)."""
        found = self.index().documents([key_id(path)])
        doc = next(iter(found.values()), None)
        return doc if doc is not None and doc.get("key") == path else None

    # ------------------------------------------------------------ where results lie

    def locate(self, path: str, shard: str | None) -> Location | None:
        """The manifest row of ``path`` in ``shard`` (the index's shard of the image); a
        moved file is found by the path it was catalogued under."""
        if shard is None or not SHARD_ID.match(shard):
            return None
        for catalogued in (path, self._moves.get().get(path)):
            if catalogued is None:
                continue
            row = self._row_of(shard, catalogued)
            if row is not None:
                return Location(shard, row, catalogued)
        return None

    def warm(self) -> None:
        """Read every manifest's rows and the search index's vector codes now (a second or
        two per million images each), so that the first searches do not wait for them."""
        for shard in self.catalog.shard_ids():
            self._shard_rows(shard)
        with contextlib.suppress(LookupError, OSError, RuntimeError, ValueError):
            self.index()

    def _row_of(self, shard: str, path: str) -> int | None:
        ids, rows = self._shard_rows(shard)
        wanted = np.uint64(key_id(path))
        at = int(np.searchsorted(ids, wanted))
        return int(rows[at]) if at < len(ids) and ids[at] == wanted else None

    def _shard_rows(self, shard: str) -> tuple[np.ndarray, np.ndarray]:
        """The shard's key ids, sorted, and the manifest row of each: 12 bytes per image,
        kept for good (manifests are never rewritten)."""
        found = self._rows.get(shard)
        if found is None:
            manifest = self.catalog.manifest_path(shard)
            entries = read_manifest(manifest) if manifest.is_file() else []
            ids = np.fromiter((key_id(e.path) for e in entries), np.uint64, len(entries))
            order = np.argsort(ids, kind="stable")
            found = self._rows[shard] = (ids[order], order.astype(np.int32))
        return found

    def _read_moves(self) -> dict[str, str]:
        """Current path -> catalogued path of every recorded move."""
        return {m.entry.path: m.source.path for m in self.catalog.moves()}

    # ------------------------------------------------------------ images

    def thumbnail_file(self, shard: str) -> Path | None:
        path = self.layout.thumbnails(shard)
        return path if SHARD_ID.match(shard) and path.is_file() else None

    def thumbnail_url(self, location: Location | None) -> str | None:
        """The thumbnail's address, versioned by its shard file (so it may be cached for
        good), or None when the shard has no thumbnails."""
        if location is None:
            return None
        zipped = self.thumbnail_file(location.shard)
        if zipped is None:
            return None
        return f"/thumbnail/{location.shard}/{location.row}?v={zipped.stat().st_mtime_ns}"

    def thumbnail(self, shard: str, row: int) -> bytes | None:
        """The row's thumbnail JPEG; None without one (or when the file is no readable zip)."""
        path = self.thumbnail_file(shard)
        try:
            return read_thumbnail(path, row) if path is not None else None
        except (OSError, zipfile.BadZipFile):
            return None

    def tier_jpeg(self, shard: str, row: int) -> bytes | None:
        """The image from the largest stored tier, as JPEG; None when it has none."""
        store = self.layout.tiers(shard)
        if not SHARD_ID.match(shard) or not store.is_dir():
            return None
        from imganalyzer.decode.tiers import TierReader

        reader = TierReader(store)
        if not reader.tiers or not 0 <= row < reader.n_images:
            return None
        largest = max(reader.tiers, key=reader.tiers.__getitem__)
        rgb = np.ascontiguousarray(reader.image(largest, row))
        if rgb.size == 0:
            return None
        # the stub says bytes | bytearray: bytearray only comes back into a given out=
        return cast(bytes, imagecodecs.jpeg8_encode(rgb, level=TIER_JPEG_QUALITY))

    def original(self, path: str) -> Path | None:
        """The original file, only if it lies inside the library (no ``..``, no symlink
        leading out of it) and the library is mounted."""
        from imganalyzer.web.security import inside

        return inside(self.library, path)

    # ------------------------------------------------------------ result rows

    def rows(self, location: Location) -> dict[str, dict[str, Any]]:
        """{module: the image's row} for the modules that have one."""
        return self.store.image_rows(location.shard, location.row, DETAIL_MODULES)

    def duplicate_groups(self) -> list[dict[str, Any]] | None:
        """The groups of the last run's duplicates step, or None when it has not run."""
        return self._groups.get()

    def _read_groups(self) -> list[dict[str, Any]] | None:
        if not self.groups_file.is_file():
            return None
        return json.loads(self.groups_file.read_text(encoding="utf-8")).get("groups", [])

    def people(self) -> PeopleFile:
        """``faces/people.json`` with the user's edits applied (empty before the step ran)."""
        return self._people.get()[0]

    def face_labels(self, path: str) -> dict[int, tuple[int, str]]:
        """Face index in the image's faces row -> (person id, name or "person <id>")."""
        return self._people.get()[1].get(path, {})

    def _read_people(self) -> tuple[PeopleFile, dict[str, dict[int, tuple[int, str]]]]:
        people = load_people(self.layout)
        by_path: dict[str, dict[int, tuple[int, str]]] = {}
        for person in people.people.values():
            for face in person.faces:
                record = people.faces[face]
                by_path.setdefault(record.path, {})[record.face] = (person.id, person.label)
        return people, by_path


T = TypeVar("T")


class Stamped(Generic[T]):
    """A value computed from files, recomputed when one of them changes (by mtime)."""

    def __init__(self, compute: Callable[[], T], *paths: Path) -> None:
        self.compute = compute
        self.paths = paths
        self._stamp: tuple[int | None, ...] | None = None
        self._value: T
        self._lock = threading.Lock()

    def get(self) -> T:
        stamp = tuple(p.stat().st_mtime_ns if p.exists() else None for p in self.paths)
        with self._lock:
            if stamp != self._stamp:
                self._value, self._stamp = self.compute(), stamp
            return self._value
