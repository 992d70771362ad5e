"""The explore page: facets of the library that open filtered grids."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app, pages_explore
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import config_of, tiles


def test_explore_lists_facets_that_open_grids(client: TestClient) -> None:
    page = client.get("/explore").text
    for link in (
        'href="/?camera=FUJIFILM+X-T4"',
        'href="/?label=cat"',
        'href="/?year=2021"',
        'href="/?person=1"',
        'href="/people"',
    ):
        assert link in page, link
    cameras = client.get("/explore/cameras").text
    assert re.search(r'FUJIFILM X-T4</span><span class="count">2<', cameras)


# path: (camera make and model, town, country, capture date, object labels, has a thumbnail)
TRAVELS = {
    "b.jpg": ("Canon", "Canon EOS R5", "Porto", "Portugal", "2023-08-01T10:00:00",
              ["boat", "tram"], False),
    "a.jpg": ("Canon", "Canon EOS R5", "Lisbon", "Portugal", "2023-07-14T18:03:22", ["boat"], True),
    "c.jpg": ("Canon", "Canon EOS R5", "Lisbon", "Portugal", "2022-05-01T09:00:00", [], True),
    "d.jpg": ("FUJIFILM", "X-T4", "Paris", "France", "2021-06-05T18:30:00", ["tower"], True),
    "e.jpg": (None, None, None, None, "2019-01-01T12:00:00", [], True),
}  # fmt: skip


def travels_library(root: Path) -> ResultsLibrary:
    lib = ResultsLibrary(root)
    photos = [
        Photo(
            path,
            metadata={
                k: v
                for k, v in (
                    ("make", make),
                    ("model", model),
                    ("place", town),
                    ("country", country),
                    ("datetime_original", date),
                )
                if v
            },
        )  # fmt: skip
        for path, (make, model, town, country, date, _, _) in TRAVELS.items()
    ]
    shard = lib.add_shard(photos)
    entries = lib.catalog.read(shard)
    objects = [
        ok_row(e, {"labels": labels, "detections": [], "has_text": False, "has_person": False})
        for e, (*_, labels, _) in zip(entries, TRAVELS.values(), strict=True)
    ]
    write_rows(lib.layout.rows("objects", shard), objects)
    with ThumbnailWriter(lib.layout.thumbnails(shard)) as thumbnails:
        for row, (*_, thumbnail) in enumerate(TRAVELS.values()):
            if thumbnail:
                thumbnails.add(row, np.zeros((8, 12, 3), np.uint8))
    update_index(lib.layout, lib.library, ["metadata", "objects"])
    return lib


@pytest.fixture(scope="module")
def travels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    lib = travels_library(tmp_path_factory.mktemp("travels"))
    with TestClient(create_app(config_of(lib)), base_url="http://127.0.0.1") as client:
        yield client


def section_entries(page: str, section: str) -> list[tuple[str, int]]:
    """(label, count) of a section's entries, in page order."""
    part = re.search(rf'<section class="explore" id="{section}">(.*?)</section>', page, re.S)
    assert part is not None, section
    found = re.findall(r'<span class="label">([^<]*)</span><span class="count">(\d+)<', part[1])
    return [(html.unescape(label), int(count)) for label, count in found]


def test_each_section_counts_images_most_first_and_years_newest_first(
    travels: TestClient,
) -> None:
    page = travels.get("/explore").text
    assert section_entries(page, "cameras") == [("Canon EOS R5", 3), ("FUJIFILM X-T4", 1)]
    assert section_entries(page, "places") == [("Portugal", 3), ("France", 1)]
    assert section_entries(page, "things") == [("boat", 2), ("tower", 1), ("tram", 1)]
    assert section_entries(page, "years") == [("2023", 2), ("2022", 1), ("2021", 1), ("2019", 1)]
    assert section_entries(page, "lenses") == [] and "None recorded." in page


def test_a_country_lists_its_towns_and_every_link_opens_its_grid(travels: TestClient) -> None:
    page = travels.get("/explore").text
    assert 'href="/?country=Portugal&amp;town=Lisbon">Lisbon</a> <span class="count">2<' in page
    assert 'href="/?country=Portugal&amp;town=Porto">Porto</a> <span class="count">1<' in page
    for link, paths in (
        ("/?country=Portugal&town=Lisbon", ["a.jpg", "c.jpg"]),
        ("/?country=Portugal", ["b.jpg", "a.jpg", "c.jpg"]),
        ("/?camera=Canon+EOS+R5", ["b.jpg", "a.jpg", "c.jpg"]),
        ("/?label=boat", ["b.jpg", "a.jpg"]),
        ("/?year=2019", ["e.jpg"]),
    ):
        assert html.escape(link) in page or link in page, link
        assert tiles(travels.get(link).text) == paths, link


def test_a_cover_is_the_newest_photo_that_has_a_thumbnail(travels: TestClient) -> None:
    page = travels.get("/explore/cameras").text
    covers = re.findall(r'<img src="/thumbnail/[^/]+/(\d+)\?v=\d+" alt=""', page)
    assert covers == ["1", "3"]  # Canon: a.jpg (row 1), as b.jpg (newer) has no thumbnail


def test_a_section_shows_its_first_entries_and_its_own_page_all(
    travels: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages_explore, "SHOWN", 1)
    page = travels.get("/explore").text
    assert section_entries(page, "years") == [("2023", 2)]
    assert 'href="/explore/years">all 4</a>' in page
    own = travels.get("/explore/years").text
    assert len(section_entries(own, "years")) == 4 and 'id="cameras"' not in own


def test_people_are_listed_named_first_then_by_images(client: TestClient) -> None:
    page = client.get("/explore/people").text
    order = re.findall(r'<li><a href="/\?person=(\d+)">', page)
    assert order == ["2", "1"]  # both unnamed: person 2 has more images
    assert '<img src="/face/1.jpg"' in page and 'src="/face/2.jpg"' not in page  # crops


def test_explore_counts_follow_a_new_index(tmp_path: Path) -> None:
    lib = travels_library(tmp_path)
    app = create_app(config_of(lib))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/explore/cameras").text
        assert section_entries(page, "cameras") == [("Canon EOS R5", 3), ("FUJIFILM X-T4", 1)]
        fuji = {"make": "FUJIFILM", "model": "X-T4", "datetime_original": "2024-01-01T00:00:00"}
        lib.add_shard([Photo("f.jpg", metadata=fuji)])
        update_index(lib.layout, lib.library, ["metadata", "objects"])
        page = client.get("/explore/cameras").text
    assert section_entries(page, "cameras") == [("Canon EOS R5", 3), ("FUJIFILM X-T4", 2)]
