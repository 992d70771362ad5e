"""Aesthetic scores from stored embeddings, with tiny random heads saved like the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.errors import ConfigError
from imganalyzer.files import atomic_open
from imganalyzer.layout import Layout
from imganalyzer.modules.aesthetic import (
    AestheticHead,
    AestheticScorer,
    AestheticSettings,
    check_aesthetic_compatible,
)
from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelNotFoundError
from tests.unit.conftest import SHARD_ID, TINY_CLIP, TINY_DIM, shard_images, write_shard

JOB = "000001-00000-00000"

# The original file's keys: Linear layers at 0, 2, 4, 6, 7 (dropouts between hold no weights).
UPSTREAM_KEYS = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]


def save_head(path: Path, in_dim: int) -> AestheticHead:
    torch.manual_seed(3)
    head = AestheticHead(in_dim).eval()
    torch.save(head.state_dict(), path)
    return head


def write_embeddings(folder: Path, vectors: np.ndarray, failed: set[int]) -> Layout:
    """A shard's manifest and embedding results in the results folder ``folder``."""
    layout = Layout(folder)
    entries = [Entry(f"{i}.jpg", i, i) for i in range(len(vectors))]
    rows = [
        error_row(e, "truncated file") if i in failed else ok_row(e, {"dims": vectors.shape[1]})
        for i, e in enumerate(entries)
    ]
    write_manifest(layout.manifest(SHARD_ID), entries)
    with atomic_open(layout.array("embedding", SHARD_ID), "wb") as handle:
        np.save(handle, vectors.astype(np.float16))
    write_rows(layout.rows("embedding", SHARD_ID), rows)
    return layout


def score(layout: Layout, weights: str | Path, **settings) -> list[dict]:
    scorer = AestheticScorer(AestheticSettings.defaults(weights=str(weights), **settings))
    run_model_job(scorer, layout, JOB, [SHARD_ID], threads=1)
    return list(read_rows(layout.rows("aesthetic", SHARD_ID)))


def unit_vectors(n: int, dim: int) -> np.ndarray:
    vectors = np.random.default_rng(5).normal(size=(n, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_head_has_the_upstream_layout() -> None:
    head = AestheticHead()
    assert list(head.state_dict()) == UPSTREAM_KEYS
    assert head.layers[0].in_features == 768 and head.layers[-1].out_features == 1


def test_scores_equal_the_head_on_each_vector_and_keep_errors(tmp_path: Path) -> None:
    vectors = unit_vectors(9, 768)
    vectors[4] = 0  # a failed image's row
    layout = write_embeddings(tmp_path, vectors, failed={4})
    head = save_head(tmp_path / "head.pth", 768)
    rows = score(layout, tmp_path / "head.pth")
    assert [row["path"] for row in rows] == [f"{i}.jpg" for i in range(9)]
    assert rows[4]["status"] == "error" and rows[4]["error"] == "truncated file"
    with torch.inference_mode():
        stored = torch.from_numpy(vectors.astype(np.float16).astype(np.float32))
        expected = head(stored)[:, 0].numpy()
    for index, row in enumerate(rows):
        if index != 4:
            assert row["status"] == "ok" and row["model"] == "head.pth"
            assert row["aesthetic"] == pytest.approx(expected[index], abs=1e-4)


def test_batched_scores_equal_one_at_a_time(tmp_path: Path) -> None:
    layout = write_embeddings(tmp_path, unit_vectors(7, 768), failed=set())
    save_head(tmp_path / "head.pth", 768)
    one = [row["aesthetic"] for row in score(layout, tmp_path / "head.pth", batch_size=1)]
    batched = [row["aesthetic"] for row in score(layout, tmp_path / "head.pth", batch_size=4096)]
    assert one == pytest.approx(batched, abs=1e-4)


def test_reads_only_the_embeddings_never_the_tiers(tiny_clip_weights: Path, tmp_path: Path):
    shard = write_shard(tmp_path, shard_images())
    settings = EmbeddingSettings.defaults(
        model=TINY_CLIP, pretrained=str(tiny_clip_weights), device="cpu"
    )
    run_model_job(ClipEmbedder(settings), shard.layout, JOB, [shard.id])
    shutil.rmtree(shard.tiers)
    save_head(tmp_path / "head.pth", TINY_DIM)
    rows = score(shard.layout, tmp_path / "head.pth")
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "ok", "ok", "ok", "ok"]
    assert all(isinstance(r["aesthetic"], float) for r in rows if r["status"] == "ok")


def test_a_head_for_another_embedding_size_fails_clearly(tmp_path: Path) -> None:
    layout = write_embeddings(tmp_path, unit_vectors(3, 512), failed=set())
    save_head(tmp_path / "head.pth", 768)
    with pytest.raises(ValueError, match="expects 768-d embeddings.*holds 512-d"):
        score(layout, tmp_path / "head.pth")


def test_missing_weights_name_the_file_and_the_fetch_command(tmp_path: Path) -> None:
    layout = write_embeddings(tmp_path, unit_vectors(2, 768), failed=set())
    with pytest.raises(ModelNotFoundError) as caught:
        score(layout, tmp_path / "gone.pth")
    assert str(tmp_path / "gone.pth") in str(caught.value)
    assert FETCH_COMMAND in str(caught.value)


def test_only_the_openai_vit_l_14_embedding_is_compatible() -> None:
    check_aesthetic_compatible("ViT-L-14", "openai")
    check_aesthetic_compatible("ViT-L-14-quickgelu", "openai")
    with pytest.raises(ConfigError, match="ViT-B-32"):
        check_aesthetic_compatible("ViT-B-32", "openai")
    with pytest.raises(ConfigError, match="laion2b_s32b_b82k"):
        check_aesthetic_compatible("ViT-L-14", "laion2b_s32b_b82k")
    # a head of the user's own is theirs to match (the job checks the dimensions)
    check_aesthetic_compatible("ViT-B-32", "openai", "/heads/my_vit_b32_head.pth")
