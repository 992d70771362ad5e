"""The browse table as the pages read it: timeline order, cursors, months, upkeep."""

from __future__ import annotations

import os
from datetime import datetime

from imganalyzer.search.browse import FAILED, FILE_TIME, NO_OFFSET, BrowseTable, Cursor
from imganalyzer.search.documents import key_id
from imganalyzer.search.index import update_index
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import table_of


def keys(table: BrowseTable) -> list[str]:
    return [table.key(i) for i in range(table.n)]


def test_images_are_in_timeline_order_with_offsets_and_file_times(indexed: ResultsLibrary) -> None:
    lib = indexed
    table = table_of(lib)
    assert keys(table) == [
        "2022/home/receipt.jpg", "2022/home/cat.jpg", "2021/paris/IMG_0002.jpg",
        "2021/paris/IMG_0001.jpg", "scans/old.jpg",
    ]  # fmt: skip
    paris = table.position_of(key_id("2021/paris/IMG_0001.jpg"))
    assert paris == 3 and int(table.column("offset")[paris]) == 120
    assert int(table.column("offset")[2]) == NO_OFFSET  # no offset in its EXIF date
    old = table.position_of(key_id("scans/old.jpg"))
    assert table.flags[old] & FILE_TIME and table.flags[old] & FAILED
    mtime = os.stat(lib.library / "scans/old.jpg").st_mtime
    assert abs(int(table.date[old]) - int(datetime.fromtimestamp(mtime).timestamp())) < 2 * 86400
    assert [(y, m, n) for y, m, n, _ in table.months] == [
        (2022, 3, 1), (2022, 1, 1), (2021, 6, 2), (2020, 9, 1),
    ]  # fmt: skip


def test_a_cursor_finds_the_next_page_in_constant_steps(indexed: ResultsLibrary) -> None:
    lib = indexed
    table = table_of(lib)
    for position in range(table.n):
        cursor = Cursor.parse(table.cursor(position).text())
        assert cursor is not None and table.after(cursor) == position + 1
    assert table.before_date(datetime(2021, 7, 1)) == 2  # the newest of June 2021
    assert Cursor.parse("garbage") is None


def test_the_table_follows_edits_and_deletions(indexed: ResultsLibrary) -> None:
    lib = indexed
    lib.add_shard([Photo("new/one.jpg", metadata={"datetime_original": "2030-01-01T00:00:00"})])
    lib.delete("2022/home/cat.jpg")
    update_index(lib.layout, lib.library)
    found = keys(table_of(lib))
    assert found[0] == "new/one.jpg" and "2022/home/cat.jpg" not in found and len(found) == 5
