"""What the kit measures the changes against, in the same run: the modules' paths as they
were before them (``TodayObjectDetector``), and what random weights cannot do by themselves
(``KitCaptioner``: generation that stops at realistic lengths)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from imganalyzer.modules.captions import Captioner
from imganalyzer.modules.objects import ObjectDetector
from imganalyzer.runtime.batches import RowBatch

# Real BLIP-2 captions are about 10 tokens long and its answers 1 to 3; random weights never
# emit the end token, so every text runs to max_new_tokens (the worst case).
REALISTIC_TOKENS = {"caption": 10, "answer": 2}


class TodayObjectDetector(ObjectDetector):
    """GroundingDINO as the module ran it before: the model's image processor in the loader
    thread (every image resized to its short edge of 800, on the CPU), padded to the batch's
    largest with a mask channel, one forward pass per resized shape, and the prompts through
    BERT on every forward pass."""

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load_model(device, dtype)
        inner = self.model.model
        inner.text_backbone = inner.text_backbone.backbone  # BERT on every forward pass
        self.compiled = None

    def preprocess(self, batch: RowBatch) -> torch.Tensor:  # type: ignore[override]
        images = [
            torch.from_numpy(np.ascontiguousarray(image[:height, :width])).permute(2, 0, 1)
            for image, (height, width) in zip(batch.data, batch.image_sizes, strict=True)
        ]
        features = self.processor.image_processor(images=images, return_tensors="pt")
        mask = features["pixel_mask"].to(torch.float32)[:, None]
        return torch.cat([features["pixel_values"].to(torch.float32), mask], dim=1)

    def predict_batch(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        mask = inputs[:, 3] > 0
        heights, widths = mask[:, :, 0].sum(dim=1), mask[:, 0, :].sum(dim=1)
        shapes = torch.stack([heights, widths], dim=1)
        probs: torch.Tensor | None = None
        boxes: torch.Tensor | None = None
        for shape in torch.unique(shapes, dim=0):
            rows = torch.nonzero((shapes == shape).all(dim=1)).flatten()
            height, width = (int(v) for v in shape)
            group_probs, group_boxes = self._forward(inputs[rows, :3, :height, :width])
            if probs is None or boxes is None:
                probs = group_probs.new_empty((len(inputs), *group_probs.shape[1:]))
                boxes = group_boxes.new_empty((len(inputs), *group_boxes.shape[1:]))
            probs[rows], boxes[rows] = group_probs, group_boxes
        assert probs is not None and boxes is not None
        return probs, boxes


class StopAt:
    """A logits processor forcing the end token once a row has ``limits[row]`` new tokens
    (the end token being the last): generation as long as a trained model's would be."""

    def __init__(self, limits: torch.Tensor, prompt_length: int, eos: int) -> None:
        self.limits, self.prompt_length, self.eos = limits, prompt_length, eos

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length  # new tokens so far
        stop = self.limits.to(scores.device) <= step + 1
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.eos] = 0
        return torch.where(stop[:, None], forced, scores)


class KitCaptioner(Captioner):
    """The captioner, with ``realistic`` lengths on request (``REALISTIC_TOKENS``)."""

    realistic = False

    def _language_generate(self, row_prompts: list[int], **kwargs: Any) -> torch.Tensor:
        if self.realistic:
            from transformers import LogitsProcessorList

            limits = torch.tensor(
                [REALISTIC_TOKENS["caption" if p == 0 else "answer"] for p in row_prompts]
            )
            eos = self.model.language_model.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, list) else eos
            stop = StopAt(limits, kwargs["input_ids"].shape[1], int(eos))
            kwargs["logits_processor"] = LogitsProcessorList([stop])
        return super()._language_generate(row_prompts, **kwargs)
