"""One display name for the camera and the place everywhere they are shown: ``search --json``,
``/api/search``, the image page and the export's ``images`` table all show what
:func:`imganalyzer.decode.names.display_names` makes of the metadata row."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from imganalyzer.cli.main import main
from imganalyzer.search.export import export_tables
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app
from tests.support.results_library import Photo, ResultsLibrary, unit_vector

# Make, model and place fields as real files and the place lookup give them.
METADATA = {
    "canon.jpg": {"make": "Canon", "model": "Canon EOS R5", "place": "Lisbon"}
    | {"region": "Lisbon", "country": "Portugal"},
    "nikon.jpg": {"make": "NIKON CORPORATION", "model": "NIKON Z 6_2", "place": "Paris"}
    | {"region": "Île-de-France", "country": "France"},
    "fuji.jpg": {"make": "FUJIFILM", "model": "X-T4"},
    "iphone.jpg": {"make": "Apple", "model": "iPhone 13 Pro", "place": "Singapore"}
    | {"country": "Singapore"},
    "kodak.jpg": {"make": "EASTMAN KODAK COMPANY", "model": "KODAK DX6490 ZOOM DIGITAL CAMERA"},
}
EXPECTED = {
    "canon.jpg": ("Canon EOS R5", "Lisbon, Portugal"),
    "nikon.jpg": ("NIKON Z 6_2", "Paris, Île-de-France, France"),
    "fuji.jpg": ("FUJIFILM X-T4", None),
    "iphone.jpg": ("Apple iPhone 13 Pro", "Singapore"),
    "kodak.jpg": ("KODAK DX6490 ZOOM DIGITAL CAMERA", None),
}


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path_factory.mktemp("names"))
    photos = [
        Photo(name, metadata=metadata, caption="a photo", vector=unit_vector(i))
        for i, (name, metadata) in enumerate(METADATA.items())
    ]
    lib.add_shard(photos)
    update_index(lib.layout, lib.library, ["metadata", "captions", "embedding"])
    return lib


def test_search_json_shows_the_display_names(
    lib: ResultsLibrary, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    assert main(["search", "", "--mode", "text", "--json", "--config", str(config)]) == 0
    hits = {hit["path"]: hit for hit in json.loads(capsys.readouterr().out)}
    assert {path: (hit.get("camera"), hit.get("place")) for path, hit in hits.items()} == EXPECTED


def test_the_export_images_table_shows_the_display_names(
    lib: ResultsLibrary, tmp_path: Path
) -> None:
    export_tables(lib.layout, lib.library, tmp_path / "export")
    images = pd.read_parquet(tmp_path / "export" / "images.parquet").set_index("path")
    found = {
        path: (row["camera"], None if pd.isna(row["place"]) else row["place"])
        for path, row in images.iterrows()
    }
    assert found == EXPECTED


def test_the_api_and_the_image_page_show_the_display_names(lib: ResultsLibrary) -> None:
    config = {"library": str(lib.library), "results": str(lib.results), "device": "cpu"}
    config |= {"modules": ["metadata", "embedding"], "embedding": {"model": "no-such-model"}}
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        hits = client.get("/api/search", params={"q": "", "mode": "text"}).json()["hits"]
        assert {hit["path"]: hit["camera"] for hit in hits} == {
            path: camera for path, (camera, _) in EXPECTED.items()
        }
        for path, (camera, place) in EXPECTED.items():
            page = html.unescape(client.get("/view", params={"path": path}).text)
            assert f">{camera}</a>" in page.split('<p class="camera">')[1].split("</p>")[0]
            shown = page.split('<p class="place">')[1].split("</p>")[0] if place else ""
            for part in place.split(", ") if place else []:  # each part of the place once
                assert shown.count(f">{part}<") == 1
            assert "Canon Canon" not in page and "NIKON CORPORATION" not in page
