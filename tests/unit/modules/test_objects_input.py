"""What GroundingDINO is fed: the input size policy, the pixels made on the model's device
(against the model's own image processor), the text encoded once, and the compiled forward
pass (against the eager one), on the tiny random GroundingDINO."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules import objects_input
from imganalyzer.modules.objects import ObjectDetector, ObjectSettings
from imganalyzer.modules.objects_input import InputSize, model_pixels
from imganalyzer.runtime.batches import PaddedImages, RowBatch
from imganalyzer.runtime.job import run_model_job
from tests.support.tiny_groundingdino import build_tiny_groundingdino
from tests.unit.conftest import shard_images, write_shard

PROMPTS = ("person", "face", "traffic sign", "cup", "text", "dog")
# The tiny model's processor: short edge 64, long edge at most 96.
PROCESSOR_SIZE = InputSize((64, 64), 96)
# Any tier image at its own size.
TIER_SIZE = InputSize((1, 4096), 4096)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_groundingdino(tmp_path_factory.mktemp("tiny_groundingdino")))


@pytest.fixture(scope="module")
def tier_batch(tmp_path_factory: pytest.TempPathFactory) -> RowBatch:
    """The decoded rows of conftest's shard, from the detect tier (stored as JPEG)."""
    shard = write_shard(tmp_path_factory.mktemp("objects_input"), shard_images())
    images, sizes, ok = TierReader(shard.tiers).read("detect", 0, len(shard.entries))
    keep = np.flatnonzero(ok)
    return RowBatch(keep, images[keep], sizes[keep])


def tiny_detector(model: str, **settings) -> ObjectDetector:
    """A detector of PROMPTS on the CPU, with the schema's other settings."""
    changes = {"model": model, "prompts": PROMPTS, "device": "cpu"} | settings
    return ObjectDetector(ObjectSettings.defaults(**changes))


def detector(model: str, size: InputSize, **settings) -> ObjectDetector:
    """A loaded detector whose input size is ``size``."""
    found = tiny_detector(model, **settings)
    found.load()
    found.input_size = size
    return found


def test_input_size_keeps_a_tier_in_the_training_range_at_its_own_size() -> None:
    size = InputSize((480, 800), 1333, multiple=1)
    assert size.of(683, 1024) == (683, 1024)  # 3:2 at the default 1024 px tier
    assert size.of(1024, 768) == (1024, 768)  # 3:4
    assert size.of(1024, 1024) == (800, 800)  # a square tier: reduced to the range's end
    assert size.of(200, 300) == (480, 720)  # a small image: enlarged to the range's start
    assert size.of(341, 1024) == (444, 1333)  # a panorama: its long edge bounds it
    # [800, 800] is the model processor's size: a 3:2 tier is enlarged to 1199 x 800
    assert InputSize((800, 800), 1333).of(683, 1024) == (800, 1199)
    rounded = InputSize((480, 800), 1333, multiple=32)
    assert rounded.of(683, 1024) == (672, 1024) and rounded.of(682, 1023) == (672, 1024)


def test_device_pixels_equal_the_model_processor_at_its_size(
    tiny_model: str, tier_batch: RowBatch
) -> None:
    found = detector(tiny_model, PROCESSOR_SIZE)
    images = PaddedImages.from_rows(tier_batch)
    for row, (height, width) in enumerate(tier_batch.sizes.tolist()):
        region = tier_batch.data[row, :height, :width]
        theirs = found.processor.image_processor(images=[region], return_tensors="pt")
        size = PROCESSOR_SIZE.of(*region.shape[:2])
        ours = model_pixels(images, [row], size, found.normalisation)
        assert ours.shape == theirs["pixel_values"].shape
        assert torch.equal(ours, theirs["pixel_values"])  # the same uint8 resize on a CPU


def test_device_pixels_at_the_tier_size_are_the_processor_without_resizing(
    tiny_model: str, tier_batch: RowBatch
) -> None:
    found = detector(tiny_model, TIER_SIZE)
    images = PaddedImages.from_rows(tier_batch)
    for row, (height, width) in enumerate(tier_batch.sizes.tolist()):
        region = tier_batch.data[row, :height, :width]
        theirs = found.processor.image_processor(
            images=[region], do_resize=False, return_tensors="pt"
        )["pixel_values"]
        ours = model_pixels(images, [row], (height, width), found.normalisation)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def processor_path(found: ObjectDetector, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The path before this change, one image at a time: the model processor's pixels and
    the text through BERT on every call."""
    backbone = found.model.model.text_backbone
    found.model.model.text_backbone = backbone.backbone
    try:
        probs, boxes = [], []
        for image, (height, width) in zip(batch.data, batch.sizes.tolist(), strict=True):
            pixels = found.processor.image_processor(
                images=[image[:height, :width]], return_tensors="pt"
            )["pixel_values"]
            with torch.inference_mode():
                one_probs, one_boxes = found._forward(pixels)
            probs.append(one_probs)
            boxes.append(one_boxes)
    finally:
        found.model.model.text_backbone = backbone
    return torch.cat(probs), torch.cat(boxes)


def test_device_path_with_text_once_gives_the_processor_path_detections(
    tiny_model: str, tier_batch: RowBatch
) -> None:
    found = detector(tiny_model, PROCESSOR_SIZE)
    expected_probs, expected_boxes = processor_path(found, tier_batch)
    with torch.inference_mode():
        probs, boxes = found.predict_batch(found.preprocess(tier_batch))
    torch.testing.assert_close(probs, expected_probs, rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes, expected_boxes, rtol=0, atol=1e-5)  # < 0.01 px at 1024


def test_prompts_go_through_the_text_backbone_once_per_job(
    tiny_model: str, tier_batch: RowBatch, tmp_path
) -> None:
    calls: list[int] = []
    original = ObjectDetector.load_model

    def load_and_count(self: ObjectDetector, *args) -> None:
        original(self, *args)
        bert = self.model.model.text_backbone.backbone
        bert.register_forward_hook(lambda module, a, output: calls.append(len(a[0])))

    shard = write_shard(tmp_path, shard_images())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ObjectDetector, "load_model", load_and_count)
        found = tiny_detector(tiny_model, batch_size=2)
        job = run_model_job(found, shard.layout, "000001-00000-00000", [shard.id])
    assert job.stats.batches == 3 and calls == []  # encoded while loading, before the hook


@pytest.mark.slow
def test_compiled_forward_gives_the_eager_boxes_at_the_tier_size(
    tiny_model: str, tier_batch: RowBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The graph capture (fullgraph) is what can break; inductor's code generation takes
    # minutes per shape on this 2-core CPU, so the tests compile with the eager backend.
    monkeypatch.setattr(objects_input, "COMPILE_BACKEND", "eager")
    eager = detector(tiny_model, TIER_SIZE)
    compiled = detector(tiny_model, TIER_SIZE, compile=True)
    assert compiled.compiled is not None and compiled.compiled.backend == "eager"
    sizes = tier_batch.sizes.tolist()
    landscape = [i for i, size in enumerate(sizes) if size == [106, 160]]
    assert len(landscape) == 2  # the cat photo and its flipped copy share a shape
    for rows in (landscape[:2], landscape[:1], landscape[:2]):
        batch = RowBatch(tier_batch.indices[rows], tier_batch.data[rows], tier_batch.sizes[rows])
        with torch.inference_mode():
            expected = eager.predict_batch(eager.preprocess(batch))
            got = compiled.predict_batch(compiled.preprocess(batch))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # batch 2 and batch 1 of one shape: two graphs, compiled once each
    assert compiled.compiled.shapes == {(106, 160, False), (106, 160, True)}
    assert compiled.summary_fields()["compiled_shapes"] == [(106, 160)]


def test_shapes_beyond_the_limit_run_uncompiled(
    tiny_model: str, tier_batch: RowBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects_input, "MAX_COMPILED_SHAPES", 0)
    found = detector(tiny_model, TIER_SIZE, compile=True)
    with torch.inference_mode():
        found.predict_batch(found.preprocess(tier_batch))
    assert found.compiled is not None and found.compiled.shapes == set()


def test_a_job_setting_reaches_the_detector(tiny_model: str) -> None:
    found = tiny_detector(tiny_model, input_short_edge=(64, 64))
    found.load()
    assert found.input_size == InputSize((64, 64), 96, 32)  # the processor's long edge: 96
