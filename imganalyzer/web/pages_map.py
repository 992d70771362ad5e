"""The map: photos with a GPS position as clusters on an offline world map (country outlines
shipped in the package: :mod:`.worldmap`; no tile server). A cluster zooms in; the area
shown, or a rectangle dragged on the map, opens the grid of its photos."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imganalyzer.search.browse import BrowseTable
from imganalyzer.web.pages_timeline import browse_of, params_of
from imganalyzer.web.selection import GridFilter, cards, parse_box
from imganalyzer.web.view import data_of, render
from imganalyzer.web.worldmap import SIZE, WORLD_BOX, project, unproject

WORLD_SVG = Path(__file__).parent / "static" / "world.svg"
# Clusters across the map's width: cells of the area / CELLS wide.
CELLS = 28
CACHED_FRAMES = 32  # the clusters of the areas shown last (the world view above all)
PREVIEW = 24  # newest photos of the area shown under the map
FOCUS_DEGREES = 1.0  # half the side of the area a `focus=lat,lon` opens


class ProjectedPoints:
    """The map positions of the table's GPS photos (computed once per table)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: BrowseTable | None = None
        self._points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._clusters: OrderedDict[tuple, tuple[list[dict[str, Any]], np.ndarray]] = OrderedDict()

    def of(self, table: BrowseTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, x, y) of the photos with a position, sorted by x (an area is then a
        slice), x and y as float32 map units."""
        with self._lock:
            if self._table is not table or self._points is None:
                lat, lon = table.column("lat"), table.column("lon")
                positions = np.flatnonzero(~np.isnan(lat) & ~np.isnan(lon))
                x, y = project(lon[positions], lat[positions])
                order = np.argsort(x, kind="stable")
                x, y = x[order].astype(np.float32), y[order].astype(np.float32)
                self._table, self._points = table, (positions[order], x, y)
                self._clusters.clear()
            return self._points

    def clusters(
        self, table: BrowseTable, frame: tuple[float, ...]
    ) -> tuple[list[dict[str, Any]], np.ndarray]:
        """:func:`clusters` of the frame, kept for the frames asked most recently."""
        points = self.of(table)
        with self._lock:
            found = self._clusters.get(frame)
        if found is None:
            found = clusters(points, frame)
            with self._lock:
                self._clusters[frame] = found
                while len(self._clusters) > CACHED_FRAMES:
                    self._clusters.popitem(last=False)
        return found


@functools.cache
def land_paths() -> Markup:
    """The country outlines' ``<path>`` elements (our own file, drawn inline so that the
    page's style keeps their lines thin at any zoom)."""
    text = WORLD_SVG.read_text(encoding="utf-8")
    start = text.index(">", text.index("<g ")) + 1
    return Markup(text[start : text.rindex("</g>")])  # noqa: S704 - a file of the package


def area_of(params: dict[str, str]) -> tuple[float, float, float, float]:
    """The area shown (west, south, east, north): ``box``, around ``focus``, or the world."""
    box = parse_box(params.get("box", ""))
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        return box
    try:
        lat, lon = (float(v) for v in params.get("focus", "").split(","))
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            d = FOCUS_DEGREES
            return max(-180, lon - d), max(-85, lat - d), min(180, lon + d), min(85, lat + d)
    except ValueError:
        pass
    return WORLD_BOX


def clusters(
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
    frame: tuple[float, ...],
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Clusters of the points inside ``frame`` (x0, y0, x1, y1 in map units) on a grid,
    and the positions of those points (in no order)."""
    positions, x, y = points
    x0, y0, x1, y1 = frame
    lo, hi = np.searchsorted(x, [x0, x1], side="left")[0], np.searchsorted(x, x1, side="right")
    positions, x, y = positions[lo:hi], x[lo:hi], y[lo:hi]
    inside = (y >= y0) & (y <= y1)
    px, py = x[inside], y[inside]
    cell = max((x1 - x0), (y1 - y0)) / CELLS
    cx = np.floor((px - x0) / cell).astype(np.int64)
    cy = np.floor((py - y0) / cell).astype(np.int64)
    width = CELLS * 4  # cells across (a frame wider than tall has more than CELLS)
    ids = np.clip(cy, 0, width - 1) * width + np.clip(cx, 0, width - 1)
    found = []
    counts = np.bincount(ids, minlength=width * width)  # one pass: no sort of the points
    sum_x = np.bincount(ids, weights=px, minlength=width * width)
    sum_y = np.bincount(ids, weights=py, minlength=width * width)
    codes = np.flatnonzero(counts)
    gx, gy = codes % width, codes // width
    west, north = unproject(x0 + gx * cell, y0 + gy * cell)
    east, south = unproject(x0 + (gx + 1) * cell, y0 + (gy + 1) * cell)
    radius = cell * np.minimum(0.5, 0.22 + 0.1 * np.log10(counts[codes]))
    for i, code in enumerate(codes.tolist()):
        count = int(counts[code])
        box = f"{west[i]:.5f},{south[i]:.5f},{east[i]:.5f},{north[i]:.5f}"  # no escaping needed
        found.append(
            {"x": round(sum_x[code] / count, 2), "y": round(sum_y[code] / count, 2),
             "count": count, "r": round(float(radius[i]), 2),
             "zoom": f"/map?box={box}", "grid": f"/?box={box}"}
        )  # fmt: skip
    return found, positions[inside]


def frame_of(west: float, south: float, east: float, north: float) -> tuple[float, ...]:
    """An area in degrees as map units (x0, y0, x1, y1)."""
    x0, y1 = project(west, south)
    x1, y0 = project(east, north)
    return (float(x0), float(y0), float(x1), float(y1))


def world_frame() -> tuple[float, ...]:
    return frame_of(*WORLD_BOX)


def map_page(request: Request) -> Response:
    data, table = data_of(request), browse_of(request).table()
    params = params_of(request)
    west, south, east, north = area_of(params)
    frame = frame_of(west, south, east, north)
    view_box = (frame[0], frame[1], frame[2] - frame[0], frame[3] - frame[1])
    context: dict[str, Any] = {
        "view": " ".join(f"{v:.3f}" for v in view_box),
        "size": SIZE,
        "area": f"{west:.5f},{south:.5f},{east:.5f},{north:.5f}",
        "world": (west, south, east, north) == WORLD_BOX,
        "land": land_paths(),
    }
    if table is None:
        return render(request, "map.html", missing=True, **context)
    points: ProjectedPoints = request.app.state.map_points
    found, inside = points.clusters(table, frame)
    grid = GridFilter(box=(west, south, east, north))
    gps = len(points.of(table)[0])
    newest = inside if len(inside) <= PREVIEW else np.partition(inside, PREVIEW)[:PREVIEW]
    preview = cards(data, table, np.sort(newest), grid.query())
    wider = _zoomed_out(west, south, east, north)
    return render(
        request, "map.html", clusters=found, total=len(inside), gps=gps,
        preview=preview, grid_href="/?" + grid.query(), wider=wider, **context,
    )  # fmt: skip


def _zoomed_out(west: float, south: float, east: float, north: float) -> str | None:
    if (west, south, east, north) == WORLD_BOX:
        return None
    dx, dy = (east - west), (north - south)
    box = (max(-180, west - dx), max(-85, south - dy), min(180, east + dx), min(85, north + dy))
    if box[2] - box[0] >= 300:
        return "/map"
    return "/map?" + urlencode({"box": ",".join(f"{v:.5f}" for v in box)})


def routes() -> list[Route]:
    return [Route("/map", map_page)]
