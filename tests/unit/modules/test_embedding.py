"""CLIP embeddings on a tiny open_clip model loaded from a weights file, like real ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings
from imganalyzer.results import read_rows
from imganalyzer.runtime.batches import RowBatch
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelNotFoundError
from tests.unit.conftest import (
    DECODE_FAILURE,
    TEST_TIERS,
    TINY_CLIP,
    TINY_DIM,
    Shard,
    shard_images,
    write_shard,
)

JOB = "000001-00000-00000"

# Our batched tensor resize vs open_clip's PIL transform: antialiased bicubic in both, measured
# at most 4 levels on one pixel and 0.2 levels on average (normalised units: / 255 / std).
MAX_PIXEL_DIFF = 5 / 255 / 0.26
MEAN_PIXEL_DIFF = 0.5 / 255 / 0.26
# float16 storage of unit vectors.
FP16_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def embedder(tiny_clip_weights: Path) -> ClipEmbedder:
    model = tiny_embedder(tiny_clip_weights, batch_size=1)
    model.load()
    return model


def tiny_embedder(weights: Path, **settings) -> ClipEmbedder:
    """The tiny model on the CPU, with the schema's other settings (``settings`` changed)."""
    changes = {"model": TINY_CLIP, "pretrained": str(weights), "device": "cpu"} | settings
    return ClipEmbedder(EmbeddingSettings.defaults(**changes))


def embed(shard: Shard, weights: Path, **settings) -> ClipEmbedder:
    """The embedding job of ``shard`` alone; its outputs lie in the shard's results folder."""
    return run_model_job(tiny_embedder(weights, **settings), shard.layout, JOB, [shard.id])


def padded(rgb: np.ndarray, side: int) -> RowBatch:
    canvas = np.zeros((1, side, side, 3), dtype=np.uint8)
    canvas[0, : rgb.shape[0], : rgb.shape[1]] = rgb
    return RowBatch(np.array([0]), canvas, np.array([rgb.shape[:2]], dtype=np.int32))


def test_preprocess_matches_the_models_own_transform_on_the_true_region(
    embedder: ClipEmbedder, tiny_clip_weights: Path, shard
) -> None:
    import open_clip

    _, _, transform = open_clip.create_model_and_transforms(
        TINY_CLIP, pretrained=str(tiny_clip_weights)
    )
    for rgb in filter(lambda image: image is not None, shard.images):
        ours = embedder.pixel_values(embedder.preprocess(padded(rgb, TEST_TIERS["clip"])))[0]
        theirs = transform(Image.fromarray(rgb))
        assert ours.shape == theirs.shape == (3, 64, 64)
        difference = (ours - theirs).abs()
        assert difference.max() <= MAX_PIXEL_DIFF and difference.mean() <= MEAN_PIXEL_DIFF


def test_shard_vectors_follow_the_manifest_and_equal_one_at_a_time(
    embedder: ClipEmbedder, tiny_clip_weights: Path, tmp_path: Path
) -> None:
    shard = write_shard(tmp_path, shard_images())
    job = embed(shard, tiny_clip_weights, batch_size=4)
    vectors = np.load(shard.layout.array("embedding", shard.id))
    assert vectors.shape == (len(shard.entries), TINY_DIM) and vectors.dtype == np.float16
    assert job.stats.batches == 2 and job.stats.images == len(shard.entries) - 1
    stored = TierReader(shard.tiers)  # JPEG-compressed: not the in-memory tier images
    for index, rgb in enumerate(shard.images):
        if rgb is None:
            assert not vectors[index].any()
            continue
        alone = embedder.infer(padded(stored.image("clip", index), TEST_TIERS["clip"]))[0]
        np.testing.assert_allclose(vectors[index], alone, atol=FP16_TOLERANCE)
        assert abs(np.linalg.norm(vectors[index].astype(np.float32)) - 1) < FP16_TOLERANCE


def test_shard_rows_name_the_model_and_carry_decode_errors(
    tiny_clip_weights: Path, tmp_path: Path
) -> None:
    shard = write_shard(tmp_path, shard_images())
    embed(shard, tiny_clip_weights)
    rows = list(read_rows(shard.layout.rows("embedding", shard.id)))
    assert [row["path"] for row in rows] == [entry.path for entry in shard.entries]
    assert rows[2] == {
        "path": shard.entries[2].path,
        "size": shard.entries[2].size,
        "mtime_ns": shard.entries[2].mtime_ns,
        "status": "error",
        "error": DECODE_FAILURE,
    }
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 6
    assert all(r["model"] == f"{TINY_CLIP}:{tiny_clip_weights}" and r["dims"] == 32 for r in ok)


def test_text_embeddings_are_unit_vectors_in_the_image_space(embedder: ClipEmbedder) -> None:
    text = embedder.encode_text(["a cat on a sofa", "a red car at night", ""])
    assert text.shape == (3, TINY_DIM) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, rtol=1e-5)
    assert not np.allclose(text[0], text[1])


def test_model_is_loaded_once_per_job(embedder: ClipEmbedder) -> None:
    model = embedder.model
    embedder.load()
    embedder.encode_text(["again"])
    assert embedder.model is model


def test_a_missing_weights_file_names_the_model_where_it_looked_and_how_to_fetch(
    tmp_path: Path, tiny_clip_weights: Path
) -> None:
    missing = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(ModelNotFoundError) as caught:
        tiny_embedder(missing).load()
    message = str(caught.value)
    assert TINY_CLIP in message and str(missing) in message and FETCH_COMMAND in message


def test_embedding_runs_in_half_precision_on_request(tiny_clip_weights: Path, shard) -> None:
    # On GPUs the model runs in bf16; open_clip's mixed precision must give close embeddings.
    full = tiny_embedder(tiny_clip_weights)
    full.load()
    half = tiny_embedder(tiny_clip_weights)
    half.load_model(torch.device("cpu"), torch.bfloat16)
    half.device, half.dtype = torch.device("cpu"), torch.bfloat16
    batch = padded(shard.images[0], TEST_TIERS["clip"])
    inputs = full.preprocess(batch)
    with torch.inference_mode():
        a = full.predict_batch(inputs).numpy()
        b = half.predict_batch(inputs).numpy()
    assert float(a[0] @ b[0]) > 0.99


def test_one_job_embeds_several_shards_with_one_model_load(
    tiny_clip_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = ClipEmbedder.load_model
    monkeypatch.setattr(
        ClipEmbedder, "load_model", lambda self, *a: loads.append(1) or original(self, *a)
    )
    shards = [
        write_shard(tmp_path / "job", shard_images()[i:], f"00000{i}-00000") for i in range(3)
    ]
    layout = shards[0].layout
    model = tiny_embedder(tiny_clip_weights, batch_size=4)
    job = run_model_job(model, layout, JOB, [s.id for s in shards])
    assert loads == [1]
    summary = json.loads(layout.job_summary("embedding", JOB).read_text())
    assert summary["shards"] == [s.id for s in shards] and summary["images"] == job.stats.images
    for i, shard in enumerate(shards):
        alone = write_shard(tmp_path / f"alone{i}", shard_images()[i:])
        embed(alone, tiny_clip_weights)
        together = np.load(layout.array("embedding", shard.id))
        assert together.shape == (len(shard.entries), TINY_DIM)
        np.testing.assert_allclose(
            together, np.load(alone.layout.array("embedding", alone.id)), atol=2e-3
        )
        rows = list(read_rows(layout.rows("embedding", shard.id)))
        assert [r["path"] for r in rows] == [e.path for e in shard.entries]


def test_decoding_on_the_device_gives_the_loaders_vectors(
    tiny_clip_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU both decoders are libjpeg-turbo: the pixels, so the vectors, are the same
    (on CUDA nvJPEG rounds differently; the GPU kit measures the cosine there)."""
    from imganalyzer.runtime.batches import EncodedImages

    shard = write_shard(tmp_path, shard_images())
    embed(shard, tiny_clip_weights, batch_size=4)
    loader_vectors = np.load(shard.layout.array("embedding", shard.id))
    decoded: list[int] = []
    original = EncodedImages.decode
    monkeypatch.setattr(EncodedImages, "decode", lambda s: decoded.append(len(s)) or original(s))
    job = embed(shard, tiny_clip_weights, batch_size=4, decode_on_device=True)
    assert decoded == [4, 2] and job.stats.images == 6  # every image came as JPEG bytes
    np.testing.assert_array_equal(
        np.load(shard.layout.array("embedding", shard.id)), loader_vectors
    )
