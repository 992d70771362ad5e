"""The explore page: facets of the library that open filtered grids."""

from __future__ import annotations

import re

from starlette.testclient import TestClient


def test_explore_lists_facets_that_open_grids(client: TestClient) -> None:
    page = client.get("/explore").text
    for link in (
        'href="/?camera=FUJIFILM+X-T4"',
        'href="/?label=cat"',
        'href="/?year=2021"',
        'href="/?person=1"',
        'href="/explore/people"' if False else 'href="/people"',
    ):
        assert link in page, link
    cameras = client.get("/explore/cameras").text
    assert re.search(r'FUJIFILM X-T4</span><span class="count">2<', cameras)
