"""The timeline: newest first, grouped by month and day, paged by cursors."""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from imganalyzer.web import create_app, pages_timeline
from imganalyzer.web.pages_timeline import group_by_day
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import PARIS, TIMELINE, config_of, tiles


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


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def walk(client: TestClient, start: str, rel: str) -> list[list[str]]:
    """The tiles of each page, following the ``rel`` link from ``start``."""
    pages, url = [], start
    while url:
        page = client.get(url).text
        pages.append(tiles(page))
        url = link(page, rel)
    return pages


def test_every_page_is_reached_older_and_back_newer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_timeline, "PER_PAGE", 2)
    older = walk(client, "/", "next")
    assert older == [TIMELINE[0:2], TIMELINE[2:4], TIMELINE[4:6]]
    last = client.get("/").text
    for _ in range(2):
        last = client.get(link(last, "next")).text
    assert walk(client, link(last, "prev"), "prev") == older[1::-1]


def test_a_filtered_grid_pages_and_scrubs_within_its_filter(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_timeline, "PER_PAGE", 1)
    assert walk(client, "/?camera=FUJIFILM+X-T4", "next") == [[PARIS[1]], [PARIS[0]]]
    page = client.get("/", params={"camera": "FUJIFILM X-T4"}).text
    assert "2 photos · 1–1 shown" in page and "FUJIFILM X-T4</h1>" in page
    scrubber = re.findall(r'<a href="([^"]+)" title="(\d+) photos">(\w+)</a>', page)
    assert [(html.unescape(h), int(n), m) for h, n, m in scrubber] == [
        ("/?camera=FUJIFILM+X-T4&month=2021-06", 2, "Jun")
    ]


def test_a_month_opens_the_timeline_at_its_newest_photo(client: TestClient) -> None:
    assert tiles(client.get("/", params={"month": "2022-01"}).text) == TIMELINE[1:]
    assert tiles(client.get("/", params={"month": "2030-01"}).text) == TIMELINE  # the future
    assert tiles(client.get("/", params={"month": "1990-01"}).text) == []  # before them all
    assert tiles(client.get("/", params={"month": "2022-13"}).text) == TIMELINE  # ignored


def test_cards_are_grouped_by_month_then_day_newest_first() -> None:
    cards = [
        {"when": datetime(2022, 3, 1, 12), "file_time": False},
        {"when": datetime(2022, 3, 1, 9), "file_time": True},
        {"when": datetime(2022, 1, 10, 8), "file_time": False},
        {"when": datetime(2021, 12, 31, 23), "file_time": False},
    ]
    months = group_by_day(cards)
    assert [(m["id"], m["label"]) for m in months] == [
        ("2022-03", "March 2022"), ("2022-01", "January 2022"), ("2021-12", "December 2021"),
    ]  # fmt: skip
    first = months[0]["days"]
    assert [(d["label"], len(d["cards"]), d["file_time"]) for d in first] == [
        ("Tuesday 1 March", 2, True)
    ]
    assert group_by_day([]) == []


def test_without_an_index_the_timeline_says_how_to_make_one(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    lib.add_shard([Photo("a.jpg")])
    with TestClient(create_app(config_of(lib)), base_url="http://127.0.0.1") as client:
        page = client.get("/")
    assert page.status_code == 200 and "No timeline yet" in page.text


def test_the_old_search_address_goes_to_the_search_page(client: TestClient) -> None:
    moved = client.get("/", params={"q": "eiffel"}, follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "/search?q=eiffel"
