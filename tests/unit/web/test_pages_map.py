"""The map page: clusters of the GPS photos on the offline world map, and the grid of an area."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

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
