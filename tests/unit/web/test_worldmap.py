"""The offline world map: web Mercator on a 1000-unit square, and the country outlines made
from a shapefile (the shipped one, and one written here record by record)."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.web.worldmap import (
    MAX_LAT,
    SIMPLIFY,
    SIZE,
    project,
    read_polygons,
    ring_path,
    unproject,
    world_svg,
)

WORLD_SVG = Path(__file__).parents[3] / "imganalyzer" / "web" / "static" / "world.svg"


@pytest.mark.parametrize(
    ("lon", "lat", "x", "y"),
    [(-180, 0, 0, 500), (0, 0, 500, 500), (180, 0, 1000, 500), (90, 0, 750, 500)],
)
def test_longitude_maps_linearly_and_the_equator_to_the_middle(
    lon: float, lat: float, x: float, y: float
) -> None:
    px, py = project(lon, lat)
    assert float(px) == pytest.approx(x) and float(py) == pytest.approx(y)


def test_north_is_up_and_latitudes_stretch_towards_the_poles() -> None:
    _, (equator, paris, north, south) = project(np.zeros(4), np.array([0.0, 48.86, 60.0, -60.0]))
    assert north < paris < equator < south
    assert north + south == pytest.approx(SIZE)  # symmetric about the equator
    _, (y30, y60) = project(np.zeros(2), np.array([30.0, 60.0]))
    assert (equator - y30) < (y30 - y60)  # Mercator: 30 degrees further north span more


def test_latitudes_beyond_the_limit_are_clipped_to_it() -> None:
    assert float(project(0, 89.9)[1]) == float(project(0, MAX_LAT)[1]) > 0
    assert float(project(0, -90)[1]) == float(project(0, -MAX_LAT)[1]) < SIZE


def test_unproject_inverts_project() -> None:
    lon, lat = np.meshgrid(np.linspace(-180, 180, 13), np.linspace(-MAX_LAT, MAX_LAT, 11))
    back_lon, back_lat = unproject(*project(lon, lat))
    assert np.allclose(back_lon, lon) and np.allclose(back_lat, lat)


def shapefile(path: Path, records: list[tuple[int, list[np.ndarray]]]) -> Path:
    """An ESRI shapefile of (shape type, rings of (n, 2) lon/lat points) records."""
    body = b""
    for number, (kind, rings) in enumerate(records, 1):
        points = np.concatenate(rings) if rings else np.zeros((0, 2))
        starts = np.cumsum([0] + [len(r) for r in rings])[:-1].astype(int)
        content = struct.pack("<i4d", kind, 0, 0, 0, 0)
        content += struct.pack("<ii", len(rings), len(points))
        content += struct.pack(f"<{len(rings)}i", *starts)
        content += points.astype("<f8").tobytes()
        body += struct.pack(">ii", number, len(content) // 2) + content
    header = struct.pack(">7i", 9994, 0, 0, 0, 0, 0, (100 + len(body)) // 2) + bytes(72)
    path.write_bytes(header + body)
    return path


SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]])
HOLE = np.array([[2.0, 2.0], [2.0, 8.0], [8.0, 8.0], [8.0, 2.0], [2.0, 2.0]])


def test_polygons_are_read_ring_by_ring_and_other_shapes_skipped(tmp_path: Path) -> None:
    shp = shapefile(
        tmp_path / "world.shp",
        [(5, [SQUARE, HOLE]), (1, []), (15, [SQUARE + 20]), (3, [SQUARE])],  # 1, 3: point, line
    )
    polygons = read_polygons(shp)
    assert len(polygons) == 2 and [len(p) for p in polygons] == [2, 1]
    assert np.array_equal(polygons[0][0], SQUARE) and np.array_equal(polygons[0][1], HOLE)
    assert np.array_equal(polygons[1][0], SQUARE + 20)


def test_a_ring_drops_points_closer_than_the_simplification_step() -> None:
    step = SIMPLIFY / SIZE * 360 / 4  # a quarter of the step, in degrees of longitude
    crowded = np.array([[0, 0], [step, 0], [2 * step, 0], [10, 0], [10, 10], [0, 10], [0, 0]])
    path = ring_path(crowded)
    assert path.startswith("M500.0 500.0L") and path.endswith("Z")
    assert path.count("L") == 4  # the two crowded points are gone, the corners kept
    assert ring_path(np.array([[0, 0], [step, 0], [0, step]])) == ""  # a speck: no ring


def test_the_svg_has_one_path_per_polygon_in_map_units(tmp_path: Path) -> None:
    svg = world_svg(shapefile(tmp_path / "w.shp", [(5, [SQUARE, HOLE]), (5, [SQUARE - 40])]))
    root = ET.fromstring(svg)
    assert root.get("viewBox") == "0 0 1000 1000"
    paths = [p.get("d") for p in root.iter("{http://www.w3.org/2000/svg}path")]
    assert len(paths) == 2 and paths[0].count("M") == 2  # the hole is a second subpath
    assert "Natural Earth" in svg


def test_the_shipped_map_covers_the_world_inside_its_square() -> None:
    root = ET.fromstring(WORLD_SVG.read_text(encoding="utf-8"))
    assert root.get("viewBox") == "0 0 1000 1000"
    paths = [p.get("d") or "" for p in root.iter("{http://www.w3.org/2000/svg}path")]
    assert len(paths) > 150  # countries
    numbers = np.array(
        [float(v) for d in paths for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    ).reshape(-1, 2)
    x, y = numbers[:, 0], numbers[:, 1]
    assert x.min() >= 0 and x.max() <= SIZE and y.min() >= 0 and y.max() <= SIZE
    assert x.min() < 5 and x.max() > 995  # from the antimeridian round to it
    paris_x, paris_y = (float(v) for v in project(2.35, 48.86))
    near = (abs(x - paris_x) < 15) & (abs(y - paris_y) < 15)
    assert near.any()  # France's outline lies around Paris
