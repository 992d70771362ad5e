"""Aesthetic scores (about 0-10) from the stored CLIP ViT-L/14 embeddings: no pixels read.

The head is LAION's improved-aesthetic-predictor MLP (``sac+logos+ava1-l14-linearMSE.pth``),
trained on L2-normalised OpenAI CLIP ViT-L/14 image embeddings, which is what
``results/embedding/<shard>.npy`` holds when the embedding module runs that model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from imganalyzer.config import Settings
from imganalyzer.results import OK
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import ArrayBatches, RowBatch, RowFailure
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import (  # noqa: F401 (check_aesthetic_compatible: re-exported)
    MODELS,
    check_aesthetic_compatible,
)
from imganalyzer.runtime.weights import locate_weights_file, weights_file

EMBEDDING_DIM = 768  # ViT-L/14's embedding size
NO_VECTOR = "no embedding"


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


@dataclass(frozen=True)
class AestheticSettings(Settings):
    """The ``aesthetic`` section: the head's ``weights`` (a path or URL)."""

    section = "aesthetic"
    weights: str
    batch_size: int | str


class AestheticScorer(BatchedModel):
    """Runs the head on stored embeddings, always on CPU: the rule holds no GPU, and a
    whole shard is ~1 GFLOP."""

    spec = MODELS["aesthetic"]

    def __init__(self, settings: AestheticSettings) -> None:
        super().__init__(device="cpu", batch_size=settings.batch_size)
        self.weights = settings.weights
        self._model_id: str | None = None

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

    def decide(self, shard: JobShard, row: int) -> RowFailure | None:
        embedded = shard.rows["embedding"][row]
        return None if embedded["status"] == OK else RowFailure.passed_on(embedded, NO_VECTOR)

    def source(self, shard: JobShard, rows: np.ndarray) -> ArrayBatches:
        vectors = shard.arrays["embedding"]
        if vectors.shape[1:] != (self.in_dim,):
            width = "x".join(map(str, vectors.shape[1:]))
            raise ValueError(
                f"aesthetic: the head expects {self.in_dim}-d embeddings, "
                f"shard {shard.id} holds {width}-d ones"
            )
        return ArrayBatches(vectors[rows], np.ones(len(rows), dtype=bool))

    def row_fields(self, result: float, shard: JobShard, row: int) -> dict[str, Any]:
        if self._model_id is None:  # resolved once, not per row
            self._model_id = self.model_id
        return {"aesthetic": round(float(result), 4), "model": self._model_id}
