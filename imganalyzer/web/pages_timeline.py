"""The timeline (the landing page): every image newest first, grouped by month and day,
with a year/month scrubber; the same grid filtered (by camera, lens, place, label, person,
year, map area, errors) is what the explore and map pages open. Pages are found by a
binary search in the browse table (a cursor, never an offset), so the millionth image
costs what the first does."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imganalyzer.search.browse import BrowseTable, Cursor
from imganalyzer.web.selection import BrowseSource, GridFilter, cards, whole_number
from imganalyzer.web.view import data_of, render

PER_PAGE = 150
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def browse_of(request: Request) -> BrowseSource:
    return request.app.state.browse


def params_of(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if len(v) <= 1000}


def page_start(table: BrowseTable, selected: np.ndarray | None, params: dict[str, str]) -> int:
    """Where the page starts in the selection: after a cursor, at a month, or at the top."""
    position = 0
    cursor = Cursor.parse(params.get("after", ""))
    if cursor is not None:
        position = table.after(cursor)
    elif params.get("month"):
        text_year, _, text_month = params["month"].partition("-")
        year, month = whole_number(text_year), whole_number(text_month)
        if year is not None and month is not None and 1 <= month <= 12 and 0 < year < 9999:
            following = (year + month // 12, month % 12 + 1)
            position = table.before_date(datetime(*following, 1))
    if selected is None:
        return position
    return int(np.searchsorted(selected, position))


def timeline_context(request: Request) -> dict[str, Any]:
    """What the timeline template shows: the page's months and days, paging, scrubber."""
    data, source = data_of(request), browse_of(request)
    params = params_of(request)
    grid = GridFilter.of(params)
    table = source.table()
    context: dict[str, Any] = {"grid": grid, "title": grid.describe(data), "params": params}
    if table is None:
        return context | {"missing": True}
    selected = source.select(table, grid)
    total = table.n if selected is None else len(selected)
    start = page_start(table, selected, params)
    stop = min(start + PER_PAGE, total)
    window = np.arange(start, stop) if selected is None else selected[start:stop]
    shown = cards(data, table, window, grid.query())
    query = grid.params()
    older = newer = None
    if stop < total:
        older = "/?" + urlencode(query + [("after", table.cursor(int(window[-1])).text())])
    if start > 0:
        back = max(0, start - PER_PAGE)
        before = back - 1
        if before < 0:
            newer = "/?" + urlencode(query) if query else "/"
        else:
            at = before if selected is None else int(selected[before])
            newer = "/?" + urlencode(query + [("after", table.cursor(at).text())])
    return context | {
        "months": group_by_day(shown),
        "total": total,
        "first": start + 1,
        "last": stop,
        "older": older,
        "newer": newer,
        "scrubber": scrubber(table, selected, query),
    }


def group_by_day(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards grouped into months and days, in the order given (newest first)."""
    months: list[dict[str, Any]] = []
    for card in shown:
        when: datetime = card["when"]
        month_id, day_id = when.strftime("%Y-%m"), when.strftime("%Y-%m-%d")
        if not months or months[-1]["id"] != month_id:
            label = f"{MONTHS[when.month - 1]} {when.year}"
            months.append({"id": month_id, "label": label, "days": []})
        days = months[-1]["days"]
        if not days or days[-1]["id"] != day_id:
            label = f"{WEEKDAYS[when.weekday()]} {when.day} {MONTHS[when.month - 1]}"
            days.append({"id": day_id, "label": label, "cards": [], "file_time": False})
        days[-1]["cards"].append(card)
        days[-1]["file_time"] |= card["file_time"]
    return months


def scrubber(
    table: BrowseTable, selected: np.ndarray | None, query: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Years, newest first, each with its months: (label, images, link to the month)."""
    if selected is None:
        months = [(y, m, count) for y, m, count, _ in table.months]
    else:
        months = _months_of(table.date[selected])
    years: list[dict[str, Any]] = []
    for year, month, count in months:
        if not years or years[-1]["year"] != year:
            years.append({"year": year, "count": 0, "months": []})
        link = "/?" + urlencode(query + [("month", f"{year:04d}-{month:02d}")])
        years[-1]["months"].append({"label": MONTHS[month - 1][:3], "count": count, "href": link})
        years[-1]["count"] += count
    for entry in years:
        entry["href"] = entry["months"][0]["href"]
    return years


def _months_of(dates: np.ndarray) -> list[tuple[int, int, int]]:
    if not len(dates):
        return []
    codes = (np.datetime64("1970-01-01") + (dates // 86400).astype("timedelta64[D]")).astype(
        "M8[M]"
    )
    values, counts = np.unique(codes.astype(np.int64), return_counts=True)
    return [
        (int(v) // 12 + 1970, int(v) % 12 + 1, int(c))
        for v, c in zip(values[::-1], counts[::-1], strict=True)
    ]


def timeline_page(request: Request) -> Response:
    if "q" in request.query_params:  # the search page's old address
        from starlette.responses import RedirectResponse

        return RedirectResponse(f"/search?{request.url.query}", status_code=307)
    return render(request, "timeline.html", **timeline_context(request))


def routes() -> list[Route]:
    return [Route("/", timeline_page)]
