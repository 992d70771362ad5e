"""CurrentView: the current images of each shard and their rows, moved files included."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.catalog.current import current_shards, row_identity
from imganalyzer.catalog.scan import content_fingerprint
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows, write_rows
from tests.support.results_library import ResultsLibrary, sample_photos

OLD, NEW = "2021/paris/IMG_0002.jpg", "albums/louvre.jpg"


@pytest.fixture
def lib(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    lib.add_shard(sample_photos())
    technical = lib.results / "technical" / "000001-00000.jsonl"
    rows = [
        r | {"fingerprint": content_fingerprint(lib.library / r["path"])}
        for r in read_rows(technical)
    ]
    write_rows(technical, rows)
    return lib


def move_with_new_mtime(lib: ResultsLibrary) -> int:
    """Move OLD to NEW, the way a copy that does not keep the mtime does."""
    target = lib.library / NEW
    target.parent.mkdir(parents=True)
    os.rename(lib.library / OLD, target)
    os.utime(target, ns=(2 * 10**18, 2 * 10**18))
    assert lib.catalog.ingest(lib.library, shard_size=100).moved == 1
    return 2 * 10**18


def test_rows_of_a_moved_file_carry_its_new_path(lib: ResultsLibrary) -> None:
    before = current_shards(lib.results, lib.library)
    old_rows = before.rows("captions", "000001-00000")
    move_with_new_mtime(lib)
    view = current_shards(lib.results, lib.library)
    rows = view.rows("captions", "000001-00000")
    assert sorted(rows) == sorted([NEW, *(p for p in old_rows if p != OLD)])
    moved = rows[NEW]
    assert moved["path"] == NEW and moved["catalog_path"] == OLD
    assert moved["caption"] == old_rows[OLD]["caption"] == "a crowded museum hall"
    assert (moved["size"], moved["mtime_ns"]) == (old_rows[OLD]["size"], old_rows[OLD]["mtime_ns"])
    assert (
        row_identity(moved)
        == row_identity(old_rows[OLD])
        == (
            OLD,
            old_rows[OLD]["size"],
            old_rows[OLD]["mtime_ns"],
        )
    )
    assert all("catalog_path" not in r for p, r in rows.items() if p != NEW)
    assert view.moved("000001-00000") == {NEW: OLD}


def test_current_entries_hold_the_new_path_and_its_version_on_disk(lib: ResultsLibrary) -> None:
    before = current_shards(lib.results, lib.library).shards["000001-00000"].entries
    mtime = move_with_new_mtime(lib)
    entries = current_shards(lib.results, lib.library).shards["000001-00000"].entries
    position = [e.path for e in before].index(OLD)
    assert [e.path for e in entries] == [NEW if e.path == OLD else e.path for e in before]
    assert entries[position].version == (before[position].size, mtime)


def test_numbered_rows_keep_the_row_of_the_result_file(lib: ResultsLibrary) -> None:
    move_with_new_mtime(lib)
    view = current_shards(lib.results, lib.library)
    numbered = dict((row["path"], n) for n, row in view.numbered_rows("captions", "000001-00000"))
    stored = [r["path"] for r in read_rows(lib.results / "captions" / "000001-00000.jsonl")]
    assert numbered[NEW] == stored.index(OLD)
    assert all(numbered[p] == stored.index(p) for p in numbered if p != NEW)


def test_vectors_of_a_moved_file_are_found_at_its_new_path(lib: ResultsLibrary) -> None:
    move_with_new_mtime(lib)
    view = current_shards(lib.results, lib.library)
    paths, rows = view.vectors("000001-00000")
    matrix = np.load(lib.results / "embedding" / "000001-00000.npy")
    photos = {p.path: p for p in sample_photos()}
    assert NEW in paths and OLD not in paths
    for path, row in zip(paths, rows, strict=True):
        expected = photos[OLD if path == NEW else path].vector
        np.testing.assert_array_equal(matrix[row], expected)
    assert len(paths) == sum(p.vector is not None for p in photos.values())


def test_a_deleted_moved_file_is_no_longer_current(lib: ResultsLibrary) -> None:
    move_with_new_mtime(lib)
    (lib.library / NEW).unlink()
    view = current_shards(lib.results, lib.library)
    assert NEW not in view.rows("captions", "000001-00000")
    assert OLD not in view.current and NEW not in view.current
    state = Catalog(Layout(lib.results)).state(lib.library)
    assert [e.path for _, e in state.removed] == [OLD]
