"""The grids a filter selects, and the placeholder tile of an image without a thumbnail."""

from __future__ import annotations

import numpy as np
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app
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
