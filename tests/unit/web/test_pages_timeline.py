"""The timeline: newest first, grouped by month and day, paged by cursors."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from imganalyzer.web import pages_timeline

from .conftest import TIMELINE, tiles


def test_timeline_is_newest_first_grouped_by_month(client: TestClient) -> None:
    page = client.get("/").text
    assert tiles(page) == TIMELINE
    assert re.findall(r'data-month="([\d-]+)"', page) == [
        "2022-03",
        "2022-01",
        "2021-06",
        "2020-09",
    ]
    assert "Sunday 6 June" in page and "Saturday 5 June" in page
    assert "(some dated by file time)" in page and page.count('class="badge filetime"') == 2
    assert ">2022</a>" in page and 'href="/?month=2021-06"' in page  # the scrubber


def test_timeline_pages_by_cursor(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages_timeline, "PER_PAGE", 4)
    first = client.get("/").text
    assert tiles(first) == TIMELINE[:4]
    older = html.unescape(re.search(r'rel="next" href="([^"]+)"', first).group(1))
    second = client.get(older).text
    assert tiles(second) == TIMELINE[4:] and 'rel="next"' not in second
    newer = html.unescape(re.search(r'rel="prev" href="([^"]+)"', second).group(1))
    assert tiles(client.get(newer).text) == TIMELINE[:4]
    assert tiles(client.get("/", params={"month": "2021-06"}).text) == TIMELINE[2:6]
