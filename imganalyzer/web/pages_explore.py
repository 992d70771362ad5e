"""Explore: the library by people (face avatars), places (countries, then towns), things
(object labels), cameras, lenses and years, each with its count and its newest photo; every
entry opens the timeline filtered to it. Counted once per index version from the browse
table's code columns (a bincount each)."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imganalyzer.search.browse import NO_THUMBNAIL, BrowseTable
from imganalyzer.web.data import ResultsData
from imganalyzer.web.pages_timeline import browse_of
from imganalyzer.web.selection import cards
from imganalyzer.web.view import data_of, render

# Entries listed per section on the explore page (its own page lists all of them).
SHOWN = 24
COLUMNS = {
    "places": "country", "things": "label", "cameras": "camera", "lenses": "lens",
    "years": "year",
}  # fmt: skip
SECTIONS = {
    "places": "Places",
    "things": "Things",
    "cameras": "Cameras",
    "lenses": "Lenses",
    "years": "Years",
}


class Facets:
    """Per column: (value, images, newest position) sorted by images, for one table."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: BrowseTable | None = None
        self._found: dict[str, list[Any]] = {}

    def of(self, table: BrowseTable, column: str) -> list[Any]:
        with self._lock:
            if self._table is not table:
                self._table, self._found = table, {}
            if column not in self._found:
                count = _towns if column == "towns" else _count
                self._found[column] = count(table, column)
            return self._found[column]

    def warm(self, table: BrowseTable) -> None:
        for column in (*COLUMNS.values(), "towns"):
            self.of(table, column)


def _towns(table: BrowseTable, _column: str) -> list[tuple[int, int, int]]:
    """(country code, town code, images) of every town, most images first."""
    towns, countries = table.codes("town").astype(np.int64), table.codes("country")
    known = (towns >= 0) & (countries >= 0)
    pairs = countries[known].astype(np.int64) * (len(table.table("town")) + 1) + towns[known]
    values, counts = np.unique(pairs, return_counts=True)
    width = len(table.table("town")) + 1
    found = [(int(v) // width, int(v) % width, int(c)) for v, c in zip(values, counts, strict=True)]
    return sorted(found, key=lambda f: -f[2])


def _count(table: BrowseTable, column: str) -> list[tuple[str, int, int]]:
    """(value, images, position of its newest image that has a thumbnail if any)."""
    has_thumb = (table.flags & NO_THUMBNAIL) == 0
    if column == "label":
        start = table.column("label_start")
        rows = table.column("label_rows")
        found = []
        for code, name in enumerate(table.table("label")):
            own = rows[start[code] : start[code + 1]]
            if len(own):
                good = own[has_thumb[own]]
                found.append((name, len(own), int(good[0] if len(good) else own[0])))
        return sorted(found, key=lambda f: (-f[1], f[0]))
    if column == "year":
        codes = (table.date // 86400).astype("timedelta64[D]") + np.datetime64("1970-01-01")
        years = codes.astype("M8[Y]").astype(np.int64) + 1970
        names = (
            [str(y) for y in range(int(years.min()), int(years.max()) + 1)] if len(years) else []
        )
        values = years - (int(years.min()) if len(years) else 0)
    else:
        names = table.table(column)
        values = table.codes(column)
    found = []
    for code, count, newest in _first_and_count(values, has_thumb, len(names)):
        found.append((names[code], count, newest))
    order = (lambda f: -int(f[0])) if column == "year" else (lambda f: (-f[1], f[0]))
    return sorted(found, key=order)


def _first_and_count(
    values: np.ndarray, has_thumb: np.ndarray, n: int
) -> list[tuple[int, int, int]]:
    known = values >= 0
    counts = np.bincount(values[known], minlength=n)
    first = np.full(n, -1, np.int64)
    for mask in (known, known & has_thumb):  # the second pass wins where it finds one
        codes, at = np.unique(values[mask], return_index=True)
        first[codes] = np.flatnonzero(mask)[at]
    return [(int(c), int(counts[c]), int(first[c])) for c in np.flatnonzero(counts)]


def _entries(
    data: ResultsData,
    table: BrowseTable,
    rows: list[tuple[str, int, int]],
    param: str,
    limit: int | None,
) -> list[dict[str, Any]]:
    rows = rows[:limit]
    covers = cards(data, table, np.array([r[2] for r in rows], np.int64), "")
    return [
        {"label": value, "count": count, "href": "/?" + urlencode({param: value}), "cover": cover}
        for (value, count, _), cover in zip(rows, covers, strict=True)
    ]


def places(
    data: ResultsData, table: BrowseTable, facets: Facets, limit: int | None
) -> list[dict[str, Any]]:
    """Countries by images, each with its towns."""
    countries = _entries(data, table, facets.of(table, "country"), "country", limit)
    names = table.table("town")
    towns: dict[int, list[tuple[int, int]]] = {}
    for country, town, count in facets.of(table, "towns"):
        towns.setdefault(country, []).append((town, count))
    for country in countries:
        code = table.code_of("country", country["label"])
        country["towns"] = [
            {"label": names[town], "count": count,
             "href": "/?" + urlencode({"country": country["label"], "town": names[town]})}
            for town, count in towns.get(code if code is not None else -1, [])[:limit]
        ]  # fmt: skip
    return countries


def people_entries(data: ResultsData) -> list[dict[str, Any]]:
    people = data.people()
    found = []
    for person in people.people.values():
        images = len({people.faces[f].path for f in person.faces})
        if images:
            found.append(
                {"id": person.id, "label": person.label, "named": person.name is not None,
                 "count": images, "crop": bool(person.crop), "href": f"/?person={person.id}"}
            )  # fmt: skip
    return sorted(found, key=lambda p: (not p["named"], -p["count"], p["id"]))


def explore_page(request: Request) -> Response:
    data, table = data_of(request), browse_of(request).table()
    section = request.path_params.get("section")
    if table is None:
        return render(request, "explore.html", missing=True, section=section)
    facets: Facets = request.app.state.facets
    limit = None if section else SHOWN
    lists = {
        "places": lambda: places(data, table, facets, limit),
        "things": lambda: _entries(data, table, facets.of(table, "label"), "label", limit),
        "cameras": lambda: _entries(data, table, facets.of(table, "camera"), "camera", limit),
        "lenses": lambda: _entries(data, table, facets.of(table, "lens"), "lens", limit),
        "years": lambda: _entries(data, table, facets.of(table, "year"), "year", limit),
    }
    wanted = [section] if section in lists else list(lists)
    sections = [
        {
            "id": name,
            "title": SECTIONS[name],
            "entries": lists[name](),
            "total": len(facets.of(table, COLUMNS[name])),
            "all": section == name,
        }
        for name in wanted
    ]
    people = people_entries(data) if section in (None, "people") else []
    return render(
        request, "explore.html", sections=sections, people=people, section=section, shown=SHOWN
    )


def routes() -> list[Route]:
    return [Route("/explore", explore_page), Route("/explore/{section:str}", explore_page)]
