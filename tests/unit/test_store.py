"""The results store: rows and arrays of a shard, job summaries and failure records, and the
current-view join (a moved file's rows at its new path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imganalyzer.catalog.current import current_shards
from imganalyzer.catalog.manifests import Entry
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, read_rows
from imganalyzer.store import ResultsStore, row_identity
from tests.support.results_library import ResultsLibrary, sample_photos

SHARD, JOB = "000001-00000", "000001-00000-00000"
OLD, NEW = "2021/paris/IMG_0002.jpg", "albums/louvre.jpg"
ENTRIES = [Entry("a/1.jpg", 10, 1), Entry("a/2.jpg", 20, 2), Entry("b/3.jpg", 30, 3)]


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    return ResultsStore(Layout(tmp_path))


def rows_of(entries: list[Entry]) -> list[dict]:
    return [ok_row(entries[0], {"caption": "a"}), *(error_row(e, "bad") for e in entries[1:])]


# ------------------------------------------------------------------ rows and arrays


def test_rows_round_trip_at_the_layouts_place(store: ResultsStore) -> None:
    assert not store.has_rows("captions", SHARD) and not store.has_results("captions")
    assert store.write_rows("captions", SHARD, rows_of(ENTRIES)) == 3
    assert store.rows("captions", SHARD) == rows_of(ENTRIES)
    assert list(read_rows(store.layout.rows("captions", SHARD))) == rows_of(ENTRIES)
    assert store.has_rows("captions", SHARD) and store.has_results("captions")


def test_the_rows_of_one_image_come_from_every_module_that_has_them(store: ResultsStore) -> None:
    store.write_rows("captions", SHARD, rows_of(ENTRIES))
    store.write_rows("technical", SHARD, [ok_row(e, {"width": e.size}) for e in ENTRIES])
    found = store.image_rows(SHARD, 2, ["technical", "captions", "ocr"])
    assert found == {
        "technical": ok_row(ENTRIES[2], {"width": 30}),
        "captions": rows_of(ENTRIES)[2],
    }
    assert store.image_rows(SHARD, 7, ["technical"]) == {}


def test_a_file_that_is_not_a_shards_rows_is_not_a_result(store: ResultsStore) -> None:
    folder = store.layout.module_dir("duplicates")
    folder.mkdir()
    (folder / "hashes.jsonl").write_text("{}\n")  # a cache beside the rows, not a shard's
    assert not store.has_results("duplicates")


def test_arrays_round_trip_and_memory_map(store: ResultsStore) -> None:
    vectors = np.arange(12, dtype=np.float16).reshape(3, 4)
    store.write_array("embedding", SHARD, vectors)
    assert store.has_array("embedding", SHARD)
    np.testing.assert_array_equal(store.array("embedding", SHARD, n_rows=3), vectors)
    mapped = store.array("embedding", SHARD, mmap=True)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float16


def test_an_array_of_the_wrong_length_is_refused_naming_it(store: ResultsStore) -> None:
    store.write_array("embedding", SHARD, np.zeros((2, 4), np.float16))
    with pytest.raises(ValueError, match=r"embedding/000001-00000\.npy: 2 rows, expected 3"):
        store.array("embedding", SHARD, n_rows=3)


def test_rows_must_match_the_manifest_in_number_and_files(store: ResultsStore) -> None:
    store.write_rows("objects", SHARD, rows_of(ENTRIES[:2]))
    with pytest.raises(ValueError, match=r"objects/000001-00000\.jsonl: 2 rows, expected 3"):
        store.checked_rows("objects", SHARD, ENTRIES)
    edited = [ENTRIES[0], ENTRIES[1], Entry("b/3.jpg", 31, 3)]  # another version of b/3.jpg
    store.write_rows("objects", SHARD, rows_of(edited))
    with pytest.raises(ValueError, match="row of 'b/3.jpg' is not 'b/3.jpg'"):
        store.checked_rows("objects", SHARD, ENTRIES)
    assert store.checked_rows("objects", SHARD, ENTRIES, same_files=False) == rows_of(edited)


def test_versions_change_when_a_file_is_replaced(store: ResultsStore) -> None:
    assert store.versions(["captions"], SHARD, arrays=["embedding"]) == [None, None]
    store.write_rows("captions", SHARD, rows_of(ENTRIES))
    first = store.versions(["captions"], SHARD)
    store.write_rows("captions", SHARD, rows_of(ENTRIES) + rows_of(ENTRIES[:1]))
    assert first[0] is not None and store.versions(["captions"], SHARD) != first


# ------------------------------------------------------------------ model jobs


def test_summaries_and_failure_records_round_trip(store: ResultsStore) -> None:
    assert store.summary("ocr", JOB) is None and store.failure("ocr", JOB) is None
    store.write_summary("ocr", JOB, {"module": "ocr", "images": 3})
    assert store.summary("ocr", JOB) == {"module": "ocr", "images": 3}
    assert store.layout.job_summary("ocr", JOB).is_file()
    store.write_failure("ocr", JOB, {"module": "ocr", "job": JOB, "status": "failed"})
    assert store.failure("ocr", JOB)["status"] == "failed"
    store.layout.job_summary("ocr", JOB).write_text("{not json")
    assert store.summary("ocr", JOB) is None  # unreadable: as if missing


def test_failures_are_the_records_still_failed(store: ResultsStore) -> None:
    store.write_failure("ocr", JOB, {"module": "ocr", "job": JOB, "status": "failed"})
    store.write_failure("faces", JOB, {"module": "faces", "job": JOB, "status": "failed"})
    store.write_failure("objects", JOB, {"module": "objects", "job": JOB, "status": "retried"})
    assert [f["module"] for f in store.failures()] == ["faces", "ocr"]
    assert [f["module"] for f in store.failures(["ocr", "objects"])] == ["ocr"]


# ------------------------------------------------------------------ the current-view join


@pytest.fixture
def moved(tmp_path: Path) -> ResultsLibrary:
    """The sample library with OLD moved to NEW (a new mtime: a copy that does not keep it)."""
    lib = ResultsLibrary(tmp_path)
    lib.add_fingerprints(lib.add_shard(sample_photos()))
    lib.move(OLD, NEW, 2 * 10**18)
    return lib


def test_rows_of_a_moved_file_carry_its_new_path(moved: ResultsLibrary) -> None:
    store = ResultsStore(moved.layout)
    stored = {row["path"]: row for row in store.rows("captions", SHARD)}
    current = current_shards(moved.layout, moved.library).shards[SHARD]
    rows = store.current_rows("captions", current)
    assert sorted(rows) == sorted([NEW, *(p for p in stored if p != OLD)])
    assert rows[NEW] == {**stored[OLD], "path": NEW, "catalog_path": OLD}
    assert rows[NEW]["caption"] == "a crowded museum hall"
    assert (
        row_identity(rows[NEW]) == row_identity(stored[OLD]) == (OLD, *current_version(stored[OLD]))
    )
    assert all(rows[p] == stored[p] for p in rows if p != NEW)


def current_version(row: dict) -> tuple[int, int]:
    return row["size"], row["mtime_ns"]


def test_numbered_rows_keep_the_row_of_the_result_file(moved: ResultsLibrary) -> None:
    store = ResultsStore(moved.layout)
    current = current_shards(moved.layout, moved.library).shards[SHARD]
    numbered = {row["path"]: n for n, row in store.numbered_rows("captions", current)}
    stored = [row["path"] for row in store.rows("captions", SHARD)]
    assert numbered == {(NEW if p == OLD else p): n for n, p in enumerate(stored)}


def test_vectors_of_a_moved_file_are_found_at_its_new_path(moved: ResultsLibrary) -> None:
    store = ResultsStore(moved.layout)
    current = current_shards(moved.layout, moved.library).shards[SHARD]
    paths, rows = store.current_vectors(current)
    matrix = store.array("embedding", SHARD)
    photos = {p.path: p for p in sample_photos()}
    assert NEW in paths and OLD not in paths
    for path, row in zip(paths, rows, strict=True):
        np.testing.assert_array_equal(matrix[row], photos[OLD if path == NEW else path].vector)
    assert len(paths) == sum(p.vector is not None for p in photos.values())
    results = store.shard_results(current, ["embedding", "captions"])
    assert results.vectors()[0] == paths and (results.vectors()[1] == rows).all()
    assert results.rows("captions") == store.current_rows("captions", current)


def test_a_removed_file_has_no_current_rows(moved: ResultsLibrary) -> None:
    (moved.library / NEW).unlink()
    store = ResultsStore(moved.layout)
    current = current_shards(moved.layout, moved.library).shards[SHARD]
    assert NEW not in store.current_rows("captions", current)
    assert OLD not in store.current_rows("captions", current)
    assert len(store.current_rows("captions", current)) == len(sample_photos()) - 1


def test_a_shard_without_embeddings_has_no_vectors(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    lib.add_shard(sample_photos())
    store = ResultsStore(lib.layout)
    store.layout.array("embedding", SHARD).unlink()
    assert store.current_vectors(current_shards(lib.layout, lib.library).shards[SHARD]) is None
