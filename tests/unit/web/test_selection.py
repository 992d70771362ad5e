"""The grids a filter selects (parameters read safely, selections kept per index version),
and the placeholder tile of an image without a thumbnail."""

from __future__ import annotations

import os

import numpy as np
import pytest
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app
from imganalyzer.web.data import ResultsData
from imganalyzer.web.selection import BrowseSource, GridFilter, aspect_class, parse_box
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import PARIS, TIMELINE, config_of, tiles


def test_filters_open_filtered_grids(client: TestClient) -> None:
    assert tiles(client.get("/", params={"camera": "FUJIFILM X-T4"}).text) == PARIS[::-1]
    assert tiles(client.get("/", params={"year": "2022"}).text) == TIMELINE[:2]
    assert tiles(client.get("/", params={"label": "cat"}).text) == TIMELINE
    assert tiles(client.get("/", params={"person": "1"}).text) == [TIMELINE[1], TIMELINE[3]]
    assert tiles(client.get("/", params={"box": "2,48,3,49"}).text) == PARIS[::-1]
    assert tiles(client.get("/", params={"errors": "1"}).text) == ["scans/old.jpg"]
    assert tiles(client.get("/", params={"camera": "nothing"}).text) == []


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


def test_a_grid_filter_reads_its_query_parameters() -> None:
    grid = GridFilter.of(
        {"camera": "  FUJIFILM X-T4 ", "lens": "", "label": "x" * 600, "person": " 2 ",
         "year": "2021", "errors": "on", "box": "2,49,3,48", "unknown": "1"}
    )  # fmt: skip
    assert grid == GridFilter(
        camera="FUJIFILM X-T4", label="x" * 500, person=2, year=2021, errors=True,
        box=(2.0, 48.0, 3.0, 49.0),
    )  # fmt: skip
    assert GridFilter.of(dict(grid.params())) == grid  # what the links carry reads back
    assert GridFilter.of({}).empty and GridFilter.of({"errors": "yes"}) == GridFilter()


NOT_WHOLE_NUMBERS = ["²", "٣", "-1", "1e3", "12.0", "0x10", "", " ", "9" * 19]


@pytest.mark.parametrize("value", NOT_WHOLE_NUMBERS)
def test_a_person_that_is_no_plain_whole_number_is_ignored(value: str) -> None:
    assert GridFilter.of({"person": value}).empty


@pytest.mark.parametrize("value", [*NOT_WHOLE_NUMBERS, "0", "10000"])
def test_a_year_that_is_no_plain_whole_number_from_1_to_9999_is_ignored(value: str) -> None:
    assert GridFilter.of({"year": value}).empty


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("2,48,3,49", (2.0, 48.0, 3.0, 49.0)),
        ("-200,95,200,-95", (-180.0, -90.0, 180.0, 90.0)),  # clamped, south and north sorted
        ("1,2,3", None), ("1,2,3,4,5", None), ("a,b,c,d", None), ("nan,0,1,1", None),
        ("0,0,inf,1", None), ("1e400,0,1,1", None), ("", None),
    ],
)  # fmt: skip
def test_a_map_box_is_four_finite_numbers(text: str, box: tuple | None) -> None:
    assert parse_box(text) == box


@pytest.mark.parametrize(
    "params",
    [
        {"year": "²"}, {"person": "²"}, {"year": "99999999999999999999"}, {"year": "10000"},
        {"person": "99999999999999999999"}, {"box": "nan,nan,nan,nan"}, {"box": "10,10,5,5"},
        {"month": "2021-²"}, {"month": "9999-12"}, {"month": "2021-13"}, {"after": "garbage"},
        {"camera": "\x00"}, {"errors": "' OR 1=1"},
    ],
    ids=repr,
)  # fmt: skip
def test_hostile_grid_parameters_never_make_a_server_error(
    client: TestClient, params: dict[str, str]
) -> None:
    for route, extra in (("/", {}), ("/view", {"path": PARIS[0]}), ("/map", {})):
        response = client.get(route, params=params | extra)
        assert response.status_code == 200, (route, response.text[-300:])


def test_unusable_values_leave_the_grid_unfiltered(client: TestClient) -> None:
    for params in ({"year": "²"}, {"person": "-1"}, {"box": "1,2,3"}, {"month": "2021-²"}):
        assert tiles(client.get("/", params=params).text) == TIMELINE, params


def test_filters_combine_and_describe_themselves(client: TestClient, site: ResultsLibrary) -> None:
    both = {"camera": "FUJIFILM X-T4", "person": "1"}
    assert tiles(client.get("/", params=both).text) == [PARIS[0]]
    assert tiles(client.get("/", params={"label": "cat", "year": "2021"}).text) == PARIS[::-1]
    grid = GridFilter.of(both | {"year": "2021", "errors": "1", "box": "0,0,1,1"})
    data = ResultsData(config_of(site))
    assert grid.describe(data) == (
        "FUJIFILM X-T4, person 1, 2021, the selected map area, files with errors"
    )
    assert GridFilter(person=99).describe(data) == "person 99"


def test_a_selection_is_kept_until_the_table_changes(site: ResultsLibrary) -> None:
    source = BrowseSource(ResultsData(config_of(site)))
    table = source.table()
    assert table is not None and source.table() is table
    grid = GridFilter(camera="FUJIFILM X-T4")
    first = source.select(table, grid)
    assert first is not None and source.select(table, GridFilter(camera="FUJIFILM X-T4")) is first
    assert source.select(table, GridFilter()) is None  # no filter: every image
    browse = site.layout.index_files.browse
    stat = browse.stat()
    os.utime(browse, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new index version
    again = source.table()
    assert again is not table and source.select(again, grid) is not first


@pytest.mark.parametrize(
    ("aspect", "css"),
    [(1.5, "r150"), (4 / 3, "r133"), (16 / 9, "r178"), (1.0, "r100"), (0.66, "r67"),
     (10.0, "r240"), (0.1, "r50"), (0.0, "r133"), (float("nan"), "r133")],
)  # fmt: skip
def test_a_tile_gets_the_nearest_aspect_class(aspect: float, css: str) -> None:
    assert aspect_class(aspect) == css
