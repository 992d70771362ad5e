"""Compaction: the faces results (one array row per face, renumbered in the new shard), the
batches it leaves alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, read_rows, write_rows
from imganalyzer.steps.compact import _copy_faces, _small_batches, _Source
from imganalyzer.store import ResultsStore


def write_faces_shard(results: Path, shard: str, faces_per_row: list[int], seed: int) -> list:
    entries = [Entry(f"{shard}/{i}.jpg", 100 + i, 10**18 + i) for i in range(len(faces_per_row))]
    vectors = np.random.default_rng(seed).standard_normal((sum(faces_per_row), 4))
    rows, start = [], 0
    for entry, count in zip(entries, faces_per_row, strict=True):
        faces = [{"box": [i, i, i + 9, i + 9], "embedding_row": start + i} for i in range(count)]
        rows.append(ok_row(entry, {"faces": faces, "n_faces": count}))
        start += count
    (results / "faces").mkdir(parents=True, exist_ok=True)
    write_rows(results / "faces" / f"{shard}.jsonl", rows)
    np.save(results / "faces" / f"{shard}.npy", vectors.astype(np.float16))
    return entries


def test_compacted_faces_keep_each_face_with_its_own_embedding(tmp_path: Path) -> None:
    a = write_faces_shard(tmp_path, "000001-00000", [2, 0, 1], seed=1)
    b = write_faces_shard(tmp_path, "000002-00000", [0, 3], seed=2)
    part = [_Source("000002-00000", 1, b[1]), _Source("000001-00000", 0, a[0])]
    part += [_Source("000001-00000", 2, a[2]), _Source("000002-00000", 0, b[0])]

    _copy_faces(ResultsStore(Layout(tmp_path)), part, "000003-00000")

    old = {s: np.load(tmp_path / "faces" / f"{s}.npy") for s in ("000001-00000", "000002-00000")}
    old_rows = {s: list(read_rows(tmp_path / "faces" / f"{s}.jsonl")) for s in old}
    new_vectors = np.load(tmp_path / "faces" / "000003-00000.npy")
    new_rows = list(read_rows(tmp_path / "faces" / "000003-00000.jsonl"))
    assert [r["path"] for r in new_rows] == [s.entry.path for s in part]
    assert new_vectors.shape == (6, 4)
    for source, row in zip(part, new_rows, strict=True):
        before = old_rows[source.shard][source.row]["faces"]
        assert [f["box"] for f in row["faces"]] == [f["box"] for f in before]
        for face, old_face in zip(row["faces"], before, strict=True):
            assert np.array_equal(
                new_vectors[face["embedding_row"]], old[source.shard][old_face["embedding_row"]]
            )


def test_a_batch_with_a_failed_shard_job_is_left_alone(tmp_path: Path) -> None:
    """Its empty outputs exist, but its results are not complete until a run retries it."""
    layout = Layout(tmp_path)
    current = set()
    for shard in ("000001-00000", "000002-00000"):
        entry = Entry(f"{shard}.jpg", 10, 10**18)
        write_manifest(layout.manifest(shard), [entry])
        layout.tiers(shard).mkdir(parents=True)
        for path in (layout.thumbnails(shard), layout.technical(shard)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        current.add((shard, entry.path))
    record = layout.job_failure("decode", "000002-00000")
    record.parent.mkdir(parents=True)
    record.write_text(
        '{"module": "decode", "job": "000002-00000", "status": "failed", "outputs": []}'
    )
    batches = _small_batches(Catalog(layout), current, 10, layout, modules=[])
    assert batches == {"000001": ["000001-00000"]}
