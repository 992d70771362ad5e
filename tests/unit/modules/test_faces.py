"""Faces on a tiny InsightFace pack (tiny_insightface.py) loaded through FaceAnalysis, on
synthetic images whose "faces" (bright squares) sit at known tier cells."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from insightface.model_zoo.arcface_onnx import ArcFaceONNX

from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules import faces as faces_module
from imganalyzer.modules.faces import SKIPPED_NO_PERSON, FaceAnalyzer, FaceSettings, onnx_providers
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import ModelNotFoundError
from tests.support.tiny_insightface import BOX_HALF, LANDMARKS, build_tiny_insightface
from tests.unit.conftest import DECODE_FAILURE, SHARD_ID, TEST_TIERS, Shard, write_shard

DET_SIZE = 160  # = the test detect tier: detector pixels are tier pixels
SCALE = 4  # originals are 640 x 480, their detect tier 160 x 120
WHITE, GREY = 255, 150
FP16_TOLERANCE = 2e-3
JOB = "000001-00000-00000"


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_insightface(tmp_path_factory.mktemp("tiny_insightface") / "pack")


def photo(cells: dict[tuple[int, int], int], scale: int = SCALE) -> np.ndarray:
    """A black (120 x 160) * scale image with squares of the given grey level filling the
    detector's 32 px cells (row, column) of its 160 px tier."""
    rgb = np.zeros((120 * scale, 160 * scale, 3), dtype=np.uint8)
    side = 32 * scale
    for (row, column), level in cells.items():
        rgb[row * side : (row + 1) * side, column * side : (column + 1) * side] = level
    return rgb


def expected_box(row: int, column: int, scale: int = SCALE) -> list[float]:
    """SCRFD puts a stride-32 anchor at the cell's top-left corner (tier pixels)."""
    x, y = column * 32, row * 32
    return [v * scale for v in (x - BOX_HALF, y - BOX_HALF, x + BOX_HALF, y + BOX_HALF)]


@dataclass
class Files:
    """A faces job's shard and where its outputs go."""

    shard: Shard
    gated: bool

    @property
    def out_jsonl(self) -> Path:
        return self.shard.layout.rows("faces", self.shard.id)

    @property
    def out_npy(self) -> Path:
        return self.shard.layout.array("faces", self.shard.id)


def make_shard(
    folder: Path,
    images: list[np.ndarray | None],
    has_person: list[bool | None] | None = None,
    shard_id: str = SHARD_ID,
) -> Files:
    """A shard (conftest.write_shard) with technical rows holding the original sizes and,
    if ``has_person`` is given, objects rows (None: an objects error)."""
    shard = write_shard(folder, images, shard_id)
    technical = [
        error_row(e, DECODE_FAILURE)
        if rgb is None
        else ok_row(e, {"width": rgb.shape[1], "height": rgb.shape[0]})
        for e, rgb in zip(shard.entries, images, strict=True)
    ]
    write_rows(shard.technical, technical)
    if has_person is not None:
        rows = [
            error_row(e, "model crashed") if flag is None else ok_row(e, {"has_person": flag})
            for e, flag in zip(shard.entries, has_person, strict=True)
        ]
        write_rows(shard.layout.rows("objects", shard.id), rows)
    return Files(shard, gated=has_person is not None)


def tiny_settings(pack: Path | str, **settings) -> FaceSettings:
    """The tiny pack's settings on the CPU, with the schema's other settings."""
    changes = {"pack": str(pack), "det_size": DET_SIZE, "device": "cpu"} | settings
    return FaceSettings.defaults(**changes)


def run(shards: list[Files], pack: Path, **settings) -> FaceAnalyzer:
    """One faces job over ``shards`` (all in one results folder), gated on objects' rows
    where they were written, as the workflow's job is when objects runs."""
    layout, ids = shards[0].shard.layout, [files.shard.id for files in shards]
    analyzer = FaceAnalyzer.for_job(tiny_settings(pack, **settings), layout, shards[0].gated)
    return run_model_job(analyzer, layout, JOB, ids, threads=1)


def test_boxes_and_landmarks_are_mapped_from_the_tier_to_original_pixels(
    pack: Path, tmp_path: Path
) -> None:
    files = make_shard(tmp_path, [photo({(2, 1): WHITE})])
    run([files], pack)
    (row,) = read_rows(files.out_jsonl)
    assert row["status"] == "ok" and row["model"] == str(pack) and row["n_faces"] == 1
    (face,) = row["faces"]
    np.testing.assert_allclose(face["box"], expected_box(2, 1), atol=0.1)
    anchor = np.array([32, 64])
    expected_points = (anchor + np.array(LANDMARKS)) * SCALE
    np.testing.assert_allclose(face["landmarks"], expected_points, atol=0.1)
    assert face["score"] > 0.95 and face["age"] == 30 and face["sex"] == "M"


def test_one_recognition_call_per_image_and_npy_rows_follow_faces(
    pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [photo({(2, 1): WHITE, (2, 4): GREY}), photo({}), photo({(1, 2): WHITE})]
    files = make_shard(tmp_path, images)
    calls: list[int] = []
    get_feat = ArcFaceONNX.get_feat
    monkeypatch.setattr(
        ArcFaceONNX, "get_feat", lambda self, imgs: calls.append(len(imgs)) or get_feat(self, imgs)
    )
    run([files], pack)
    rows = list(read_rows(files.out_jsonl))
    assert [r["n_faces"] for r in rows] == [2, 0, 1]
    assert calls == [2, 1]  # one call per image with faces, all its crops at once
    matrix = np.load(files.out_npy)
    assert matrix.shape == (3, 512) and matrix.dtype == np.float16
    assert [f["embedding_row"] for r in rows for f in r["faces"]] == [0, 1, 2]
    # Each row equals InsightFace's own one-face-at-a-time path on the stored tier image.
    monkeypatch.setattr(ArcFaceONNX, "get_feat", get_feat)
    analyzer = FaceAnalyzer(tiny_settings(pack))
    analyzer.load()
    stored = TierReader(files.shard.tiers)
    for index, row in enumerate(rows):
        bgr = np.ascontiguousarray(stored.image("detect", index)[:, :, ::-1])
        theirs = sorted(analyzer.app.get(bgr), key=lambda f: f.bbox[0])
        ours = sorted(row["faces"], key=lambda f: f["box"][0])
        assert len(theirs) == len(ours)
        for face, their_face in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(
                matrix[face["embedding_row"]], their_face.normed_embedding, atol=FP16_TOLERANCE
            )
            np.testing.assert_allclose(face["box"], their_face.bbox * SCALE, atol=0.1)


def test_min_score_and_min_face_size_drop_faces(pack: Path, tmp_path: Path) -> None:
    big = photo({(2, 1): WHITE, (2, 4): GREY})  # faces of 256 original px
    small = photo({(2, 1): WHITE}, scale=1)  # 64 original px: tier = original
    files = make_shard(tmp_path, [big, small])
    run([files], pack)
    assert [r["n_faces"] for r in read_rows(files.out_jsonl)] == [2, 1]
    run([files], pack, min_score=0.8)  # the grey square scores ~0.67
    rows = list(read_rows(files.out_jsonl))
    assert [r["n_faces"] for r in rows] == [1, 1] and rows[0]["faces"][0]["score"] > 0.8
    run([files], pack, min_face_size=100)
    assert [r["n_faces"] for r in read_rows(files.out_jsonl)] == [2, 0]


def test_images_without_person_are_never_read_and_errors_become_rows(
    pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    face = photo({(2, 1): WHITE})
    images = [face, face, None, face]
    files = make_shard(tmp_path, images, has_person=[True, False, True, None])
    read: list[int] = []
    tier_read = TierReader.read

    def reading(self, tier, start, stop):
        read.extend(range(start, stop))
        return tier_read(self, tier, start, stop)

    monkeypatch.setattr(TierReader, "read", reading)
    run([files], pack)
    rows = list(read_rows(files.out_jsonl))
    assert read == [0]
    assert rows[0]["status"] == "ok" and rows[0]["n_faces"] == 1
    assert rows[1]["status"] == "ok" and rows[1]["skipped"] == SKIPPED_NO_PERSON
    assert rows[1]["faces"] == []
    assert rows[2] == error_row(files_entry(files, 2), DECODE_FAILURE)
    assert rows[3]["status"] == "error" and "model crashed" in rows[3]["error"]
    assert np.load(files.out_npy).shape == (1, 512)


def files_entry(files: Files, index: int):
    return files.shard.entries[index]


def test_all_decoded_images_are_analysed_without_objects_and_one_load_serves_shards(
    pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_shard(tmp_path, [photo({(2, 1): WHITE})], shard_id="000001-00000")
    second = make_shard(
        tmp_path, [photo({}), photo({(1, 1): WHITE, (1, 3): WHITE})], shard_id="000002-00000"
    )
    loads: list[str] = []
    load = FaceAnalyzer._face_analysis
    monkeypatch.setattr(
        FaceAnalyzer, "_face_analysis", lambda self, f: loads.append(f) or load(self, f)
    )
    job = run([first, second], pack)
    assert len(loads) == 1 and job.stats.images == 3 and job.faces == 3
    assert [r["n_faces"] for r in read_rows(second.out_jsonl)] == [0, 2]
    assert np.load(second.out_npy).shape == (2, 512)
    norms = np.linalg.norm(np.load(second.out_npy).astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1, atol=FP16_TOLERANCE)


def test_a_failing_image_becomes_an_error_row(
    pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_shard(tmp_path, [photo({(2, 1): WHITE}), photo({(1, 1): WHITE})])
    analyze = FaceAnalyzer.analyze

    def flaky(self, rgb, scale=(1.0, 1.0)):
        if rgb[32:64, 32:64].mean() > 200:  # the second image
            raise RuntimeError("onnxruntime exploded")
        return analyze(self, rgb, scale)

    monkeypatch.setattr(FaceAnalyzer, "analyze", flaky)
    run([files], pack)
    rows = list(read_rows(files.out_jsonl))
    assert rows[0]["n_faces"] == 1
    assert rows[1]["status"] == "error" and "onnxruntime exploded" in rows[1]["error"]


def test_a_missing_pack_is_reported_without_downloading(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="no .onnx files"):
        FaceAnalyzer(tiny_settings(empty)).load()
    with pytest.raises(ModelNotFoundError, match="imganalyzer models fetch"):
        FaceAnalyzer(tiny_settings("no_such_pack_here")).load()


def test_providers_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: with_cuda)
    assert onnx_providers("auto") == with_cuda and onnx_providers("cuda") == with_cuda
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="CUDA"):
        onnx_providers("cuda")


def test_the_tier_is_the_detect_tier() -> None:
    assert faces_module.FaceAnalyzer.tier == "detect" and "detect" in TEST_TIERS
