"""The index's vectors: every current image's embedding gathered into one float16 matrix,
rows sorted by key id, with their ids and keys; none for an image whose embedding failed;
the files go when no embedding is left."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imganalyzer.catalog.manifests import unescape_path
from imganalyzer.search.documents import key_id
from imganalyzer.search.index import update_index
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

CAFE = os.fsdecode(b"old/caf\xe9.jpg")


def vector_files(lib: ResultsLibrary) -> tuple[np.ndarray, np.ndarray, list[str]]:
    files = lib.layout.index_files
    keys = files.vector_keys.read_text(encoding="utf-8").splitlines()
    return np.load(files.vectors), np.load(files.vector_ids), [unescape_path(k) for k in keys]


def test_the_matrix_holds_each_current_embedding_sorted_by_key_id(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    photos = [*sample_photos(), Photo(CAFE, caption="a cup", vector=unit_vector(7))]
    lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    update_index(lib.layout, lib.library)
    matrix, ids, keys = vector_files(lib)
    embedded = {p.path: p.vector for p in photos if p.vector is not None}
    assert sorted(keys) == sorted(embedded) and "scans/old.jpg" not in keys  # its embedding failed
    assert ids.dtype == np.uint64 and list(ids) == sorted(ids)
    assert list(ids) == [key_id(k) for k in keys]
    assert matrix.dtype == np.float16 and matrix.shape == (len(keys), len(unit_vector(1)))
    for row, key in enumerate(keys):
        assert np.array_equal(matrix[row], embedded[key]), key


def test_a_deleted_image_leaves_the_matrix_and_no_embedding_removes_the_files(
    tmp_path: Path,
) -> None:
    lib = ResultsLibrary(tmp_path)
    photos = sample_photos()[:2]
    lib.add_shard(photos)
    update_index(lib.layout, lib.library)
    lib.delete(photos[0].path)
    update_index(lib.layout, lib.library)
    _, _, keys = vector_files(lib)
    assert keys == [photos[1].path]
    lib.delete(photos[1].path)
    update_index(lib.layout, lib.library)
    files = lib.layout.index_files
    assert not any(path.exists() for path in files.vector_files)
