"""Thumbnails served from open shard zips: each zip's directory read once per version of the
file, a missing or unreadable one a 404 and a placeholder tile, never a broken image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.web import create_app, thumbnails
from imganalyzer.web.thumbnails import ThumbnailZips
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import config_of


def write_zip(path: Path, rows: dict[int, int]) -> Path:
    """A shard's thumbnail zip: row -> the grey level of its 8x8 thumbnail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with ThumbnailWriter(path) as writer:
        for row, level in rows.items():
            writer.add(row, np.full((8, 8, 3), level, np.uint8))
    return path


def test_a_row_reads_its_own_jpeg_and_a_row_without_one_reads_none(tmp_path: Path) -> None:
    zipped = write_zip(tmp_path / "a.zip", {0: 0, 2: 255})
    zips = ThumbnailZips()
    dark, light = zips.read(zipped, 0), zips.read(zipped, 2)
    assert dark is not None and light is not None and dark[:2] == b"\xff\xd8" and dark != light
    assert zips.read(zipped, 1) is None and zips.read(zipped, -1) is None
    assert zips.read(tmp_path / "missing.zip", 0) is None


def test_a_rewritten_zip_is_read_afresh(tmp_path: Path) -> None:
    zipped = write_zip(tmp_path / "a.zip", {0: 0})
    zips = ThumbnailZips()
    before = zips.read(zipped, 0)
    version = zipped.stat().st_mtime_ns
    write_zip(zipped, {0: 255, 1: 255})  # the workflow re-ran the shard
    os.utime(zipped, ns=(version + 10**9, version + 10**9))
    after = zips.read(zipped, 0)
    assert after is not None and after != before and zips.read(zipped, 1) is not None


def test_no_more_than_the_limit_of_zips_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thumbnails, "OPEN_ZIPS", 2)
    files = [write_zip(tmp_path / f"{i}.zip", {0: 40 * i}) for i in range(4)]
    zips = ThumbnailZips()
    first = zips.read(files[0], 0)
    for zipped in files[1:]:
        assert zips.read(zipped, 0) is not None
    assert len(zips._open) == 2 and files[0] not in zips._open
    assert zips.read(files[0], 0) == first  # closed, then opened again


def test_an_unreadable_zip_reads_none(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 cut short")
    assert ThumbnailZips().read(broken, 0) is None


def test_a_shard_with_an_unreadable_thumbnail_file_shows_placeholders(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    shard = lib.add_shard([Photo("a.jpg"), Photo("b.jpg")])
    entries = lib.catalog.read(shard)
    write_rows(lib.layout.technical(shard), [ok_row(e, {"width": 8, "height": 8}) for e in entries])
    lib.layout.thumbnails(shard).parent.mkdir(parents=True, exist_ok=True)
    lib.layout.thumbnails(shard).write_bytes(b"not a zip")  # a disk error, a killed copy
    update_index(lib.layout, lib.library, ["metadata", "technical"])
    with TestClient(create_app(config_of(lib)), base_url="http://127.0.0.1") as client:
        page = client.get("/").text
        thumbnail = client.get(f"/thumbnail/{shard}/0")
        viewer = client.get("/view", params={"path": "a.jpg"})
        search = client.get("/search", params={"q": "", "mode": "text"})
    assert "<img " not in page and page.count('<span class="placeholder">') == 2
    assert thumbnail.status_code == 404
    assert viewer.status_code == 200 and search.status_code == 200
