"""The browse table the index step writes: one record per image, the table's arrays, and
the parts per shard it is merged from (stamped, reused, made again, removed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.catalog.manifests import Entry
from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows, write_rows
from imganalyzer.search.browse_write import (
    BROWSE_VERSION,
    EPOCH,
    FAILED,
    FILE_TIME,
    NO_OFFSET,
    NO_THUMBNAIL,
    RECORD_FIELDS,
    image_record,
    part_stamp,
    table_arrays,
    thumbnail_rows,
    write_browse,
)
from imganalyzer.search.documents import ShardImage, image_fields
from imganalyzer.search.index import IndexState, update_index
from tests.support.results_library import ResultsLibrary, sample_photos

from .conftest import table_of


def test_an_index_without_a_table_gets_one_on_its_next_update(indexed: ResultsLibrary) -> None:
    lib = indexed
    files = Layout(lib.results).index_files
    files.browse.unlink()
    for part in files.browse_part("x").parent.glob("*.json"):
        part.unlink()
    state = json.loads(files.state.read_text())
    del state["browse"]  # a state file written before the browse table existed
    files.state.write_text(json.dumps(state))
    report = update_index(lib.layout, lib.library)
    assert not report.committed  # Tantivy untouched: the table is made from the rows
    assert table_of(lib).n == 5 and int(table_of(lib).column("version")[0]) == BROWSE_VERSION


def record(rows: dict[str, dict | None], thumbs: set[int] | None = None, row: int = 0) -> dict:
    """The browse record of one image at ``row`` of shard 000001-00000 with these rows."""
    entry = Entry("2023/a.jpg", 100, 1_700_000_000 * 10**9)
    rows = {"metadata": None, "technical": None, "objects": None} | rows
    image = ShardImage(entry, row, rows)
    return image_record(image, image_fields(entry.path, "000001-00000", rows), thumbs)


def ok(fields: dict) -> dict:
    return {"status": "ok", **fields}


def test_a_record_is_dated_by_the_cameras_clock_and_keeps_its_offset() -> None:
    found = record({"metadata": ok({"datetime_original": "2023-07-14T18:03:22-04:30"})}, {0})
    assert found["date"] == int((datetime(2023, 7, 14, 18, 3, 22) - EPOCH).total_seconds())
    assert found["offset"] == -270 and found["flags"] == 0
    assert found["search_date"] == found["date"]
    naive = record({"metadata": ok({"datetime_original": "2021-06-06T10:00:00"})}, {0})
    assert naive["offset"] == NO_OFFSET and not naive["flags"] & FILE_TIME


@pytest.mark.parametrize("value", [None, "2021:06:05 18:30:00", "garbage", 20210605])
def test_a_record_without_a_readable_capture_time_is_dated_by_its_file(value: object) -> None:
    found = record({"metadata": ok({"datetime_original": value})}, {0})
    local = datetime.fromtimestamp(1_700_000_000)  # the file time, this machine's clock
    assert found["date"] == int((local - EPOCH).total_seconds())
    assert found["flags"] & FILE_TIME and found["search_date"] is None


def test_a_failed_module_flags_the_record_with_its_error_kind() -> None:
    failed = {"status": "error", "error": "cut short", "error_kind": "truncated"}
    found = record({"technical": failed, "objects": {"status": "error", "error": "x"}}, set())
    assert found["flags"] & FAILED and found["flags"] & NO_THUMBNAIL
    assert found["error"] == "truncated"
    unnamed = record({"objects": {"status": "error", "error": "out of memory"}}, {0})
    assert unnamed["error"] == "error" and not unnamed["flags"] & NO_THUMBNAIL


def test_a_record_without_a_thumbnail_file_or_row_is_flagged() -> None:
    assert record({}, None)["flags"] & NO_THUMBNAIL
    assert record({}, {1, 2}, row=0)["flags"] & NO_THUMBNAIL
    assert not record({}, {1, 2}, row=2)["flags"] & NO_THUMBNAIL


def test_a_record_takes_its_camera_aspect_labels_and_place_from_the_rows() -> None:
    found = record(
        {
            "metadata": ok({"make": "NIKON CORPORATION", "model": "NIKON Z 6_2",
                            "place": "Lisbon", "country": "Portugal"}),
            "technical": ok({"width": 6000, "height": 4000}),
            "objects": ok({"labels": ["tram", "boat", "tram"]}),
        },
        {0},
    )  # fmt: skip
    assert found["camera"] == "NIKON Z 6_2" and found["aspect"] == 1.5
    assert (found["town"], found["country"]) == ("Lisbon", "Portugal")
    assert found["labels"] == ["boat", "tram"]
    sized = record({"metadata": ok({"width": 400, "height": 600}),
                    "technical": ok({"width": 6000, "height": 4000})})  # fmt: skip
    assert sized["aspect"] == pytest.approx(0.6667)  # the metadata's size comes first
    assert record({"technical": ok({"width": 0, "height": 10})})["aspect"] == 0.0


def test_the_table_is_newest_first_with_ties_broken_by_key_id() -> None:
    keys = ["c", "a", "b", "é/ü.jpg", "x\udcff.jpg"]  # a name that is not UTF-8 too
    columns = {name: [None] * len(keys) for name in (*RECORD_FIELDS, "shard")}
    columns.update(
        key=keys, key_id=[5, 9, 7, 1, 3], date=[100, 300, 300, 200, 0], row=[0, 1, 2, 3, 4],
        offset=[0] * 5, flags=[0] * 5, aspect=[1.0] * 5, has_text=[False] * 5,
        labels=[["cat"], [], ["cat", "dog"], [], ["dog"]], shard=["s"] * 5,
        camera=["X", None, "Y", "X", None],
    )  # fmt: skip
    arrays = table_arrays(columns)
    assert arrays["key_id"].tolist() == [7, 9, 1, 5, 3]  # 300 (7 before 9), 200, 100, 0
    at, blob = arrays["key_at"], arrays["key_blob"].tobytes()
    names = [blob[at[i] : at[i + 1]].decode("utf-8", "surrogateescape") for i in range(5)]
    assert names == ["b", "a", "é/ü.jpg", "c", "x\udcff.jpg"]
    assert arrays["camera_code"].tolist() == [1, -1, 0, 0, -1]  # codes in first-seen order
    starts, rows = arrays["label_start"].tolist(), arrays["label_rows"].tolist()
    assert rows[starts[0] : starts[1]] == [0, 3] and rows[starts[1] : starts[2]] == [0, 4]
    assert np.isnan(arrays["lat"]).all() and arrays["search_date"][0] == np.iinfo(np.int64).min


def test_thumbnail_rows_are_the_rows_stored_in_the_zip(tmp_path: Path) -> None:
    zipped = tmp_path / "t.zip"
    with ThumbnailWriter(zipped) as writer:
        for row in (0, 3):
            writer.add(row, np.zeros((4, 4, 3), np.uint8))
    assert thumbnail_rows(zipped) == {0, 3}
    assert thumbnail_rows(tmp_path / "none.zip") is None
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert thumbnail_rows(tmp_path / "bad.zip") is None


# ---------------------------------------------------------------- parts


@pytest.fixture
def two_shards(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    photos = sample_photos()
    lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    update_index(lib.layout, lib.library)
    return lib


def parts_of(lib: ResultsLibrary) -> dict[str, tuple[int, bytes]]:
    """Each part file's (mtime_ns, bytes), by shard."""
    folder = lib.layout.index_files.browse_part("x").parent
    return {p.stem: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*.json"))}


def no_images(shard: str) -> Iterator[ShardImage]:
    raise AssertionError(f"part of {shard} made again although it was up to date")


def test_a_part_is_stamped_with_the_shards_fingerprint_and_thumbnail_file(
    two_shards: ResultsLibrary,
) -> None:
    layout = two_shards.layout
    shards = IndexState.load(layout.index).shards
    first = next(iter(shards))
    assert part_stamp(layout, first, shards[first]) == [BROWSE_VERSION, *shards[first], None]
    with ThumbnailWriter(layout.thumbnails(first)) as writer:
        writer.add(0, np.zeros((4, 4, 3), np.uint8))
    stat = layout.thumbnails(first).stat()
    assert part_stamp(layout, first, shards[first])[-1] == [stat.st_size, stat.st_mtime_ns]
    part = json.loads(layout.index_files.browse_part(first).read_text())
    assert part["stamp"] == [BROWSE_VERSION, *shards[first], None]  # as written
    assert len(part["records"]) == 3


def test_an_unchanged_part_is_reused_and_a_stale_one_removed(two_shards: ResultsLibrary) -> None:
    layout = two_shards.layout
    shards = IndexState.load(layout.index).shards
    before = parts_of(two_shards)
    assert write_browse(layout.index, layout, no_images, shards) == 5
    assert parts_of(two_shards) == before  # neither part written again
    kept = dict(list(shards.items())[:1])
    assert write_browse(layout.index, layout, no_images, kept) == 3
    assert list(parts_of(two_shards)) == list(kept)  # the other shard's part is gone
    assert table_of(two_shards).n == 3


def test_a_part_is_made_again_when_its_shard_changes(two_shards: ResultsLibrary) -> None:
    first, second = list(IndexState.load(two_shards.layout.index).shards)
    before = parts_of(two_shards)
    metadata = two_shards.layout.rows("metadata", first)
    rows = list(read_rows(metadata))
    rows[0]["datetime_original"] = "2030-01-01T00:00:00"  # IMG_0001 is now the newest
    write_rows(metadata, rows)
    report = update_index(two_shards.layout, two_shards.library)
    assert report.reindexed_shards == 1
    after = parts_of(two_shards)
    assert after[second] == before[second] and after[first] != before[first]
    assert table_of(two_shards).key(0) == "2021/paris/IMG_0001.jpg"


def test_a_new_thumbnail_file_remakes_only_its_part(two_shards: ResultsLibrary) -> None:
    first, second = list(IndexState.load(two_shards.layout.index).shards)
    assert all(f & NO_THUMBNAIL for f in table_of(two_shards).flags)
    before = parts_of(two_shards)
    with ThumbnailWriter(two_shards.layout.thumbnails(second)) as writer:
        for row in range(2):
            writer.add(row, np.zeros((4, 4, 3), np.uint8))
    report = update_index(two_shards.layout, two_shards.library)
    assert not report.committed  # no document changed: only the browse table
    after = parts_of(two_shards)
    assert after[first] == before[first] and after[second] != before[second]
    table = table_of(two_shards)
    with_thumbnail = {table.key(i) for i in range(table.n) if not table.flags[i] & NO_THUMBNAIL}
    assert with_thumbnail == {"2022/home/receipt.jpg", "scans/old.jpg"}


def test_a_damaged_part_is_made_again(two_shards: ResultsLibrary) -> None:
    layout = two_shards.layout
    shards = IndexState.load(layout.index).shards
    first = next(iter(shards))
    layout.index_files.browse_part(first).write_text("{ cut sh")
    asked = []

    def images(shard: str) -> Iterator[ShardImage]:
        asked.append(shard)
        return iter(())  # (the shard's images: none, to see the part made from them)

    assert write_browse(layout.index, layout, images, shards) == 2
    assert asked == [first]
    assert json.loads(layout.index_files.browse_part(first).read_text())["records"] == []
