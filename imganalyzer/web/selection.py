"""The result sets the browsing pages show: the whole timeline, or the part of it a filter
selects (a camera, a lens, a country or town, an object label, a person, a year, the map's
box, the images with errors), as sorted positions of the browse table, and the cards of a
page of them."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

import numpy as np

from imganalyzer.search.browse import FAILED, FILE_TIME, NO_THUMBNAIL, BrowseTable, wall_clock
from imganalyzer.search.documents import key_id
from imganalyzer.web.data import ResultsData

# Selections kept per index version (each is at most 8 bytes per selected image).
CACHED_SELECTIONS = 32
# Aspect-ratio classes of the justified grid (width / height x 100): CSS gives each its
# share of a row (no inline styles: the content security policy forbids them).
ASPECTS = (50, 67, 75, 100, 133, 150, 178, 240)


@dataclass(frozen=True)
class GridFilter:
    """What a grid of the timeline shows; empty: everything."""

    camera: str | None = None
    lens: str | None = None
    country: str | None = None
    town: str | None = None
    label: str | None = None
    person: int | None = None
    year: int | None = None
    errors: bool = False
    box: tuple[float, float, float, float] | None = None  # west, south, east, north

    @classmethod
    def of(cls, params: dict[str, str]) -> GridFilter:
        """From query parameters; unusable values are ignored."""
        values: dict[str, Any] = {}
        for name in ("camera", "lens", "country", "town", "label"):
            if params.get(name, "").strip():
                values[name] = params[name].strip()[:500]
        values["person"] = whole_number(params.get("person", ""))
        year = whole_number(params.get("year", ""))
        values["year"] = year if year is not None and 1 <= year <= 9999 else None
        values["errors"] = params.get("errors") in ("1", "on", "true")
        values["box"] = parse_box(params.get("box", ""))
        return cls(**values)

    def params(self) -> list[tuple[str, str]]:
        """As query parameters (only those set)."""
        found = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or value is False:
                continue
            if spec.name == "box":
                value = ",".join(f"{v:.5g}" for v in value)
            found.append((spec.name, "1" if value is True else str(value)))
        return found

    def query(self, **extra: str) -> str:
        return urlencode(self.params() + [(k, v) for k, v in extra.items() if v])

    @property
    def empty(self) -> bool:
        return not self.params()

    def describe(self, data: ResultsData) -> str:
        """In words, for the page's heading."""
        parts = []
        for name in ("camera", "lens", "label", "town", "country"):
            if getattr(self, name):
                parts.append(str(getattr(self, name)))
        if self.person is not None:
            person = data.people().people.get(self.person)
            parts.append(person.label if person else f"person {self.person}")
        if self.year:
            parts.append(str(self.year))
        if self.box:
            parts.append("the selected map area")
        if self.errors:
            parts.append("files with errors")
        return ", ".join(parts)


def whole_number(text: str) -> int | None:
    """A whole number written in ASCII digits (at most 18 of them), else None: "²" and
    "٣" are digits to ``str.isdigit`` but not to ``int`` or not to a reader."""
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return None
    south, north = max(-90.0, min(south, north)), min(90.0, max(south, north))
    return max(-180.0, west), south, min(180.0, east), north


class BrowseSource:
    """The browse table of the current index and the selections made from it."""

    def __init__(self, data: ResultsData) -> None:
        self.data = data
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._table: BrowseTable | None = None
        self._selections: OrderedDict[GridFilter, np.ndarray] = OrderedDict()

    def table(self) -> BrowseTable | None:
        """None when the index has no browse table yet (run the workflow or `index`)."""
        path = self.data.layout.index_files.browse
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._table, self._stamp = BrowseTable(path), stamp
                self._selections.clear()
            return self._table

    def warm(self) -> BrowseTable | None:
        """Load the table now (as the server starts), so that the first page does not wait."""
        table = self.table()
        if table is not None:
            table.months  # noqa: B018 - computed once per index version
            table.positions_of([0])
        return table

    def select(self, table: BrowseTable, grid: GridFilter) -> np.ndarray | None:
        """Sorted positions of the images ``grid`` selects; None: all of them."""
        if grid.empty:
            return None
        with self._lock:
            found = self._selections.get(grid)
            if found is not None:
                self._selections.move_to_end(grid)
                return found
        found = self._positions(table, grid)
        with self._lock:
            self._selections[grid] = found
            while len(self._selections) > CACHED_SELECTIONS:
                self._selections.popitem(last=False)
        return found

    def _positions(self, table: BrowseTable, grid: GridFilter) -> np.ndarray:
        mask = np.ones(table.n, bool)
        for name, value in (
            ("camera", grid.camera), ("lens", grid.lens), ("country", grid.country),
            ("town", grid.town),
        ):  # fmt: skip
            if value is not None:
                code = table.code_of(name, value)
                mask &= table.codes(name) == (-2 if code is None else code)
        if grid.year is not None:
            start = table.before_date(wall_clock(0).replace(year=min(grid.year + 1, 9999)))
            end = table.before_date(wall_clock(0).replace(year=max(grid.year, 1)))
            mask[:start] = False
            mask[end:] = False
        if grid.errors:
            mask &= (table.flags & FAILED) != 0
        if grid.box is not None:
            west, south, east, north = grid.box
            lat, lon = table.column("lat"), table.column("lon")
            mask &= (lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)
        positions = np.flatnonzero(mask)
        if grid.label is not None:
            positions = np.intersect1d(positions, self._label_rows(table, grid.label))
        if grid.person is not None:
            positions = np.intersect1d(positions, self._person_rows(table, grid.person))
        return positions.astype(np.int64)

    @staticmethod
    def _label_rows(table: BrowseTable, label: str) -> np.ndarray:
        code = table.code_of("label", label)
        if code is None:
            return np.empty(0, np.int64)
        start = table.column("label_start")
        return table.column("label_rows")[start[code] : start[code + 1]]

    def _person_rows(self, table: BrowseTable, person_id: int) -> np.ndarray:
        people = self.data.people()
        person = people.people.get(person_id)
        if person is None:
            return np.empty(0, np.int64)
        paths = {people.faces[face].path for face in person.faces}
        return table.positions_of([key_id(path) for path in paths])


def aspect_class(aspect: float) -> str:
    """The grid's class for an image of this width / height (a 4:3 frame when unknown)."""
    if not aspect or not math.isfinite(aspect):
        return "r133"
    nearest = min(ASPECTS, key=lambda a: abs(math.log(a / 100 / aspect)))
    return f"r{nearest}"


def cards(
    data: ResultsData, table: BrowseTable, positions: np.ndarray, context: str
) -> list[dict[str, Any]]:
    """What the grid shows of each image; ``context``: the query that leads back to this
    result set from the viewer."""
    versions: dict[str, int | None] = {}
    shards = table.table("shard")
    found = []
    for position in positions.tolist():
        path = table.key(position)
        shard = shards[int(table.codes("shard")[position])]
        if shard not in versions:
            zipped = data.thumbnail_file(shard)
            versions[shard] = zipped.stat().st_mtime_ns if zipped is not None else None
        flags = int(table.flags[position])
        thumbnail = None
        if versions[shard] is not None and not flags & NO_THUMBNAIL:
            row = int(table.column("row")[position])
            thumbnail = f"/thumbnail/{shard}/{row}?v={versions[shard]}"
        when = wall_clock(int(table.date[position]))
        found.append(
            {
                "path": path,
                "id": f"{int(table.key_id[position]):x}",
                "thumbnail": thumbnail,
                "aspect": "r100"
                if thumbnail is None
                else aspect_class(float(table.column("aspect")[position])),
                "error": table.value("error", position) if flags & FAILED else None,
                "file_time": bool(flags & FILE_TIME),
                "when": when,
                "href": f"/view?{urlencode([('path', path)])}{'&' + context if context else ''}",
            }
        )
    return found
