"""What GroundingDINO is fed, on the model's device: each detect-tier image's size for the
detector (``InputSize``), its pixels resized and normalised there (``model_pixels``), the
prompts' text encoded once per job (``encode_text_once``), and an optional compiled forward
pass (``CompiledForward``).

The input size. GroundingDINO was trained with short edges from 480 to 800 (multi-scale, long
edge at most 1333). The model's own processor resizes every image to a short edge of 800,
so a 3:2 photo's 1024 px detect tier (1024 x 683) ran as 1200 x 800: 1.37x the tier's
pixels, none of them new information. ``InputSize`` feeds a tier image at its own size
when its short edge lies in the configured range (``objects.input_short_edge``, default
480-800: the training range), enlarges smaller ones to the range's start and reduces
larger ones to its end (long edge at most the processor's ``longest_edge``), and rounds
each side to a multiple of ``objects.input_multiple`` pixels (32, the backbone's stride:
images whose tiers differ by a pixel share a shape, and a compiled forward pass its graph).
Boxes come out relative to the image, so nothing downstream changes.

The pixels. As the processor does (a bilinear, antialiased resize of the uint8 image, then
scale and normalise with the ImageNet mean and std in float32), but on the model's device:
the loader thread only converts the tier images (``PaddedImages``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from imganalyzer.runtime.batches import PaddedImages

log = logging.getLogger(__name__)

# Input shapes a compiled forward pass is compiled for in one job; images of other shapes
# run eagerly (each shape costs a compilation: tens of seconds on a GPU the first time).
MAX_COMPILED_SHAPES = 8
# torch.compile's backend; the tests use "eager" (the same graph capture, no code
# generation: inductor's compiler takes minutes per shape on a 2-core CPU).
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class InputSize:
    """The detector's input size of an image: ``short_edge`` (low, high) range kept as is,
    ``longest`` the long edge's bound, both sides rounded to a multiple of ``multiple``."""

    short_edge: tuple[int, int]
    longest: int
    multiple: int = 1

    def of(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) for an image of ``height`` x ``width`` pixels."""
        from transformers.image_transforms import get_size_with_aspect_ratio

        low, high = self.short_edge
        short = min(height, width)
        target = min(max(short, low), high)
        if target != short or max(height, width) > self.longest:
            height, width = get_size_with_aspect_ratio((height, width), target, self.longest)
        return self._rounded(height), self._rounded(width)

    def _rounded(self, side: int) -> int:
        return max(self.multiple, round(side / self.multiple) * self.multiple)


@dataclass(frozen=True)
class Normalisation:
    """The processor's resampling filter and its fused rescale + normalisation (float32)."""

    interpolation: InterpolationMode
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, processor: Any) -> Normalisation:
        """From a GroundingDINO image processor (``rescale_factor`` folded into mean and std
        exactly as its ``rescale_and_normalize`` does)."""
        from transformers.image_utils import PILImageResampling

        interpolation = {
            PILImageResampling.BILINEAR: InterpolationMode.BILINEAR,
            PILImageResampling.BICUBIC: InterpolationMode.BICUBIC,
        }[PILImageResampling(processor.resample)]
        scale = 1.0 / processor.rescale_factor
        mean = (torch.tensor(processor.image_mean) * scale).tolist()
        std = (torch.tensor(processor.image_std) * scale).tolist()
        return cls(interpolation, tuple(mean), tuple(std))


def model_pixels(
    images: PaddedImages, rows: Sequence[int], size: tuple[int, int], norm: Normalisation
) -> torch.Tensor:
    """The true regions of ``rows`` resized to ``size`` (height, width) and normalised:
    (len(rows), 3, height, width) float32 on the images' device. Images of one true size
    are resized together."""
    sizes = images.sizes.tolist()
    by_size: dict[tuple[int, int], list[int]] = {}
    for position, row in enumerate(rows):
        by_size.setdefault((sizes[row][0], sizes[row][1]), []).append(position)
    out = torch.empty((len(rows), 3, *size), dtype=torch.float32, device=images.pixels.device)
    for (height, width), positions in by_size.items():
        picked = torch.tensor([rows[p] for p in positions], device=images.pixels.device)
        region = images.pixels[:, :, :height, :width].index_select(0, picked)
        if (height, width) != size:
            region = TF.resize(region, list(size), norm.interpolation, antialias=True)
        region = TF.normalize(region.to(torch.float32), list(norm.mean), list(norm.std))
        out[torch.tensor(positions, device=out.device)] = region
    return out


class _EncodedText(torch.nn.Module):
    """GroundingDINO's text backbone in place, answering with its output for the job's one
    prompt text (computed once) expanded to the batch: BERT reads only the token ids, so the
    output is the same for every image. It refuses another text length (another text)."""

    def __init__(self, backbone: torch.nn.Module, output: Any) -> None:
        super().__init__()
        self.backbone = backbone  # still the model's: its weights move and cast with it
        self.output_type = type(output)
        self.register_buffer("features", output.last_hidden_state.detach(), persistent=False)

    features: torch.Tensor

    def forward(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if input_ids.shape[1] != self.features.shape[1]:
            raise ValueError("objects: the text backbone was encoded for another prompt text")
        batch = self.features.expand(input_ids.shape[0], -1, -1)
        return self.output_type(last_hidden_state=batch)


def encode_text_once(model: Any, text: dict[str, torch.Tensor], probe_side: int) -> None:
    """Run ``model`` (GroundingDinoForObjectDetection) once on a blank ``probe_side`` px image
    with ``text``, keep what its text backbone answered, and put that answer in the
    backbone's place (``_EncodedText``): later forward passes skip BERT."""
    inner = model.model
    if isinstance(inner.text_backbone, _EncodedText):
        return
    seen: list[Any] = []
    hook = inner.text_backbone.register_forward_hook(lambda m, a, output: seen.append(output))
    dtype = next(inner.backbone.parameters()).dtype
    probe = torch.zeros(1, 3, probe_side, probe_side, device=text["input_ids"].device, dtype=dtype)
    try:
        with torch.inference_mode():
            model(pixel_values=probe, **text)
    finally:
        hook.remove()
    inner.text_backbone = _EncodedText(inner.text_backbone, seen[0])


@dataclass
class CompiledForward:
    """``torch.compile(model, fullgraph=True)`` for at most ``MAX_COMPILED_SHAPES`` input
    shapes (height, width) of a job; the batch dimension is dynamic (one graph for every
    batch size above 1), height and width static (the fastest kernels). Shapes beyond the
    limit run eagerly. ``compile_s``: seconds of the calls that compiled."""

    model: Any
    backend: str = ""  # "": COMPILE_BACKEND
    shapes: set[tuple[int, int, bool]] = field(default_factory=set)
    compile_s: float = 0.0
    _compiled: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        import torch._dynamo.config

        limit = 2 * MAX_COMPILED_SHAPES + 2  # one graph for batch 1 and one for more, each
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        self.backend = self.backend or COMPILE_BACKEND
        self._compiled = torch.compile(self.model, fullgraph=True, backend=self.backend)

    def __call__(self, pixel_values: torch.Tensor, **text: torch.Tensor) -> Any:
        height, width = pixel_values.shape[-2:]
        key = (int(height), int(width), len(pixel_values) == 1)
        known = key in self.shapes
        if not known and len({s[:2] for s in self.shapes} | {key[:2]}) > MAX_COMPILED_SHAPES:
            return self.model(pixel_values=pixel_values, **text)
        for tensor in (pixel_values, *text.values()):
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        torch._dynamo.mark_static(pixel_values, 2)
        torch._dynamo.mark_static(pixel_values, 3)
        assert self._compiled is not None
        if known:
            return self._compiled(pixel_values=pixel_values, **text)
        began = time.perf_counter()
        output = self._compiled(pixel_values=pixel_values, **text)
        if pixel_values.is_cuda:
            torch.cuda.synchronize()
        self.compile_s += time.perf_counter() - began
        self.shapes.add(key)
        log.info("objects: compiled the forward pass for %s (%.1f s in all)", key, self.compile_s)
        return output
