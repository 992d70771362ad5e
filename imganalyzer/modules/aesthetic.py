"""Aesthetic scores (about 0-10) from the stored CLIP ViT-L/14 embeddings: no pixels read.

The head is LAION's improved-aesthetic-predictor MLP (``sac+logos+ava1-l14-linearMSE.pth``),
trained on L2-normalised OpenAI CLIP ViT-L/14 image embeddings, which is what
``results/embedding/<shard>.npy`` holds when the embedding module runs that model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from imganalyzer.catalog.manifests import Entry
from imganalyzer.results import OK, error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batched import ArrayBatches, BatchedModel, ConcatenatedBatches, RowBatch
from imganalyzer.runtime.registry import (  # noqa: F401 (check_aesthetic_compatible: re-exported)
    MODELS,
    check_aesthetic_compatible,
    locate_weights_file,
    weights_file,
)

_SPEC = MODELS["aesthetic"]
EMBEDDING_DIM = 768  # ViT-L/14's embedding size


class AestheticHead(nn.Module):
    """The improved-aesthetic-predictor MLP; state-dict keys ``layers.{0,2,4,6,7}.*``.

    (n, in_dim) float32 L2-normalised embeddings -> (n, 1) float32 scores.
    """

    def __init__(self, in_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


class AestheticScorer(BatchedModel):
    """Runs the head on stored embeddings, always on CPU: the rule holds no GPU, and a
    whole shard is ~1 GFLOP."""

    spec = _SPEC

    def __init__(self, weights: str = _SPEC.model_keys["weights"], batch_size: int | str = 4096):
        super().__init__(device="cpu", batch_size=batch_size)
        self.weights = weights

    @property
    def model_id(self) -> str:
        return locate_weights_file(self.module, self.weights).model

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        path = weights_file(self.module, self.weights)
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.head = AestheticHead(in_dim=state["layers.0.weight"].shape[1])
        self.head.load_state_dict(state)
        self.head.to(device=device, dtype=dtype).eval()
        self.in_dim = self.head.layers[0].in_features

    def preprocess(self, batch: RowBatch) -> torch.Tensor:
        """(n, d) float16 embeddings -> (n, d) float32."""
        return torch.from_numpy(batch.data.astype(np.float32))

    def predict_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(inputs)[:, 0]

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        """-> (n,) float64 scores."""
        return outputs.cpu().numpy().astype(np.float64)


def run_aesthetic_job(
    shards: Sequence[tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike]],
    weights: str = _SPEC.model_keys["weights"],
    batch_size: int | str = 4096,
) -> AestheticScorer:
    """Score every embedded image of several shards with one head load.

    ``shards``: (embedding .npy, embedding .jsonl, output .jsonl) of each shard; output
    rows follow the embedding rows' order.
    """
    vectors = [np.load(npy) for npy, _, _ in shards]
    upstream = [list(read_rows(jsonl)) for _, jsonl, _ in shards]
    for (npy, _, _), matrix, rows in zip(shards, vectors, upstream, strict=True):
        if len(rows) != len(matrix):
            raise ValueError(f"{npy}: {len(matrix)} vectors, {len(rows)} rows")
    scorer = AestheticScorer(weights, batch_size)
    scorer.load()
    sources = []
    for (npy, _, _), matrix, rows in zip(shards, vectors, upstream, strict=True):
        if matrix.shape[1:] != (scorer.in_dim,):
            width = "x".join(map(str, matrix.shape[1:]))
            raise ValueError(
                f"aesthetic: the head expects {scorer.in_dim}-d embeddings, "
                f"{npy} holds {width}-d ones"
            )
        sources.append(ArrayBatches(matrix, np.array([r["status"] == OK for r in rows], bool)))
    source = ConcatenatedBatches(sources)
    scores = np.full(source.n_rows, np.nan)

    def deliver(indices: np.ndarray, results: np.ndarray) -> None:
        scores[indices] = results

    scorer.run(source, deliver)
    for (_, _, out_jsonl), rows, offset in zip(shards, upstream, source.offsets, strict=False):
        write_rows(out_jsonl, _score_rows(rows, scores[offset : offset + len(rows)], scorer))
    return scorer


def _score_rows(upstream: list[dict], scores: np.ndarray, scorer: AestheticScorer) -> list[dict]:
    rows, model_id = [], scorer.model_id  # resolved once, not per row
    for row, score in zip(upstream, scores, strict=True):
        entry = Entry(row["path"], row["size"], row["mtime_ns"])
        if row["status"] != OK:
            rows.append(error_row(entry, row.get("error", "no embedding")))
        else:
            rows.append(ok_row(entry, {"aesthetic": round(float(score), 4), "model": model_id}))
    return rows


def run_aesthetic_shard(
    embedding_npy: str | os.PathLike,
    embedding_jsonl: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    weights: str = _SPEC.model_keys["weights"],
    batch_size: int | str = 4096,
) -> AestheticScorer:
    """``run_aesthetic_job`` for a single shard."""
    return run_aesthetic_job([(embedding_npy, embedding_jsonl, out_jsonl)], weights, batch_size)
