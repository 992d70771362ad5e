"""CLIP image embeddings (open_clip) of a shard, from its ``clip`` tier, and text embeddings.

Output per shard: ``<shard>.npy``, a float16 (n, dim) matrix of L2-normalised image
embeddings in manifest row order (all zeros for images that could not be decoded), and
``<shard>.jsonl`` rows (``model``, ``dims``; error rows for those images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.files import atomic_open
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.runtime.batched import (
    NOT_DECODED,
    BatchedModel,
    ConcatenatedBatches,
    PaddedImages,
    RowBatch,
    TierBatches,
    decode_failures,
)
from imganalyzer.runtime.registry import MODELS, open_clip_arguments, open_clip_id

_SPEC = MODELS["embedding"]


class ClipEmbedder(BatchedModel):
    """An open_clip model's image (and text) tower. ``pretrained=None``: random weights."""

    spec = _SPEC
    # open_clip's own "bf16"/"fp16" precision keeps LayerNorm in fp32 (OpenAI's recipe).
    half_precision_safe = True

    def __init__(
        self,
        model_name: str = _SPEC.model_keys["model"],
        pretrained: str | None = _SPEC.model_keys["pretrained"],
        device: str = "auto",
        batch_size: int | str = "auto",
    ) -> None:
        super().__init__(device, batch_size)
        self.model_name, self.pretrained = model_name, pretrained
        self.dim = 0

    @property
    def model_id(self) -> str:
        return open_clip_id(self.model_name, self.pretrained)

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        import open_clip

        name, kwargs = open_clip_arguments(self.model_name, self.pretrained)
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
        model, _, _ = open_clip.create_model_and_transforms(
            name, precision=precision, device=device, **kwargs
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self._set_preprocessing(model.visual.preprocess_cfg)
        self.dim = self._embedding_dim()

    def _set_preprocessing(self, config: dict[str, Any]) -> None:
        size = config["size"]
        side = size if isinstance(size, int) else size[0]
        resize_mode = config.get("resize_mode", "shortest")
        if (not isinstance(size, int) and size[0] != size[1]) or resize_mode == "longest":
            raise ValueError(f"embedding: preprocessing {config} is not supported")
        self.side, self.resize_mode = side, resize_mode
        self.interpolation = InterpolationMode(config.get("interpolation", "bicubic"))
        self.mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(config["std"], dtype=torch.float32).view(1, 3, 1, 1)

    def _embedding_dim(self) -> int:
        if isinstance(getattr(self.model.visual, "output_dim", None), int):
            return self.model.visual.output_dim
        probe = torch.zeros(1, 3, self.side, self.side, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            return int(self.model.encode_image(probe).shape[-1])

    def preprocess(self, batch: RowBatch) -> PaddedImages:
        """The padded tier images as uint8 tensors: resampling runs on the model's device
        (``pixel_values``), where it costs nothing next to the model; on the loader's CPU it
        cost 3-4 ms per image, which held ViT-L/14 on a GPU to 12% of its speed."""
        return PaddedImages.from_rows(batch)

    def pixel_values(self, images: PaddedImages) -> torch.Tensor:
        """-> (n, 3, side, side) float32 normalised, on the images' device.

        As the model's own transform: from each image's true region (never the padding),
        resize the shortest side to ``side`` (or squash, per the model's config) with
        antialiased bicubic, rounded to 8 bits as an image library would, centre-crop, scale
        to [0, 1], subtract mean, divide by std."""
        crops = [self._resize_crop(region) for region in images.true_regions()]
        pixels = torch.stack(crops).div_(255)
        mean, std = self.mean.to(pixels.device), self.std.to(pixels.device)
        return pixels.sub_(mean).div_(std)

    def _resize_crop(self, chw: torch.Tensor) -> torch.Tensor:
        """(3, h, w) uint8 -> (3, side, side) float32 in [0, 255], resampled like PIL."""
        image = chw.float()
        if self.resize_mode == "squash":
            size = [self.side, self.side]
            resized = TF.resize(image, size, self.interpolation, antialias=True)
        else:
            resized = TF.resize(image, self.side, self.interpolation, antialias=True)
            resized = TF.center_crop(resized, [self.side, self.side])
        return resized.round_().clamp_(0, 255)

    def predict_batch(self, inputs: PaddedImages) -> torch.Tensor:
        """Padded uint8 tier images on the device -> (n, dim) float32, L2-normalised."""
        pixels = self.pixel_values(inputs).to(self.dtype)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        """-> (n, dim) float16 on the host."""
        return outputs.to(torch.float16).cpu().numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings in the image embeddings' space: (n, dim) float32, L2-normalised."""
        self.load()
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).cpu().numpy()


@dataclass(frozen=True)
class ShardFiles:
    """The inputs and outputs of one shard of an embedding job."""

    manifest: str | os.PathLike
    tiers: str | os.PathLike
    technical: str | os.PathLike | None
    out_npy: str | os.PathLike
    out_jsonl: str | os.PathLike


def run_embedding_job(
    shards: Sequence[ShardFiles],
    model_name: str = _SPEC.model_keys["model"],
    pretrained: str | None = _SPEC.model_keys["pretrained"],
    device: str = "auto",
    batch_size: int | str = "auto",
    threads: int = 2,
) -> ClipEmbedder:
    """Embed every decoded image of several shards with one model load.

    The shards are read as one stream of batches, so the loader keeps the model fed
    across shard boundaries. ``threads``: CPU threads of the job; one drives the model,
    the rest load batches (on CPU, torch uses all of them for the forward pass). Returns
    the embedder, whose ``stats`` hold the job's timings.
    """
    torch.set_num_threads(max(1, threads))
    entries = [read_manifest(shard.manifest) for shard in shards]
    readers = [TierReader(shard.tiers) for shard in shards]
    for shard, rows, reader in zip(shards, entries, readers, strict=True):
        if reader.n_images != len(rows):
            raise ValueError(f"{shard.tiers}: {reader.n_images} images, manifest has {len(rows)}")
    embedder = ClipEmbedder(model_name, pretrained, device, batch_size)
    embedder.load()
    source = ConcatenatedBatches([TierBatches(reader, embedder.tier) for reader in readers])
    vectors = np.zeros((source.n_rows, embedder.dim), dtype=np.float16)
    embedded = np.zeros(source.n_rows, dtype=bool)

    def deliver(indices: np.ndarray, results: np.ndarray) -> None:
        vectors[indices] = results
        embedded[indices] = True

    embedder.run(source, deliver, loader_threads=max(1, threads - 1))
    fields = {"model": embedder.model_id, "dims": embedder.dim}
    for shard, rows, offset in zip(shards, entries, source.offsets, strict=False):
        rows_of_shard = slice(offset, offset + len(rows))
        _write_shard(shard, rows, vectors[rows_of_shard], embedded[rows_of_shard], fields)
    return embedder


def _write_shard(
    shard: ShardFiles,
    entries: list,
    vectors: np.ndarray,
    embedded: np.ndarray,
    fields: dict[str, Any],
) -> None:
    failures = decode_failures(shard.technical, len(entries))
    rows = [
        ok_row(entry, fields) if embedded[i] else error_row(entry, failures.get(i, NOT_DECODED))
        for i, entry in enumerate(entries)
    ]
    with atomic_open(shard.out_npy, "wb") as handle:
        np.save(handle, vectors)
    write_rows(shard.out_jsonl, rows)


def run_embedding_shard(
    manifest: str | os.PathLike,
    tiers: str | os.PathLike,
    technical: str | os.PathLike | None,
    out_npy: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    **settings: Any,
) -> ClipEmbedder:
    """``run_embedding_job`` for a single shard."""
    return run_embedding_job(
        [ShardFiles(manifest, tiers, technical, out_npy, out_jsonl)], **settings
    )
