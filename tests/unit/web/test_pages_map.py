"""The map page: clusters of the GPS photos on the offline world map, and the grid of an area."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from starlette.testclient import TestClient

from imganalyzer.web.pages_map import (
    CELLS,
    ProjectedPoints,
    area_of,
    clusters,
    frame_of,
    world_frame,
)
from imganalyzer.web.selection import parse_box
from imganalyzer.web.worldmap import WORLD_BOX, project

from .conftest import PARIS, tiles


def test_map_shows_gps_photos_and_selects_them(client: TestClient) -> None:
    page = client.get("/map").text
    counts = [int(n) for n in re.findall(r"<text [^>]*>(\d+)</text>", page)]
    assert sum(counts) == 2 and "2 photos with a position here" in page
    zoom = html.unescape(re.search(r'<a href="(/map\?box=[^"]+)" class="cluster">', page).group(1))
    assert "2 photos with a position here" in client.get(zoom).text
    assert "<path d=" in page  # the country outlines, inline
    area = html.unescape(re.search(r'id="show-area" href="([^"]+)"', page).group(1))
    assert tiles(client.get(area).text) == PARIS[::-1]


def points_at(lon_lat: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, x, y) as ProjectedPoints gives them: sorted by x."""
    lon, lat = np.array(lon_lat, np.float64).T
    x, y = project(lon, lat)
    order = np.argsort(x, kind="stable")
    return np.arange(len(lon))[order], x[order].astype(np.float32), y[order].astype(np.float32)


def test_near_points_share_a_cluster_at_their_mean_and_far_ones_do_not() -> None:
    # Paris three times, Lisbon once, and Sydney outside the frame (Europe)
    places = [(2.29, 48.86), (2.34, 48.86), (2.35, 48.85), (-9.14, 38.72), (151.2, -33.9)]
    frame = frame_of(-20, 30, 30, 60)
    found, inside = clusters(points_at(places), frame)
    assert sorted(inside.tolist()) == [0, 1, 2, 3]
    by_count = {c["count"]: c for c in found}
    assert sorted(by_count) == [1, 3]
    x, y = project(np.array([p[0] for p in places[:3]]), np.array([p[1] for p in places[:3]]))
    assert by_count[3]["x"] == pytest.approx(x.mean(), abs=0.01)
    assert by_count[3]["y"] == pytest.approx(y.mean(), abs=0.01)
    assert by_count[3]["r"] > by_count[1]["r"]  # more photos, a bigger circle


def test_a_clusters_links_open_an_area_that_holds_its_photos() -> None:
    found, _ = clusters(points_at([(-9.14, 38.72)]), frame_of(-20, 30, 30, 60))
    (lisbon,) = found
    assert lisbon["zoom"].startswith("/map?box=") and lisbon["grid"].startswith("/?box=")
    west, south, east, north = parse_box(lisbon["zoom"].split("=", 1)[1])
    assert west <= -9.14 <= east and south <= 38.72 <= north
    assert east - west == pytest.approx(50 / CELLS, rel=0.01)  # one cell of the frame


def test_no_points_make_no_clusters() -> None:
    found, inside = clusters(points_at([(151.2, -33.9)]), frame_of(-20, 30, 30, 60))
    assert found == [] and len(inside) == 0


@pytest.mark.parametrize(
    ("params", "area"),
    [
        ({}, WORLD_BOX),
        ({"box": "2,48,3,49"}, (2.0, 48.0, 3.0, 49.0)),
        ({"box": "3,48,2,49"}, WORLD_BOX),  # west of its east: no area
        ({"box": "2,48,2,49"}, WORLD_BOX),  # no width
        ({"focus": "48.86,2.29"}, (1.29, 47.86, 3.29, 49.86)),
        ({"focus": "95,2"}, WORLD_BOX),
        ({"focus": "nan,nan"}, WORLD_BOX),
        ({"focus": "48.86"}, WORLD_BOX),
    ],
)
def test_the_area_shown_is_the_box_around_the_focus_or_the_world(
    params: dict[str, str], area: tuple[float, ...]
) -> None:
    assert area_of(params) == pytest.approx(area)


def test_gps_points_are_projected_once_per_table_and_sorted_by_x(client: TestClient) -> None:
    table = client.app.state.browse.table()
    points = ProjectedPoints()
    positions, x, y = points.of(table)
    assert sorted(table.key(int(p)) for p in positions) == PARIS and list(x) == sorted(x)
    assert points.of(table)[0] is positions  # kept
    assert points.clusters(table, world_frame()) is points.clusters(table, world_frame())


def test_a_focused_map_shows_its_photos_and_how_to_zoom_out(client: TestClient) -> None:
    page = client.get("/map", params={"focus": "48.8584,2.2945"}).text  # the viewer's link
    assert "2 photos with a position here" in page and "(2 in all)" not in page
    assert 'href="/map">whole world</a>' in page and ">zoom out</a>" in page
    assert tiles(page) == PARIS[::-1]  # the newest photos of the area, under the map
    empty = client.get("/map", params={"box": "100,-10,110,0"}).text
    assert "0 photos with a position here" in empty and 'id="show-area"' not in empty
