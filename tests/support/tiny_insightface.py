"""A tiny InsightFace model pack with deterministic weights, exported from small torch nets to
ONNX, so that ``FaceAnalysis(name=<folder>)`` loads and runs it offline like ``buffalo_l``.

- ``det_tiny.onnx``, an SCRFD-shaped detector (dynamic input size, 9 outputs: strides
  8/16/32 x score/box/keypoints, 2 anchors per place). Only stride 32 ever fires: its score
  is ``sigmoid(SCORE_GAIN * mean of the 32x32 cell's normalised pixels)``, so a bright
  square that fills a cell of the detector input is a face (white ~0.98, grey 150 ~0.67),
  with a box of ``2 * BOX_HALF`` pixels around the cell's anchor point (SCRFD puts it at
  the cell's top-left corner) and fixed landmarks around it.
- ``rec_tiny.onnx``, an ArcFace-shaped recogniser (N x 3 x 112 x 112 -> N x 512).
- ``genderage_tiny.onnx``, a genderage head (N x 3 x 96 x 96 -> N x 3).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

STRIDES = (8, 16, 32)
ANCHORS = 2
SCORE_GAIN = 4.0
BOX_HALF = 32.0  # detector-input pixels from the anchor point to each side of the box
# Landmarks (x, y) relative to the anchor point, in detector-input pixels: eyes, nose, mouth.
LANDMARKS = ((-12.0, -8.0), (12.0, -8.0), (0.0, 4.0), (-10.0, 16.0), (10.0, 16.0))
EMBEDDING_DIM = 512


class TinyScrfd(nn.Module):
    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gray = image.mean(dim=1, keepdim=True)
        scores, boxes, points = [], [], []
        for stride in STRIDES:
            cells = nn.functional.avg_pool2d(gray, stride)
            logit = cells * SCORE_GAIN if stride == 32 else cells * 0.0 - 30.0
            score = torch.sigmoid(logit).repeat(1, ANCHORS, 1, 1)
            ones = torch.ones_like(cells)
            box = torch.cat([ones * (BOX_HALF / stride)] * 4 * ANCHORS, dim=1)
            kps = torch.cat(
                [ones * (v / stride) for _ in range(ANCHORS) for xy in LANDMARKS for v in xy],
                dim=1,
            )
            scores.append(_flatten(score, 1))
            boxes.append(_flatten(box, 4))
            points.append(_flatten(kps, 10))
        return (*scores, *boxes, *points)


def _flatten(maps: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """(1, anchors * k, h, w) -> (h * w * anchors, k): SCRFD's anchor order."""
    return maps.permute(0, 2, 3, 1).reshape(-1, per_anchor)


class TinyArcFace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.project = nn.Linear(3 * 8 * 8, EMBEDDING_DIM)
        with torch.no_grad():
            self.project.weight.copy_(torch.randn(EMBEDDING_DIM, 192, generator=generator))
            self.project.bias.zero_()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.project(nn.functional.adaptive_avg_pool2d(faces, 8).flatten(1))


class TinyGenderAge(nn.Module):
    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        mean = faces.mean(dim=(1, 2, 3)).unsqueeze(1)
        # gender logits (female, male) favour male; age 0.3 -> 30 years
        return torch.cat([mean * 0.0, mean * 0.0 + 1.0, mean * 0.0 + 0.3], dim=1)


def _export(model: nn.Module, example: torch.Tensor, path: Path, dynamic: dict) -> None:
    n_outputs = len(model(example)) if isinstance(model(example), tuple) else 1
    outputs = [f"out{i}" for i in range(n_outputs)]
    torch.onnx.export(
        model.eval(), (example,), str(path), input_names=["input"], output_names=outputs,
        dynamic_axes={"input": dynamic, **{name: {0: "n"} for name in outputs}},
        opset_version=17, dynamo=False,
    )  # fmt: skip


def build_tiny_insightface(folder: Path) -> Path:
    """Write the tiny pack into ``folder`` (created) and return it: a ``faces.pack`` value."""
    folder.mkdir(parents=True, exist_ok=True)
    _export(TinyScrfd(), torch.zeros(1, 3, 64, 64), folder / "det_tiny.onnx", {2: "h", 3: "w"})
    _export(TinyArcFace(), torch.zeros(2, 3, 112, 112), folder / "rec_tiny.onnx", {0: "n"})
    _export(TinyGenderAge(), torch.zeros(2, 3, 96, 96), folder / "genderage_tiny.onnx", {0: "n"})
    return folder
