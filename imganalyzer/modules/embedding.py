"""CLIP image embeddings (open_clip) of a shard, from its ``clip`` tier, and text embeddings.

With ``decode_on_device`` the loader reads each tier image's JPEG bytes only and the model's
device decodes them (nvJPEG on CUDA): what is left of the loader's work per image is a file
read, so one loader thread feeds a fast GPU.

Output per shard: ``<shard>.npy``, a float16 (n, dim) matrix of L2-normalised image
embeddings in manifest row order (all zeros for images that could not be decoded), and
``<shard>.jsonl`` rows (``model``, ``dims``; error rows for those images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from imganalyzer.config import Settings
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import (
    BatchSource,
    EncodedImages,
    EncodedTierBatches,
    PaddedImages,
    RowBatch,
    TierBatches,
)
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS
from imganalyzer.runtime.weights import open_clip_arguments, open_clip_id


@dataclass(frozen=True)
class EmbeddingSettings(Settings):
    """The ``embedding`` section: an open_clip ``model`` and its ``pretrained`` weights
    (None: random weights); ``decode_on_device``: the device decodes the tier's JPEG bytes."""

    section = "embedding"
    model: str
    pretrained: str | None
    decode_on_device: bool
    batch_size: int | str
    device: str


class ClipEmbedder(BatchedModel):
    """An open_clip model's image (and text) tower."""

    spec = MODELS["embedding"]
    # open_clip's own "bf16"/"fp16" precision keeps LayerNorm in fp32 (OpenAI's recipe).
    half_precision_safe = True

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(settings.device, settings.batch_size)
        self.model_name, self.pretrained = settings.model, settings.pretrained
        self.decode_on_device = settings.decode_on_device
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

    def source(self, shard: JobShard, rows: np.ndarray) -> BatchSource:
        """The rows' tier images; undecoded (JPEG bytes) with ``decode_on_device`` where the
        tier is stored as JPEG."""
        if self.decode_on_device and shard.reader.encoded(self.image_tier):
            return EncodedTierBatches(shard.reader, self.image_tier, rows)
        return TierBatches(shard.reader, self.image_tier, rows)

    def preprocess(self, batch: RowBatch) -> PaddedImages | EncodedImages:
        """The padded tier images as uint8 tensors (or still JPEG bytes, from an encoded
        source): resampling runs on the model's device (``pixel_values``), where it costs
        nothing next to the model; on the loader's CPU it cost 3-4 ms per image, which held
        ViT-L/14 on a GPU to 12% of its speed."""
        if batch.data.dtype == object:
            return EncodedImages.from_rows(batch)
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

    def predict_batch(self, inputs: PaddedImages | EncodedImages) -> torch.Tensor:
        """Padded uint8 tier images on the device (or their JPEG bytes, decoded there) ->
        (n, dim) float32, L2-normalised."""
        if isinstance(inputs, EncodedImages):
            inputs = inputs.decode()
        pixels = self.pixel_values(inputs).to(self.dtype)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        """-> (n, dim) float16 on the host."""
        return outputs.to(torch.float16).cpu().numpy()

    def shard_array(self, shard: JobShard, results: Sequence[Any]) -> np.ndarray:
        """(n, dim) float16, manifest order; zeros where an image has no embedding."""
        vectors = np.zeros((len(results), self.dim), dtype=np.float16)
        for row, vector in enumerate(results):
            if vector is not None:
                vectors[row] = vector
        return vectors

    def row_fields(self, result: np.ndarray, shard: JobShard, row: int) -> dict[str, Any]:
        return {"model": self.model_id, "dims": self.dim}

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings in the image embeddings' space: (n, dim) float32, L2-normalised."""
        self.load()
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).cpu().numpy()
