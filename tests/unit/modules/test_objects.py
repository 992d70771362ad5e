"""Zero-shot object detection on a tiny random GroundingDINO loaded with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules.objects import (
    FP32_MODULES,
    Detections,
    ObjectDetector,
    ObjectSettings,
    detection_fields,
    keep_in_fp32,
    prompt_text,
    select_detections,
)
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batches import RowBatch
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import ModelNotFoundError
from tests.support.tiny_groundingdino import ReplayedQuerySelection, build_tiny_groundingdino
from tests.unit.conftest import DECODE_FAILURE, SHARD_ID, TEST_TIERS, shard_images, write_shard

PROMPTS = ("person", "face", "traffic sign", "cup", "text", "dog")
# The originals are this many times larger than the arrays the shard's tiers were made from.
ORIGINAL_SCALE = 3


def tiny_detector(model: str, fp32_modules=FP32_MODULES, **settings) -> ObjectDetector:
    """A detector of PROMPTS on the CPU, with the schema's other settings."""
    changes = {"model": model, "prompts": PROMPTS, "device": "cpu"} | settings
    return ObjectDetector(ObjectSettings.defaults(**changes), fp32_modules)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_groundingdino(tmp_path_factory.mktemp("tiny_groundingdino")))


@pytest.fixture(scope="module")
def detector(tiny_model: str) -> ObjectDetector:
    model = tiny_detector(tiny_model, batch_size=1)
    model.load()
    return model


def write_objects_shard(folder: Path, images: list[np.ndarray | None], shard_id: str = SHARD_ID):
    """conftest's shard, with technical rows that hold the originals' width and height
    (conftest's rows have none)."""
    shard = write_shard(folder, images, shard_id)
    rows = [
        error_row(entry, DECODE_FAILURE)
        if rgb is None
        else ok_row(
            entry, {"width": rgb.shape[1] * ORIGINAL_SCALE, "height": rgb.shape[0] * ORIGINAL_SCALE}
        )
        for entry, rgb in zip(shard.entries, images, strict=True)
    ]
    write_rows(shard.technical, rows)
    return shard


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory):
    return write_objects_shard(tmp_path_factory.mktemp("objects_shard"), shard_images())


JOB = "000001-00000-00000"


def run_rows(model: str, shard, **settings) -> list[dict]:
    """The objects job of ``shard`` alone: its rows."""
    run_model_job(tiny_detector(model, **settings), shard.layout, JOB, [shard.id])
    return list(read_rows(shard.layout.rows("objects", shard.id)))


def one_image(reader: TierReader, index: int) -> RowBatch:
    side = TEST_TIERS["detect"]
    images, sizes, _ = reader.read("detect", index, index + 1)
    assert images.shape == (1, side, side, 3)
    return RowBatch(np.array([index]), images, sizes)


@pytest.fixture(scope="module")
def job_rows(tiny_model: str, shard) -> list[dict]:
    return run_rows(tiny_model, shard)


def test_rows_follow_the_manifest_with_labels_from_the_prompts(
    tiny_model: str, shard, job_rows: list[dict]
) -> None:
    rows = job_rows
    assert [row["path"] for row in rows] == [entry.path for entry in shard.entries]
    assert rows[2]["status"] == "error" and rows[2]["error"] == DECODE_FAILURE
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 6 and all(row["model"] == tiny_model for row in ok)
    assert sum(len(row["detections"]) for row in ok) > 0  # random weights: many detections
    for row in ok:
        found = [d["label"] for d in row["detections"]]
        assert set(found) <= set(PROMPTS)
        assert row["labels"] == sorted(set(found))
        scores = [d["score"] for d in row["detections"]]
        assert scores == sorted(scores, reverse=True) and all(s > 0.35 for s in scores)
        assert row["has_person"] == bool({"person", "face"} & set(found))
        assert row["has_text"] == ("text" in found)  # of the default text labels, only "text"


def test_boxes_are_in_original_pixels(detector: ObjectDetector, shard, job_rows: list) -> None:
    rows, images = job_rows, shard_images()
    reader = TierReader(shard.tiers)
    for index in (0, 1, 5):  # landscape, portrait, a strip
        rgb = images[index]
        alone = detector.infer(one_image(reader, index))[0]
        width, height = rgb.shape[1] * ORIGINAL_SCALE, rgb.shape[0] * ORIGINAL_SCALE
        expected = np.clip(alone.boxes, 0, 1) * [width, height, width, height]
        got = np.array([d["box"] for d in rows[index]["detections"]]).reshape(-1, 4)
        np.testing.assert_allclose(got, expected, atol=0.06)
        assert [d["label"] for d in rows[index]["detections"]] == [
            PROMPTS[i] for i in alone.prompts
        ]


def test_detection_fields_map_a_known_detection_by_hand() -> None:
    # Two boxes relative to the image; the original is 4000 x 3000 pixels.
    detections = Detections(
        prompts=np.array([2, 0]),
        scores=np.array([0.812345, 0.5]),
        boxes=np.array([[0.1, 0.2, 0.5, 0.9], [-0.1, 0.25, 1.2, 0.5]]),
    )
    fields = detection_fields(
        detections, PROMPTS, 4000, 3000, frozenset({"traffic sign"}), frozenset({"face"})
    )
    assert fields == {
        "labels": ["person", "traffic sign"],
        "detections": [
            {"label": "traffic sign", "score": 0.8123, "box": [400.0, 600.0, 2000.0, 2700.0]},
            {"label": "person", "score": 0.5, "box": [0.0, 750.0, 4000.0, 1500.0]},  # clipped
        ],
        "has_person": False,  # "person" is not a person label here
        "has_text": True,
    }


def test_select_detections_maps_tokens_back_to_multi_word_prompts() -> None:
    # Tokens: [CLS] person . traffic sign . cup . [SEP]
    token_prompt = torch.tensor([-1, 0, -1, 1, 1, -1, 2, -1, -1])
    probs = torch.zeros(5, 9)
    probs[0, 4] = 0.9  # "sign" of "traffic sign"
    probs[1, [1, 6]] = torch.tensor([0.5, 0.7])  # person and cup: cup is more probable
    probs[2, 2] = 0.95  # only a separator: names no prompt, dropped
    probs[3, 1] = 0.3  # below the box threshold
    probs[4, [0, 3]] = torch.tensor([0.8, 0.2])  # [CLS] scores it, "traffic" below text thr.
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]] * 5)
    found = select_detections(probs, boxes, token_prompt, 3, 0.35, 0.25, 10)
    assert found.prompts.tolist() == [1, 2]  # traffic sign (0.9), cup (0.7)
    np.testing.assert_allclose(found.scores, [0.9, 0.7])
    np.testing.assert_allclose(found.boxes, [[0.4, 0.3, 0.6, 0.7]] * 2, atol=1e-6)
    best = select_detections(probs, boxes, token_prompt, 3, 0.35, 0.25, 1)
    assert best.prompts.tolist() == [1]


def test_prompt_tokens_align_with_the_text(detector: ObjectDetector) -> None:
    assert prompt_text(PROMPTS) == "person. face. traffic sign. cup. text. dog."
    ids = detector.text["input_ids"][0].tolist()
    tokenizer = detector.processor.tokenizer
    for index, prompt in enumerate(PROMPTS):
        tokens = [ids[i] for i in np.flatnonzero(detector.token_prompt.numpy() == index)]
        assert tokenizer.decode(tokens) == prompt


def test_batched_results_equal_one_image_at_a_time(tiny_model: str, shard, tmp_path: Path) -> None:
    one = run_rows(tiny_model, shard, batch_size=1)
    batched = run_rows(tiny_model, shard, batch_size=7)
    assert_rows_close(one, batched)


def assert_rows_close(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert {k: v for k, v in a.items() if k != "detections"} == {
            k: v for k, v in b.items() if k != "detections"
        }
        assert [d["label"] for d in a.get("detections", [])] == [
            d["label"] for d in b.get("detections", [])
        ]
        for x, y in zip(a.get("detections", []), b.get("detections", []), strict=True):
            assert abs(x["score"] - y["score"]) <= 2e-4
            np.testing.assert_allclose(x["box"], y["box"], atol=0.2)


def test_one_job_over_two_shards_equals_per_shard_runs(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = ObjectDetector.load_model
    monkeypatch.setattr(
        ObjectDetector, "load_model", lambda self, *a: loads.append(1) or original(self, *a)
    )
    images = shard_images()
    parts = [images[:3], images[3:]]
    shards = [
        write_objects_shard(tmp_path / "job", part, f"00000{i}-00000")
        for i, part in enumerate(parts)
    ]
    layout = shards[0].layout
    run_model_job(tiny_detector(tiny_model, batch_size=2), layout, JOB, [s.id for s in shards])
    assert loads == [1]
    for i, (shard, part) in enumerate(zip(shards, parts, strict=True)):
        alone = run_rows(
            tiny_model, write_objects_shard(tmp_path / f"alone{i}", part), batch_size=2
        )
        together = list(read_rows(layout.rows("objects", shard.id)))
        assert [r["path"] for r in together] == [e.path for e in read_manifest(shard.manifest)]
        assert_rows_close(alone, together)


def test_a_missing_model_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        tiny_detector(missing).load()
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        tiny_detector("imganalyzer-test/not-a-repo").load()


def test_keep_in_fp32_casts_at_the_island_boundaries() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    reference = [layer.weight.detach().clone() for layer in model]
    model.to(torch.bfloat16)
    assert keep_in_fp32(model, {"1"}) == ["1"]
    seen = []
    model[1].register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    out = model(torch.ones(2, 4, dtype=torch.bfloat16))
    # Inside: fp32 in (cast by the island's pre-hook); out: cast back to the caller's bf16.
    assert out.dtype == torch.bfloat16 and seen == [(torch.float32, torch.bfloat16)]
    assert [layer.weight.dtype for layer in model] == [
        torch.bfloat16,
        torch.float32,
        torch.bfloat16,
    ]
    # The island was converted back from bf16: its weights carry bf16 rounding only.
    torch.testing.assert_close(model[1].weight, reference[1], atol=1e-2, rtol=1e-2)


def bf16_detector(model: str, fp32_modules) -> ObjectDetector:
    detector = tiny_detector(model, fp32_modules)
    detector.device, detector.dtype = torch.device("cpu"), torch.bfloat16
    detector.load_model(detector.device, detector.dtype)
    return detector


def test_mixed_precision_keeps_islands_in_fp32_and_stays_close(
    detector: ObjectDetector, tiny_model: str, shard
) -> None:
    reader = TierReader(shard.tiers)
    inputs = detector.preprocess(one_image(reader, 3))
    mixed, pure = bf16_detector(tiny_model, FP32_MODULES), bf16_detector(tiny_model, ())
    assert mixed.fp32_converted and not pure.fp32_converted
    for name, module in mixed.model.named_modules():
        if type(module).__name__ in FP32_MODULES:
            assert all(p.dtype == torch.float32 for p in module.parameters()), name
    assert {p.dtype for p in mixed.model.model.backbone.parameters()} == {torch.bfloat16}
    # Random weights make the query selection flip on any change: replay fp32's selection.
    with torch.inference_mode(), ReplayedQuerySelection() as selection:
        probs, boxes = detector.predict_batch(inputs)
        selection.replay()
        mixed_probs, mixed_boxes = mixed.predict_batch(inputs)  # pixels cast to bf16 there
        pure_probs, pure_boxes = pure.predict_batch(inputs)
    assert mixed_probs.dtype == torch.float32
    mixed_drift = (mixed_probs - probs).abs()
    pure_drift = (pure_probs - probs).abs()
    # Measured: mixed max 0.041 / mean 0.0029 and boxes 0 (the reference points stay fp32);
    # pure bf16 max 0.086 / mean 0.0041 and boxes 0.0011 (relative: 1.1 px at 1024 px).
    assert mixed_drift.max() < 0.08 and mixed_drift.mean() < 0.004
    assert (mixed_boxes - boxes).abs().max() < 1e-4
    assert mixed_drift.mean() < pure_drift.mean()
    assert (pure_boxes - boxes).abs().max() > 1e-4


def test_without_technical_sizes_boxes_fall_back_to_tier_pixels(
    detector: ObjectDetector, tmp_path: Path
) -> None:
    shard = write_shard(tmp_path, shard_images())
    shard.technical.unlink()
    rows = run_rows(detector.model_name, shard)
    reader = TierReader(shard.tiers)
    assert rows[2]["status"] == "error"  # not decoded: the tier says so
    for index in (0, 1):
        _, sizes, _ = reader.read("detect", index, index + 1)
        height, width = sizes[0]
        alone = detector.infer(one_image(reader, index))[0]
        expected = np.clip(alone.boxes, 0, 1) * [width, height, width, height]
        got = np.array([d["box"] for d in rows[index]["detections"]]).reshape(-1, 4)
        np.testing.assert_allclose(got, expected, atol=0.06)
