"""The timeline, explore, map and viewer pages over the hand-written results folder."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app, pages_timeline
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import HOSTILE, config_of

PARIS = ["2021/paris/IMG_0001.jpg", "2021/paris/IMG_0002.jpg"]
# newest first: EXIF dates, then the two photos without one, dated by their file times (2020)
TIMELINE = [
    "2022/home/receipt.jpg", "2022/home/cat.jpg", "2021/paris/IMG_0002.jpg",
    "2021/paris/IMG_0001.jpg", HOSTILE, "scans/old.jpg",
]  # fmt: skip


def tiles(page: str) -> list[str]:
    return [
        html.unescape(p) for p in re.findall(r'<a href="/view\?path=[^"]*" title="([^"]*)"', page)
    ]


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


def test_filters_open_filtered_grids(client: TestClient) -> None:
    assert tiles(client.get("/", params={"camera": "FUJIFILM X-T4"}).text) == PARIS[::-1]
    assert tiles(client.get("/", params={"year": "2022"}).text) == TIMELINE[:2]
    assert tiles(client.get("/", params={"label": "cat"}).text) == TIMELINE
    assert tiles(client.get("/", params={"person": "1"}).text) == [TIMELINE[1], TIMELINE[3]]
    assert tiles(client.get("/", params={"box": "2,48,3,49"}).text) == PARIS[::-1]
    assert tiles(client.get("/", params={"errors": "1"}).text) == ["scans/old.jpg"]
    assert tiles(client.get("/", params={"camera": "nothing"}).text) == []


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


def test_map_shows_gps_photos_and_selects_them(client: TestClient) -> None:
    page = client.get("/map").text
    counts = [int(n) for n in re.findall(r"<text [^>]*>(\d+)</text>", page)]
    assert sum(counts) == 2 and "2 photos with a position here" in page
    zoom = html.unescape(re.search(r'<a href="(/map\?box=[^"]+)" class="cluster">', page).group(1))
    assert "2 photos with a position here" in client.get(zoom).text
    assert "<path d=" in page  # the country outlines, inline
    area = html.unescape(re.search(r'id="show-area" href="([^"]+)"', page).group(1))
    assert tiles(client.get(area).text) == PARIS[::-1]


def test_viewer_walks_through_the_result_set(client: TestClient) -> None:
    seen, url = [], "/view?path=" + TIMELINE[0]
    while url:
        page = client.get(html.unescape(url)).text
        seen.append(html.unescape(re.search(r'<h1 class="path">([^<]*)</h1>', page).group(1)))
        found = re.search(r'id="next" rel="next" href="([^"]+)"', page)
        url = found.group(1) if found else None
    assert seen == TIMELINE
    page = client.get("/view", params={"path": PARIS[1], "camera": "FUJIFILM X-T4"}).text
    assert "1 / 2" in page and 'id="prev"' not in page
    back = html.unescape(re.search(r'id="back" href="([^"]+)"', page).group(1))
    assert back.startswith("/?camera=FUJIFILM+X-T4#i-")


def test_viewer_formats_values_for_photographers(site: ResultsLibrary) -> None:
    lib = ResultsLibrary(site.results.parent.parent / "formats")
    shard = lib.add_shard([Photo("a.jpg", metadata={
        "camera": "Canon EOS R5", "make": "Canon", "model": "Canon EOS R5",
        "exposure_time": 0.004, "exposure_time_text": "1/250", "f_number": 5.6,
        "focal_length": 50.0, "focal_length_35mm": 50, "iso": 400,
        "datetime_original": "2023-07-14T18:03:22-04:30", "place": "Lisbon", "country": "Portugal",
        "gps_latitude": 38.7, "gps_longitude": -9.1,
    })])  # fmt: skip
    assert shard
    update_index(lib.layout, lib.library, ["metadata"])
    with TestClient(create_app(config_of(lib)), base_url="http://127.0.0.1") as client:
        page = client.get("/view", params={"path": "a.jpg"}).text
    assert "1/250 s · f/5.6 · 50 mm · ISO 400" in page
    assert "Friday 14 July 2023, 18:03:22" in page and "UTC−04:30" in page
    assert 'href="/?town=Lisbon">Lisbon</a>' in page and 'href="/?country=Portugal"' in page
    assert "/map?focus=38.7%2C-9.1" in page


def test_undecodable_file_gets_a_placeholder_naming_its_error(site: ResultsLibrary) -> None:
    lib = ResultsLibrary(site.results.parent.parent / "broken")
    shard = lib.add_shard([Photo("good.jpg"), Photo("bad.jpg")])
    entries = lib.catalog.read(shard)
    write_rows(lib.results / "technical" / f"{shard}.jsonl", [
        ok_row(entries[0], {"width": 60, "height": 40}),
        error_row(entries[1], "truncated JPEG", "truncated"),
    ])  # fmt: skip
    with ThumbnailWriter(lib.results / "thumbnails" / f"{shard}.zip") as thumbnails:
        thumbnails.add(0, np.zeros((40, 60, 3), np.uint8))
    update_index(lib.layout, lib.library, ["metadata", "technical"])
    with TestClient(create_app(config_of(lib)), base_url="http://127.0.0.1") as client:
        page = client.get("/").text
        errors = client.get("/", params={"errors": "1"}).text
        viewer = client.get("/view", params={"path": "bad.jpg"}).text
    assert page.count("<img ") == 1 and 'alt="good.jpg"' in page
    assert '<span class="kind">truncated</span><span class="name">bad.jpg</span>' in page
    assert tiles(errors) == ["bad.jpg"]
    assert '<span class="kind">truncated</span>' in viewer and "<img" not in viewer


def test_face_crops_and_people_grid(client: TestClient) -> None:
    crop = client.get("/faces/face0.jpg")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert client.get("/faces/nope.jpg").status_code == 404
    person = client.get("/people/2").text
    assert person.count('<input type="checkbox" name="faces"') == 4
    people = client.get("/people").text
    assert "Who are they?" in people and 'src="/faces/face0.jpg"' in people


def test_viewer_walks_through_a_search(client: TestClient) -> None:
    page = client.get("/search", params={"q": "fujifilm", "mode": "text"}).text
    first = html.unescape(
        re.search(r'<a href="(/view\?path=[^"]+from=search[^"]*)"', page).group(1)
    )
    viewer = client.get(first).text
    assert "1 / 2" in viewer and 'id="prev"' not in viewer
    following = html.unescape(re.search(r'id="next" rel="next" href="([^"]+)"', viewer).group(1))
    second = client.get(following).text
    assert "2 / 2" in second and 'id="next"' not in second
    back = html.unescape(re.search(r'id="back" href="([^"]+)"', second).group(1))
    assert back.startswith("/search?") and "q=fujifilm" in back
