"""The viewer: neighbours in the grid or search it was opened from, and the info panel."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from imganalyzer.search.index import update_index
from imganalyzer.web import create_app, pages_timeline
from imganalyzer.web.pages_search import SearchCache
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import PARIS, TIMELINE, config_of, tiles


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


# The search form's fields as a browser sends them: every one, most of them empty.
EMPTY_FORM = dict.fromkeys(
    ("after", "before", "camera", "lens", "person", "place", "folder", "min_aesthetic",
     "min_sharpness"), "",
)  # fmt: skip


def test_viewer_from_a_search_steps_through_its_hits_in_page_order(client: TestClient) -> None:
    step_through_a_search(client)


def test_viewer_from_a_search_finds_the_same_neighbours_searching_again(
    client: TestClient,
) -> None:
    state = client.app.state  # (monkeypatch would delete a starlette State attribute)
    kept, state.search_cache = state.search_cache, SearchCache(size=0)  # keeps nothing
    try:
        step_through_a_search(client)
    finally:
        state.search_cache = kept


def step_through_a_search(client: TestClient) -> None:
    """Open each hit of a text search (sent as the form sends it) in the viewer: its
    position, ← and → are the page's."""
    page = client.get("/search", params={"q": "a", "mode": "text", **EMPTY_FORM}).text
    ranked = tiles(page)
    assert len(ranked) >= 3 and f"{len(ranked)} images match" in page
    links = re.findall(r'<a href="(/view\?path=[^"]+)" title=', page)
    for number, link in enumerate(links, 1):
        viewer = client.get(html.unescape(link)).text
        assert f'<span class="where">{number} / {len(ranked)}</span>' in viewer
        assert neighbour(viewer, "prev") == (ranked[number - 2] if number > 1 else None)
        assert neighbour(viewer, "next") == (ranked[number] if number < len(ranked) else None)


def neighbour(viewer: str, rel: str) -> str | None:
    """The path the viewer's ← or → opens, checked to stay in the search."""
    found = re.search(rf'id="{rel}" rel="{rel}" href="([^"]+)"', viewer)
    if found is None:
        return None
    query = parse_qs(urlsplit(html.unescape(found.group(1))).query)
    assert query["from"] == ["search"] and query["q"] == ["a"] and query["mode"] == ["text"]
    return query["path"][0]


def back_of(viewer: str) -> str:
    return html.unescape(re.search(r'id="back" href="([^"]+)"', viewer).group(1))


def test_back_reopens_the_grid_at_the_image(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_timeline, "PER_PAGE", 2)
    for path in TIMELINE:
        back = back_of(client.get("/view", params={"path": path}).text)
        grid, _, anchor = back.partition("#")
        page = client.get(grid).text
        assert tiles(page)[0] == path and re.search(rf'<li class="tile [^"]+" id="{anchor}">', page)


def test_an_image_outside_its_grid_or_search_has_no_neighbours(client: TestClient) -> None:
    outside = client.get("/view", params={"path": TIMELINE[0], "camera": "FUJIFILM X-T4"}).text
    assert 'id="prev"' not in outside and 'id="next"' not in outside
    assert '<span class="where"></span>' in outside
    assert back_of(outside) == "/?camera=FUJIFILM+X-T4"
    search = {"path": TIMELINE[0], "from": "search", "q": "fujifilm", "mode": "text"}
    unmatched = client.get("/view", params=search).text
    assert 'id="prev"' not in unmatched and 'id="next"' not in unmatched
    assert back_of(unmatched) == "/search?q=fujifilm&mode=text"


def test_a_photo_dated_by_its_file_says_so(client: TestClient) -> None:
    page = client.get("/view", params={"path": "scans/old.jpg"}).text
    assert "the file&#39;s modification time: no capture date" in page
    assert "capture time (EXIF)" in client.get("/view", params={"path": PARIS[0]}).text
