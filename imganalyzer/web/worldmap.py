"""The offline world map: the projection the map page draws with, and the maker of the
country outlines it ships (``static/world.svg``).

The outlines are Natural Earth's 1:110m Admin 0 countries (public domain,
https://www.naturalearthdata.com/about/terms-of-use/), as the shapefile geopandas 0.14
shipped in its wheel (``geopandas/datasets/naturalearth_lowres``). Made once with::

    python -m imganalyzer.web.worldmap naturalearth_lowres.shp imganalyzer/web/static/world.svg

Projection: spherical (web) Mercator on a square of :data:`SIZE` units, north up, latitudes
clipped to ±:data:`MAX_LAT` degrees.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 1000.0
MAX_LAT = 85.0
# The world as the map first shows it: Antarctica and the far north left out.
WORLD_BOX = (-180.0, -58.0, 180.0, 80.0)
# Points closer than this (map units) to the previous kept one are dropped from outlines.
SIMPLIFY = 0.35


def project(lon: np.ndarray | float, lat: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Degrees -> map units: x east from the antimeridian, y south from the top."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LAT, MAX_LAT)
    x = (lon + 180.0) / 360.0 * SIZE
    y = (1.0 - np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) / np.pi) / 2.0 * SIZE
    return x, y


def unproject(x: Any, y: Any) -> tuple[Any, Any]:
    """Map units -> (longitude, latitude) in degrees (numbers or arrays)."""
    lon = np.asarray(x, dtype=np.float64) / SIZE * 360.0 - 180.0
    lat = np.degrees(2 * np.arctan(np.exp((1.0 - 2.0 * np.asarray(y) / SIZE) * np.pi)) - np.pi / 2)
    return lon, lat


def read_polygons(shp: Path) -> list[list[np.ndarray]]:
    """The rings ((n, 2) lon/lat arrays) of every polygon record of an ESRI shapefile."""
    data = shp.read_bytes()
    shapes = []
    at = 100  # the file header
    while at + 8 <= len(data):
        _number, words = struct.unpack(">ii", data[at : at + 8])
        record = data[at + 8 : at + 8 + 2 * words]
        at += 8 + 2 * words
        (kind,) = struct.unpack("<i", record[:4])
        if kind not in (5, 15, 25):  # polygon (plain, Z, M)
            continue
        parts, points = struct.unpack("<ii", record[36:44])
        starts = list(struct.unpack(f"<{parts}i", record[44 : 44 + 4 * parts])) + [points]
        offset = 44 + 4 * parts
        xy = np.frombuffer(record[offset : offset + 16 * points], "<f8").reshape(points, 2)
        shapes.append([xy[a:b] for a, b in zip(starts, starts[1:], strict=False)])
    return shapes


def ring_path(ring: np.ndarray) -> str:
    x, y = project(ring[:, 0], ring[:, 1])
    kept = [(x[0], y[0])]
    for px, py in zip(x[1:], y[1:], strict=True):
        if abs(px - kept[-1][0]) + abs(py - kept[-1][1]) >= SIMPLIFY:
            kept.append((px, py))
    if len(kept) < 3:
        return ""
    return "M" + "L".join(f"{px:.1f} {py:.1f}" for px, py in kept) + "Z"


def world_svg(shp: Path) -> str:
    paths = []
    for rings in read_polygons(shp):
        d = "".join(ring_path(ring) for ring in rings)
        if d:
            paths.append(f'<path d="{d}"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE:.0f} {SIZE:.0f}">'
        "<!-- Natural Earth 1:110m countries, public domain (naturalearthdata.com) -->"
        '<g fill="#dfe3e8" stroke="#9aa3ad" stroke-width="0.4" stroke-linejoin="round">'
        + "".join(paths)
        + "</g></svg>\n"
    )


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(world_svg(Path(sys.argv[1])), encoding="utf-8")
