"""Aesthetic scores (about 0-10) from the stored CLIP ViT-L/14 embeddings: no pixels read.

The head is LAION's improved-aesthetic-predictor MLP (``sac+logos+ava1-l14-linearMSE.pth``),
trained on L2-normalised OpenAI CLIP ViT-L/14 image embeddings, which is what
``results/embedding/<shard>.npy`` holds when the embedding module runs that model.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from imganalyzer.catalog import Entry
from imganalyzer.models import (  # noqa: F401 (check_aesthetic_compatible: re-exported)
    MODELS,
    check_aesthetic_compatible,
    locate_weights_file,
    weights_file,
)
from imganalyzer.results import OK, error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime import ArrayBatches, BatchedModel, RowBatch

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

    module = _SPEC.module
    tier = _SPEC.tier
    default_batch_size = _SPEC.default_batch_size

    def __init__(self, weights: str = _SPEC.model_keys["weights"], batch_size: int | str = "auto"):
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


def run_aesthetic_shard(
    embedding_npy: str | os.PathLike,
    embedding_jsonl: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    weights: str = _SPEC.model_keys["weights"],
    batch_size: int | str = "auto",
) -> AestheticScorer:
    """Score every embedded image of a shard; rows follow the embedding rows' order."""
    vectors = np.load(embedding_npy)
    upstream = list(read_rows(embedding_jsonl))
    if len(upstream) != len(vectors):
        raise ValueError(f"{embedding_npy}: {len(vectors)} vectors, {len(upstream)} rows")
    scorer = AestheticScorer(weights, batch_size)
    scorer.load()
    if vectors.shape[1] != scorer.in_dim:
        raise ValueError(
            f"aesthetic: the head expects {scorer.in_dim}-d embeddings, "
            f"{embedding_npy} holds {vectors.shape[1]}-d ones"
        )
    scores = np.full(len(vectors), np.nan)

    def deliver(indices: np.ndarray, results: np.ndarray) -> None:
        scores[indices] = results

    usable = np.array([row["status"] == OK for row in upstream], dtype=bool)
    scorer.run(ArrayBatches(vectors, usable), deliver)
    rows = []
    for row, score in zip(upstream, scores, strict=True):
        entry = Entry(row["path"], row["size"], row["mtime_ns"])
        if row["status"] != OK:
            rows.append(error_row(entry, row.get("error", "no embedding")))
        else:
            fields = {"aesthetic": round(float(score), 4), "model": scorer.model_id}
            rows.append(ok_row(entry, fields))
    write_rows(out_jsonl, rows)
    return scorer
