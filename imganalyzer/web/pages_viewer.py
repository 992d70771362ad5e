"""The viewer: one image from the largest stored tier, full window, with ← and → through the
result set it was opened from (a timeline grid or a search), ``i`` for the info panel and
Esc back to the grid. The info panel reads the way photographers do: exposure, camera and
lens, the capture time with its UTC offset, the place, caption and answers, text, named
faces, technical values, aesthetic score and duplicate group."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from imganalyzer.decode.names import display_names, place_parts
from imganalyzer.search.browse import FAILED, FILE_TIME, NO_THUMBNAIL, BrowseTable, wall_clock
from imganalyzer.search.documents import key_id
from imganalyzer.web import facts
from imganalyzer.web.pages_images import image_details
from imganalyzer.web.pages_timeline import browse_of, params_of
from imganalyzer.web.selection import GridFilter
from imganalyzer.web.view import data_of, not_found, render

# Query parameters of a search that the viewer carries to find its neighbours.
SEARCH_PARAMS = (
    "q", "mode", "page", "after", "before", "camera", "lens", "person", "place", "folder",
    "min_aesthetic", "min_sharpness", "has_text", "similar",
)  # fmt: skip


def viewer_page(request: Request) -> Response:
    data = data_of(request)
    params = params_of(request)
    path = params.get("path", "")
    try:
        details = image_details(data, path, similar=False)
    except LookupError as error:
        return not_found(request, str(error))
    if details is None:
        return not_found(request, f"{path!r} is not in the index")
    table = browse_of(request).table()
    info = _info(data, details, table)
    location = details["location"]
    if info.get("no_thumbnail") or location is None:
        details["tier"] = None  # never decoded: no stored image to show
    elif not data.layout.tiers(location.shard).is_dir():
        details["tier"] = data.thumbnail_url(location)
    if params.get("from") == "search":
        nav = _search_neighbours(request, params, path)
    else:
        nav = _grid_neighbours(request, table, GridFilter.of(params), path)
    return render(request, "viewer.html", image=details, info=info, nav=nav)


def _info(data: Any, details: dict[str, Any], table: BrowseTable | None) -> dict[str, Any]:
    metadata = details["metadata_row"]
    town, region, country = place_parts(
        metadata.get("place"), metadata.get("region"), metadata.get("country")
    )
    info: dict[str, Any] = {
        "exposure": facts.exposure_line(metadata),
        "camera": display_names(metadata)["camera"],
        "lens": metadata.get("lens"),
        "technical": facts.technical_lines(details["technical_row"]),
        "size": facts.size_line(details["width"], details["height"], details["file_size"]),
        "town": town,
        "region": region,
        "country": country,
        "gps": None,
        "when": None,
        "error_kind": None,
    }
    lat, lon = metadata.get("gps_latitude"), metadata.get("gps_longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        info["gps"] = {"lat": lat, "lon": lon, "text": f"{lat:.5f}, {lon:.5f}"}
    position = table.position_of(key_id(details["path"])) if table is not None else None
    if table is not None and position is not None:
        flags = int(table.flags[position])
        offset = int(table.column("offset")[position])
        wall = wall_clock(int(table.date[position]))
        info["when"] = facts.capture_time(wall, offset, bool(flags & FILE_TIME))
        info["month"] = f"{wall:%Y-%m}"
        info["no_thumbnail"] = bool(flags & NO_THUMBNAIL)
        if flags & FAILED:
            info["error_kind"] = table.value("error", position)
    return info


def _grid_neighbours(
    request: Request, table: BrowseTable | None, grid: GridFilter, path: str
) -> dict[str, Any]:
    """Previous and next image in the grid's order, the way back, and where we are."""
    query = grid.query()
    suffix = f"&{query}" if query else ""
    nav: dict[str, Any] = {"back": "/" + (f"?{query}" if query else ""), "context": query}
    position = table.position_of(key_id(path)) if table is not None else None
    if table is None or position is None:
        return nav
    selected = browse_of(request).select(table, grid)
    if selected is None:
        index, total = position, table.n
    else:
        index = int(np.searchsorted(selected, position))
        if index >= len(selected) or selected[index] != position:
            return nav
        total = len(selected)

    def at(i: int) -> int:
        return i if selected is None else int(selected[i])

    def link(i: int) -> str:
        return "/view?" + urlencode([("path", table.key(at(i)))]) + suffix

    anchor = f"#i-{int(table.key_id[position]):x}"
    back = grid.params()
    if index > 0:
        back = back + [("after", table.cursor(at(index - 1)).text())]
    nav.update(
        back=("/?" + urlencode(back) if back else "/") + anchor,
        prev=link(index - 1) if index > 0 else None,
        next=link(index + 1) if index + 1 < total else None,
        index=index + 1,
        total=total,
    )
    return nav


def _search_neighbours(request: Request, params: dict[str, str], path: str) -> dict[str, Any]:
    from imganalyzer.web.pages_search import search_paths

    carried = [(k, params[k]) for k in SEARCH_PARAMS if params.get(k)]
    query = urlencode([("from", "search"), *carried])
    nav: dict[str, Any] = {"back": "/search?" + urlencode(carried), "context": query}
    paths = search_paths(request, dict(carried))
    if path not in paths:
        return nav
    index = paths.index(path)

    def link(i: int) -> str:
        return "/view?" + urlencode([("path", paths[i])]) + "&" + query

    nav.update(
        back=nav["back"] + f"#i-{key_id(path):x}",
        prev=link(index - 1) if index > 0 else None,
        next=link(index + 1) if index + 1 < len(paths) else None,
        index=index + 1,
        total=len(paths),
    )
    return nav


def image_redirect(request: Request) -> Response:
    """The old image page's address opens the viewer."""
    return RedirectResponse(f"/view?{request.url.query}", status_code=307)


def routes() -> list[Route]:
    return [Route("/view", viewer_page), Route("/image", image_redirect)]
