"""Zero-shot object detection (GroundingDINO through transformers) of a shard, from its
``detect`` tier.

The prompts (``person``, ``traffic sign``, ...) are joined once per job into GroundingDINO's
text (``"person. traffic sign."``), tokenised and encoded by the text backbone once per job;
the images of a batch run through the model together with that text (OPP-3), one forward
pass per input shape in the batch. Each image's true region is fed at the tier's own size
when its short edge lies in ``input_short_edge`` (GroundingDINO's training range), else
resized into it, and normalised as the model's image processor does, on the model's device
(``objects_input``); images of one shape need no padding, so no result depends on the
other images of its batch. ``compile``: the forward pass through ``torch.compile``.

A detection is kept when its score (the highest token probability, as GroundingDINO's
post-processing computes it) exceeds ``box_threshold``; its label is the prompt with the most
probable token among the prompt tokens above ``text_threshold`` (detections with none are
dropped, like a phrase that names no prompt). Boxes come out relative to the image, and are
mapped to the original image's pixels with the technical rows' ``width``/``height``.

On a GPU with bf16 the model runs in bf16 except a configurable set of submodules
(``FP32_MODULES``) that stay in fp32, with their inputs cast up and their outputs cast back
at the boundary (OPP-10); where only fp16 is available it runs in fp32.

Output per shard: ``<shard>.jsonl`` rows with ``model``, ``labels``, ``detections``,
``has_person`` and ``has_text`` (error rows for images that could not be decoded).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from imganalyzer.config import Settings
from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules.objects_input import (
    CompiledForward,
    InputSize,
    Normalisation,
    encode_text_once,
    model_pixels,
)
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import PaddedImages, RowBatch, TierBatches
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS, ModelNotFoundError
from imganalyzer.runtime.weights import downloads_allowed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectSettings(Settings):
    """The ``objects`` section: a GroundingDINO ``model`` (repo id or folder), its prompts,
    thresholds, the labels that set has_text and has_person, the detector's input size
    (``input_short_edge`` range, sides a multiple of ``input_multiple``) and ``compile``."""

    section = "objects"
    model: str
    prompts: tuple[str, ...]
    box_threshold: float
    text_threshold: float
    text_labels: tuple[str, ...]
    person_labels: tuple[str, ...]
    max_detections: int
    input_short_edge: tuple[int, int]
    input_multiple: int
    compile: bool
    batch_size: int | str
    device: str


# The blank image the prompts' text is encoded with once per job (any size does: BERT reads
# only the tokens; large enough for every feature level of the backbone).
TEXT_PROBE_SIDE = 256
# Submodules kept in fp32 when the model runs in bf16 (class names or module paths): the
# multi-scale deformable attention adds small sampling offsets to reference points (bf16's
# 8-bit mantissa moves a location by up to ~0.2 cell of the finest feature map), and the class
# (text-image dot product) and box heads produce the scores and boxes themselves. Measured on
# random weights (tests, bench/bench_objects.py) they narrow the drift from fp32 only a little;
# the reference points themselves are computed outside any module, in bf16 (~1.5 px at 1024).
FP32_MODULES = frozenset(
    {
        "GroundingDinoMultiscaleDeformableAttention",
        "GroundingDinoContrastiveEmbedding",
        "GroundingDinoMLPPredictionHead",
        # The two-stage proposals (a grid of cell centres, its inverse sigmoid and the 0.01 /
        # 0.99 validity test) and the valid ratios that scale every reference point: in bf16
        # a proposal near an edge flips to invalid (a box at the border); in fp32 the
        # reference points stay fp32 through the decoder's box refinement.
        "GroundingDinoModel.generate_encoder_output_proposals",
        "model.enc_output",  # called by the method above: must take its fp32 inputs
        "GroundingDinoModel.get_valid_ratio",
        "GroundingDinoEncoder.get_reference_points",
    }
)
PROMPT_SEPARATOR = "."


# --- Mixed precision -----------------------------------------------------------------------
def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with its floating tensors (also inside tuples, lists, dicts) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_cast_floats(v, dtype) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    if isinstance(value, dict):
        for key in list(value):  # in place: transformers' ModelOutput is a dict with fields
            value[key] = _cast_floats(value[key], dtype)
        return value
    return value


def _first_float_dtype(values: Iterable[Any]) -> torch.dtype | None:
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype
        if isinstance(value, (tuple, list)):
            found = _first_float_dtype(value)
            if found is not None:
                return found
    return None


def _island_matches(name: str, module: torch.nn.Module, selectors: frozenset[str]) -> bool:
    return type(module).__name__ in selectors or name in selectors


def keep_in_fp32(model: torch.nn.Module, selectors: Iterable[str]) -> list[str]:
    """Convert the submodules named by ``selectors`` (class names or module paths) to fp32
    and cast at their boundaries: floating inputs to fp32, floating outputs back to the
    model's dtype. A selector ``Class.method`` runs that method of the model's ``Class``
    modules on fp32 inputs instead (code outside any submodule). Modules inside a converted
    one need nothing more, unless the rest of the model calls them too (GroundingDINO's
    shared box head): they cast back to their caller's dtype. Returns what was converted."""
    selectors = frozenset(selectors)
    paths = list(model.named_modules(remove_duplicate=False))
    matched = {
        id(called): (path, called)
        for name, m in paths
        if _island_matches(name, m, selectors)
        for path, called in _called_modules(name, m)
    }
    within = tuple(path + "." for path, _ in matched.values())
    top = {
        key for key in matched if any(id(m) == key and not n.startswith(within) for n, m in paths)
    }
    inside = {id(sub) for key in top for sub in matched[key][1].modules() if id(sub) != key}
    shared = {id(m): m for n, m in paths if id(m) in inside and not n.startswith(within)}
    for key in top:
        _make_island(matched[key][1], back_to_caller=False)
    for module in shared.values():
        _make_island(module, back_to_caller=True)
    methods = _keep_methods_in_fp32(model, {s for s in selectors if "." in s})
    return sorted(matched[key][0] for key in top) + methods


@dataclass
class _Island:
    """An fp32 module's boundary: the dtype around it, and the one its outputs go back to."""

    outer_dtype: torch.dtype
    back_to_caller: bool  # outputs in the caller's float dtype (else in ``outer_dtype``)
    back_to: torch.dtype  # of the call in progress


def _make_island(module: torch.nn.Module, back_to_caller: bool) -> None:
    outer_dtype = next(module.parameters(), torch.empty(())).dtype
    island = _Island(outer_dtype, back_to_caller, back_to=outer_dtype)
    module.float()
    module.register_forward_pre_hook(functools.partial(_to_fp32_inputs, island), with_kwargs=True)
    module.register_forward_hook(functools.partial(_outputs_back, island), with_kwargs=True)


def _keep_methods_in_fp32(model: torch.nn.Module, selectors: set[str]) -> list[str]:
    wrapped = []
    for name, module in model.named_modules():
        for selector in selectors:
            owner, method = selector.rsplit(".", 1)
            if type(module).__name__ == owner and hasattr(module, method):
                setattr(module, method, _in_fp32(getattr(module, method)))
                wrapped.append(f"{name}.{method}")
    return wrapped


def _in_fp32(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` on fp32 inputs; a ``dtype`` argument (the dtype to compute in) is fp32."""

    @functools.wraps(method)
    def fp32_method(*args: Any, **kwargs: Any) -> Any:
        if "dtype" in kwargs:
            kwargs["dtype"] = torch.float32
        return method(*_cast_floats(args, torch.float32), **_cast_floats(kwargs, torch.float32))

    return fp32_method


def _called_modules(name: str, module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """A module, or for a container (never called itself) the modules it holds."""
    if isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict)):
        return [
            item
            for child, sub in module.named_children()
            for item in _called_modules(f"{name}.{child}", sub)
        ]
    return [(name, module)]


def _to_fp32_inputs(
    island: _Island, module: torch.nn.Module, args: tuple, kwargs: dict
) -> tuple[tuple, dict]:
    caller = _first_float_dtype([*args, *kwargs.values()])
    island.back_to = caller if island.back_to_caller and caller else island.outer_dtype
    return _cast_floats(args, torch.float32), _cast_floats(kwargs, torch.float32)


def _outputs_back(
    island: _Island, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any
) -> Any:
    dtype = island.back_to
    return output if dtype == torch.float32 else _cast_floats(output, dtype)


# --- Prompts -------------------------------------------------------------------------------
def normalise_label(prompt: str) -> str:
    """A prompt as GroundingDINO reads it and as labels are reported: lower case, single
    spaces."""
    return " ".join(str(prompt).lower().split())


def prompt_text(labels: Sequence[str]) -> str:
    """``["person", "traffic sign"]`` -> ``"person. traffic sign."``."""
    return "".join(f"{label}{PROMPT_SEPARATOR} " for label in labels).rstrip()


# --- Detections ----------------------------------------------------------------------------
@dataclass
class Detections:
    """One image's detections, best first: prompt indices, scores, boxes (x0, y0, x1, y1)
    relative to the image (0..1)."""

    prompts: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray


def to_original_pixels(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Relative (x0, y0, x1, y1) boxes -> pixels of an image ``width`` x ``height``, clipped."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(boxes.astype(np.float64), 0.0, 1.0) * scale


def detection_fields(
    detections: Detections,
    labels: Sequence[str],
    width: float,
    height: float,
    text_labels: frozenset[str],
    person_labels: frozenset[str],
) -> dict[str, Any]:
    """The result row fields of one image, boxes in pixels of a ``width`` x ``height`` image."""
    boxes = to_original_pixels(detections.boxes, width, height)
    found = [labels[i] for i in detections.prompts]
    items = [
        {"label": label, "score": round(float(score), 4), "box": [round(float(v), 1) for v in box]}
        for label, score, box in zip(found, detections.scores, boxes, strict=True)
    ]
    unique = sorted(set(found))
    return {
        "labels": unique,
        "detections": items,
        "has_person": any(label in person_labels for label in unique),
        "has_text": any(label in text_labels for label in unique),
    }


def select_detections(
    probs: torch.Tensor,
    boxes: torch.Tensor,
    token_prompt: torch.Tensor,
    n_prompts: int,
    box_threshold: float,
    text_threshold: float,
    max_detections: int,
) -> Detections:
    """One image's detections from its token probabilities (Q, T) and boxes (Q, 4) cx, cy,
    w, h relative; ``token_prompt`` (T,) is each token's prompt index (-1: special tokens
    and separators)."""
    scores = probs.max(dim=-1).values
    keep = torch.nonzero(scores > box_threshold).flatten()
    in_prompt = token_prompt >= 0
    prompt_probs = probs[keep][:, in_prompt]  # (k, prompt tokens)
    hits = torch.where(prompt_probs > text_threshold, prompt_probs, torch.zeros(()))
    per_prompt = torch.zeros(len(keep), n_prompts, dtype=probs.dtype)
    per_prompt.scatter_reduce_(
        1, token_prompt[in_prompt].expand(len(keep), -1), hits, reduce="amax"
    )
    best, prompt = per_prompt.max(dim=-1)
    named = best > 0
    keep, prompt = keep[named], prompt[named]
    order = torch.argsort(scores[keep], descending=True, stable=True)[:max_detections]
    keep, prompt = keep[order], prompt[order]
    centre, size = boxes[keep, :2], boxes[keep, 2:]
    corners = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    return Detections(prompt.numpy(), scores[keep].numpy(), corners.numpy())


def _where_it_looked(model: str) -> str:
    if os.path.isabs(model) or model.startswith((".", "~")) or os.path.isdir(model):
        return f"the folder {model}"
    from huggingface_hub import constants

    return f"the Hugging Face cache {constants.HF_HUB_CACHE} (repo {model})"


# --- The model -----------------------------------------------------------------------------
class ObjectDetector(BatchedModel):
    """A GroundingDINO checkpoint (Hugging Face repo id or local folder) and its prompts."""

    spec = MODELS["objects"]
    half_precision_safe = True  # with FP32_MODULES kept in fp32

    def __init__(
        self, settings: ObjectSettings, fp32_modules: Iterable[str] = FP32_MODULES
    ) -> None:
        super().__init__(settings.device, settings.batch_size)
        self.model_name = settings.model
        self.input_range, self.input_multiple = settings.input_short_edge, settings.input_multiple
        self.compile = settings.compile
        self.compiled: CompiledForward | None = None
        # the prompts and bounds were checked by the config's schema (validate_config)
        self.labels = tuple(normalise_label(prompt) for prompt in settings.prompts)
        self.box_threshold, self.text_threshold = settings.box_threshold, settings.text_threshold
        self.max_detections = settings.max_detections
        self.fp32_modules = frozenset(fp32_modules)
        self.fp32_converted: list[str] = []
        self.text_labels = frozenset(map(normalise_label, settings.text_labels))
        self.person_labels = frozenset(map(normalise_label, settings.person_labels))
        for key, names in (
            ("text_labels", self.text_labels),
            ("person_labels", self.person_labels),
        ):
            missing = sorted(names - set(self.labels))
            if missing:
                log.warning("objects.%s %s are not among the prompts: never detected", key, missing)
        self._tier_sizes: dict[str, np.ndarray] = {}  # shard -> (rows, 2) tier sizes read
        self._warned: set[str] = set()

    @property
    def model_id(self) -> str:
        return self.model_name

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        if dtype == torch.float16:
            # GPUs without bf16, MPS: fp16's range overflows in GroundingDINO's text layers
            # (OPP-10); its islands are chosen for bf16. The base reads self.dtype per batch.
            dtype = self.dtype = torch.float32
        local_only = not downloads_allowed()
        try:
            self.processor = AutoProcessor.from_pretrained(
                self.model_name, local_files_only=local_only
            )
            model = AutoModelForZeroShotObjectDetection.from_pretrained(
                self.model_name, local_files_only=local_only
            )
        except OSError as error:  # transformers' answer to a missing folder, repo or file
            looked = _where_it_looked(self.model_name)
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            if local_only:
                reason = f"HF_HUB_OFFLINE is set; {reason}"
            raise ModelNotFoundError(self.model_name, looked, reason) from error
        model = model.to(device=device, dtype=dtype).eval()
        if dtype != torch.float32:
            self.fp32_converted = keep_in_fp32(model, self.fp32_modules)
        self.model = model
        image_processor = self.processor.image_processor
        self.input_size = InputSize(
            self.input_range, image_processor.size["longest_edge"], self.input_multiple
        )
        self.normalisation = Normalisation.of(image_processor)
        self._set_text(device)
        encode_text_once(model, self.text, probe_side=TEXT_PROBE_SIDE)
        self.compiled = CompiledForward(model) if self.compile else None

    def _set_text(self, device: torch.device) -> None:
        """Tokenise the prompts once and map every token to the prompt it belongs to."""
        tokenizer = self.processor.tokenizer
        encoded = tokenizer(prompt_text(self.labels), return_tensors="pt")
        ids = encoded["input_ids"][0]
        token_prompt = torch.full(ids.shape, -1, dtype=torch.long)
        position = 1  # after [CLS]
        for index, label in enumerate(self.labels):
            length = len(tokenizer(label, add_special_tokens=False)["input_ids"])
            token_prompt[position : position + length] = index
            position += length + 1  # the separator
        if position != len(ids) - 1:  # all prompts, then [SEP]
            raise RuntimeError(f"objects: cannot align the prompts with their tokens: {ids}")
        max_length = getattr(self.model.config, "max_text_len", 256)
        if len(ids) > max_length:
            raise ValueError(
                f"objects.prompts: {len(ids)} tokens, but {self.model_name} reads at most "
                f"{max_length}: use fewer prompts"
            )
        self.text = {key: value.to(device) for key, value in encoded.items()}
        self.token_prompt = token_prompt

    def preprocess(self, batch: RowBatch) -> PaddedImages:
        """The padded tier images as uint8 tensors: resizing and normalisation run on the
        model's device (``predict_batch``), never on the loader's CPU."""
        return PaddedImages.from_rows(batch)

    def predict_batch(self, inputs: PaddedImages) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded uint8 tier images on the device -> token probabilities (n, queries, tokens)
        and boxes (n, queries, 4: cx, cy, w, h relative to the image), float32.

        One forward pass per input shape (``input_size``) in the batch, each without padding:
        padding changes what the backbone sees near the image's edges, so a result would
        depend on which images share its batch. Photos of one library come in a few shapes
        (4:3, 3:2, 16:9, each way up), so the batches stay large."""
        groups: dict[tuple[int, int], list[int]] = {}
        for row, (height, width) in enumerate(inputs.sizes.tolist()):
            groups.setdefault(self.input_size.of(height, width), []).append(row)
        probs: torch.Tensor | None = None
        boxes: torch.Tensor | None = None
        for size, rows in sorted(groups.items()):  # shape order, as torch.unique's
            pixels = model_pixels(inputs, rows, size, self.normalisation).to(self.dtype)
            group_probs, group_boxes = self._forward(pixels)
            if probs is None or boxes is None:
                probs = group_probs.new_empty((len(inputs), *group_probs.shape[1:]))
                boxes = group_boxes.new_empty((len(inputs), *group_boxes.shape[1:]))
            index = torch.tensor(rows, device=group_probs.device)
            probs[index], boxes[index] = group_probs, group_boxes
        assert probs is not None and boxes is not None  # a batch has at least one image
        return probs, boxes

    def _forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, H, W) normalised pixels in the model's dtype -> probabilities, boxes."""
        n = len(pixel_values)
        text = {key: value.expand(n, -1) for key, value in self.text.items()}
        forward = self.compiled or self.model
        outputs = forward(pixel_values=pixel_values, **text)
        n_tokens = text["input_ids"].shape[1]
        probs = outputs.logits[..., :n_tokens].float().sigmoid()
        return probs, outputs.pred_boxes.float()

    def summary_fields(self) -> dict[str, Any]:
        if self.compiled is None:
            return {}
        shapes = sorted({shape[:2] for shape in self.compiled.shapes})
        return {"compiled_shapes": shapes, "compile_s": round(self.compiled.compile_s, 1)}

    def postprocess(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> list[Detections]:
        probs, boxes = (tensor.cpu() for tensor in outputs)
        return [
            select_detections(
                image_probs,
                image_boxes,
                self.token_prompt,
                len(self.labels),
                self.box_threshold,
                self.text_threshold,
                self.max_detections,
            )  # fmt: skip
            for image_probs, image_boxes in zip(probs, boxes, strict=True)
        ]

    def source(self, shard: JobShard, rows: np.ndarray) -> TierBatches:
        source = _SizeRecordingBatches(shard.reader, self.image_tier, rows)
        self._tier_sizes[shard.id] = source.sizes
        return source

    def row_fields(self, result: Detections, shard: JobShard, row: int) -> dict[str, Any]:
        """Labels, detections (boxes in original pixels), has_person, has_text."""
        technical = shard.rows["technical"][row] if "technical" in shard.rows else {}
        width, height = technical.get("width"), technical.get("height")
        if not width or not height:
            if shard.id not in self._warned:
                self._warned.add(shard.id)
                log.warning(
                    "objects: images of shard %s have no width/height in their technical rows: "
                    "their boxes are in %s tier pixels", shard.id, self.tier,
                )  # fmt: skip
            height, width = self._tier_sizes[shard.id][row]
        fields = detection_fields(
            result, self.labels, width, height, self.text_labels, self.person_labels
        )
        return {"model": self.model_id, **fields}


# --- Reading the tier ---------------------------------------------------------------------
class _SizeRecordingBatches(TierBatches):
    """Tier batches that remember each manifest row's tier size (boxes fall back to it)."""

    def __init__(self, reader: TierReader, tier: str, rows: np.ndarray) -> None:
        super().__init__(reader, tier, rows)
        self.sizes = np.zeros((reader.n_images, 2), dtype=np.int64)

    def read(self, start: int, stop: int) -> RowBatch:
        batch = super().read(start, stop)
        self.sizes[self.manifest_rows(batch.indices)] = batch.image_sizes
        return batch
