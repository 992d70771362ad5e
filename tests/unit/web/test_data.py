"""What the pages read: an image located by its shard and catalogued path, its rows, its
thumbnail and tier as JPEG, values recomputed only when their files change; shard ids
that are not shard ids are refused."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from imganalyzer.web.data import ResultsData, Stamped
from tests.support.results_library import ResultsLibrary

from .conftest import HEIGHT, HOSTILE, WIDTH, config_of


def test_an_image_is_located_by_its_shard_and_rows_are_read_for_it(site: ResultsLibrary) -> None:
    data = ResultsData(config_of(site))
    (shard,) = site.catalog.shard_ids()
    entries = site.catalog.read(shard)
    location = data.locate(HOSTILE, shard)
    assert location is not None and entries[location.row].path == HOSTILE
    rows = data.rows(location)
    assert {"metadata", "technical", "objects", "faces", "captions"} <= set(rows)
    assert all(row["path"] == HOSTILE for row in rows.values())
    assert data.document(HOSTILE)["key"] == HOSTILE
    assert data.locate("no/such.jpg", shard) is None and data.document("no/such.jpg") is None


def test_shard_ids_that_are_not_shard_ids_reach_no_file(site: ResultsLibrary) -> None:
    data = ResultsData(config_of(site))
    for shard in ("../catalog", "000001-00000/../../x", "", None):
        assert data.locate(HOSTILE, shard) is None
    for shard in ("../catalog", "000001-00000/.."):
        assert data.thumbnail(shard, 0) is None and data.tier_jpeg(shard, 0) is None


def test_thumbnails_and_tiers_come_back_as_jpeg(site: ResultsLibrary) -> None:
    data = ResultsData(config_of(site))
    (shard,) = site.catalog.shard_ids()
    thumb = Image.open(io.BytesIO(data.thumbnail(shard, 0)))
    tier = Image.open(io.BytesIO(data.tier_jpeg(shard, 0)))
    assert thumb.format == tier.format == "JPEG"
    assert tier.size == (320, 320 * HEIGHT // WIDTH)  # the largest tier (detect, 320)
    assert data.tier_jpeg(shard, 10_000) is None
    location = data.locate(HOSTILE, shard)
    assert data.thumbnail_url(location).startswith(f"/thumbnail/{shard}/{location.row}?v=")


def test_a_stamped_value_is_recomputed_only_when_its_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    calls = []
    value = Stamped(lambda: calls.append(1) or len(calls), path)
    assert value.get() == value.get() == 1  # absent file: computed once
    path.write_text("{}")
    assert value.get() == 2 and value.get() == 2
    os.utime(path, ns=(1, 10**18))
    assert value.get() == 3
