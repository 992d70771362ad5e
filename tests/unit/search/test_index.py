from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tantivy

import imganalyzer.search.index as index_module
import imganalyzer.search.vectors as vectors_module
from imganalyzer.catalog.manifests import unescape_path
from imganalyzer.results import ok_row, read_rows, write_rows
from imganalyzer.search.documents import image_fields, key_id
from imganalyzer.search.index import open_index, update_index
from imganalyzer.search.vector_scan import VectorMatrix, quantise
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector


@pytest.fixture
def lib(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    photos = sample_photos()
    lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    return lib


def indexed_keys(lib: ResultsLibrary) -> list[str]:
    index = open_index(lib.layout.index)
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), 100).hits
    return sorted(searcher.doc(address)["key"][0] for _, address in hits)


def count(lib: ResultsLibrary, query: str, field: str = "caption") -> int:
    index = open_index(lib.layout.index)
    return index.searcher().search(index.parse_query(query, [field]), 10).count


def index_files(lib: ResultsLibrary) -> dict[str, int]:
    folder = lib.layout.index
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_image_fields_map_each_modules_fields_and_collect_errors() -> None:
    from imganalyzer.catalog.manifests import Entry
    from imganalyzer.results import error_row

    entry = Entry("a/b/IMG_1.jpg", 1, 2)
    rows = {
        "metadata": ok_row(entry, {"make": "Canon", "model": "EOS R5", "width": 10}),
        "technical": ok_row(entry, {"sharpness": 3, "width": 99}),
        "ocr": ok_row(entry, {"text": "STOP"}),
        "captions": ok_row(entry, {"caption": "x", "answers": {"where?": "a road"}}),
        "embedding": error_row(entry, "cannot identify image file"),
        "aesthetic": None,
    }
    fields = image_fields(entry.path, "000001-00000", rows)
    assert fields["camera"] == "Canon EOS R5"
    assert fields["width"] == 10  # metadata's displayed size wins over technical's
    assert fields["sharpness"] == 3.0
    assert fields["has_text"] is True
    assert fields["answers"] == "where?: a road"
    assert fields["folder"] == "/a/b"
    assert fields["status"] == "error"
    assert fields["errors"] == "embedding: cannot identify image file"
    assert "aesthetic" not in fields


def test_cloud_descriptions_are_searchable_text() -> None:
    cloud = {
        "status": "ok",
        "description": "a red tram in the rain",
        "keywords": ["tram", "rain"],
        "objects": ["tram"],
        "text_seen": "LINE 4",
    }
    fields = image_fields("x.jpg", "s", {"objects": {"labels": ["car"]}, "cloud": cloud})
    assert fields["description"] == "a red tram in the rain"
    assert fields["labels"].split() == ["car", "tram", "rain", "tram"]
    assert fields["ocr_text"] == "LINE 4" and fields["has_text"] is True


def test_capture_date_keeps_the_camera_wall_clock() -> None:
    fields = image_fields(
        "x.jpg", "s", {"metadata": {"datetime_original": "2021-06-05T18:30:00+02:00"}}
    )
    assert fields["date"] == datetime(2021, 6, 5, 18, 30)


def test_build_indexes_every_current_image_and_its_vectors(lib: ResultsLibrary) -> None:
    report = update_index(lib.layout, lib.library)

    assert report.documents == 5 and report.added == 5 and report.rebuilt
    assert indexed_keys(lib) == sorted(p.path for p in sample_photos())
    folder = lib.layout.index
    matrix = np.load(folder / "vectors.npy", mmap_mode="r")
    ids = np.load(folder / "vector_ids.npy")
    keys = [unescape_path(k) for k in (folder / "vector_keys.txt").read_text().splitlines()]
    embedded = [p for p in sample_photos() if p.vector is not None]
    assert matrix.dtype == np.float16 and matrix.shape == (len(embedded), 8)
    assert sorted(keys) == sorted(p.path for p in embedded)
    assert list(ids) == sorted(ids) and list(ids) == [key_id(k) for k in keys]
    for photo in embedded:
        np.testing.assert_array_equal(matrix[keys.index(photo.path)], photo.vector)
    codes, bounds = quantise(matrix)  # the int8 codes of the exact ranking, row for row
    np.testing.assert_array_equal(np.load(folder / "vector_codes.npy"), codes)
    np.testing.assert_array_equal(np.load(folder / "vector_bounds.npy"), bounds)


def test_vectors_of_an_older_form_are_rewritten_alone(
    lib: ResultsLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index written before the codes gets them at the next update; its documents stay."""
    files = lib.layout.index_files
    with monkeypatch.context() as previous:  # the index as the previous version left it
        previous.setattr(index_module, "VECTORS_VERSION", index_module.VECTORS_VERSION - 1)
        previous.setattr(vectors_module, "write_codes", lambda _folder: None)
        update_index(lib.layout, lib.library)
    assert not files.vector_codes.exists() and files.vectors.is_file()
    assert VectorMatrix(lib.layout.index).codes is None  # ranked by the exact scan

    report = update_index(lib.layout, lib.library)

    assert not report.committed and report.added == 0 and report.vectors == 4
    assert files.vector_codes.is_file() and files.vector_bounds.is_file()
    assert VectorMatrix(lib.layout.index).codes is not None


def test_no_change_update_writes_nothing(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    before = index_files(lib)
    documents = open_index(lib.layout.index).searcher().num_docs

    report = update_index(lib.layout, lib.library)

    assert not report.committed and report.vectors is None and report.added == 0
    assert index_files(lib) == before
    assert open_index(lib.layout.index).searcher().num_docs == documents


def test_edit_replaces_exactly_that_document(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    edited = Photo("2022/home/cat.jpg", caption="a sleeping kitten", vector=unit_vector(9))
    lib.add_shard([edited])

    report = update_index(lib.layout, lib.library)

    assert report.reindexed_shards == 1 and report.added == 1 and report.deleted_keys == 1
    assert report.documents == 5
    assert count(lib, "kitten") == 1
    assert count(lib, "car") == 0
    assert count(lib, "eiffel") == 1 and count(lib, "paper") == 1
    folder = lib.layout.index
    matrix, keys = np.load(folder / "vectors.npy"), (folder / "vector_keys.txt").read_text()
    np.testing.assert_array_equal(matrix[keys.splitlines().index(edited.path)], edited.vector)


def test_deleted_image_disappears(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    lib.delete("2021/paris/IMG_0002.jpg")

    report = update_index(lib.layout, lib.library)

    assert report.reindexed_shards == 0 and report.deleted_keys == 1
    assert "2021/paris/IMG_0002.jpg" not in indexed_keys(lib)
    assert len(indexed_keys(lib)) == 4
    assert report.vectors == 3


def test_shard_without_current_images_is_dropped(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    lib.delete("2022/home/receipt.jpg")
    lib.delete("scans/old.jpg")

    report = update_index(lib.layout, lib.library)

    assert report.deleted_shards == 1 and report.documents == 3


def test_changed_result_file_reindexes_only_its_shard(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    captions = lib.results / "captions" / "000002-00000.jsonl"
    rows = [{**row, "caption": "a shopping list"} for row in read_rows(captions)]
    write_rows(captions, rows)

    report = update_index(lib.layout, lib.library)

    assert report.reindexed_shards == 1 and report.added == 2 and report.vectors is None
    assert count(lib, "shopping") == 2 and count(lib, "eiffel") == 1


def test_new_module_results_are_picked_up(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    manifest_rows = list(read_rows(lib.results / "technical" / "000001-00000.jsonl"))
    labels = [{**row, "labels": ["bicycle"], "has_person": False} for row in manifest_rows]
    write_rows(lib.results / "objects" / "000001-00000.jsonl", labels)

    update_index(lib.layout, lib.library)

    assert count(lib, "bicycle", "labels") == 3


def test_interrupted_update_leaves_the_previous_index_searchable(
    lib: ResultsLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    update_index(lib.layout, lib.library)
    state_before = (lib.layout.index / "state.json").read_text()
    lib.add_shard([Photo("2022/home/cat.jpg", caption="a sleeping kitten", vector=unit_vector(9))])
    lib.add_shard([Photo("new/one.jpg", caption="a kitten again"), Photo("new/two.jpg")])
    calls = []
    real = index_module.to_document

    def crash_on_second_document(fields: dict) -> tantivy.Document:
        calls.append(fields["key"])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(fields)

    monkeypatch.setattr(index_module, "to_document", crash_on_second_document)
    with pytest.raises(KeyboardInterrupt):
        update_index(lib.layout, lib.library)

    assert indexed_keys(lib) == sorted(p.path for p in sample_photos())
    assert count(lib, "car") == 1 and count(lib, "kitten") == 0
    assert (lib.layout.index / "state.json").read_text() == state_before

    monkeypatch.setattr(index_module, "to_document", real)
    report = update_index(lib.layout, lib.library)
    assert report.documents == 7 and count(lib, "kitten") == 2 and count(lib, "car") == 0


def test_rebuild_gives_the_same_documents(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library)
    lib.delete("scans/old.jpg")
    update_index(lib.layout, lib.library)

    report = update_index(lib.layout, lib.library, rebuild=True)

    assert report.rebuilt and report.added == 4
    assert indexed_keys(lib) == sorted(p.path for p in sample_photos()[:4])


def test_modules_restrict_what_is_indexed(lib: ResultsLibrary) -> None:
    update_index(lib.layout, lib.library, modules=["metadata", "technical"])
    assert count(lib, "eiffel") == 0
    assert count(lib, "fujifilm", "camera") == 2


def test_names_that_are_not_utf8_are_indexed_in_their_text_form(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    hostile = os.fsdecode(b"d\xfcr/caf\xe9.jpg")
    shard = lib.add_shard([Photo(hostile, caption="a cup", vector=unit_vector(3))])
    technical = lib.results / "technical" / f"{shard}.jsonl"
    (row,) = read_rows(technical)
    # a decoder's message quoting the path: Tantivy takes only valid Unicode
    write_rows(technical, [{**row, "status": "error", "error": f"cannot open {hostile}"}])
    report = update_index(lib.layout, lib.library)
    assert report.documents == 1
    assert indexed_keys(lib) == ["d\\xfcr/caf\\xe9.jpg"]
    assert unescape_path(indexed_keys(lib)[0]) == hostile
    assert count(lib, "café", "path_text") == 1  # its words read as Windows-1252
    assert count(lib, "cannot", "errors") == 1
