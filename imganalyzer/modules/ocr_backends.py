"""OCR's text line detection (PP-OCR's detector through RapidOCR) and its two recognition
backends, ``rapidocr`` and ``trocr`` (``make_backend``): lines with boxes in the pixels of
the image they are given. ``modules.ocr`` runs them over a job's images."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from imganalyzer.runtime.registry import ModelNotFoundError
from imganalyzer.runtime.weights import hf_load_path

log = logging.getLogger(__name__)

# Text lines recognised per TrOCR forward pass (a line crop is 384 x 384 px for the model).
TROCR_BATCH_SIZE = 16
# A printed line rarely needs more tokens; the cap bounds the cost of a runaway decode.
TROCR_MAX_NEW_TOKENS = 64
# Narrower regions (given ones; the detector drops them itself) cannot be cut out.
MIN_REGION_SIDE = 2


@dataclass(frozen=True)
class TextRegion:
    """A text line found by the detector: a quadrilateral (clockwise from top-left, in the
    pixels of the image read) and the detector's confidence."""

    points: np.ndarray  # (4, 2) float32
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        x0, y0 = self.points.min(axis=0)
        x1, y1 = self.points.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class OcrLine:
    """One recognised line; ``box`` is (x0, y0, x1, y1) in the pixels of the image read."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]


class OcrBackend(Protocol):
    """Reads the text lines of one RGB image (``regions``: given lines, no detection)."""

    name: str

    def read(
        self, rgb: np.ndarray, regions: Sequence[TextRegion] | None = None
    ) -> list[OcrLine]: ...


# --- Detection --------------------------------------------------------------------------------
def rapidocr_engine(threads: int, device: str, max_side: int) -> Any:
    """A quiet RapidOCR engine whose call runs detection only (the job crops and recognises).

    Its recogniser and classifier load on first use; ``threads``: ONNX Runtime intra-op
    threads per session; ``max_side``: the detector's input bound.
    """
    from rapidocr import RapidOCR

    params = {
        "Global.log_level": "error",  # not a warning per image without detected text
        "Global.use_cls": False,
        "Global.use_rec": False,
        "Global.max_side_len": max_side,
        "EngineConfig.onnxruntime.intra_op_num_threads": max(1, threads),
        "EngineConfig.onnxruntime.use_cuda": _onnx_cuda(device),
    }
    return RapidOCR(params=params)


def _onnx_cuda(device: str) -> bool:
    if device == "cuda":
        return True
    if device != "auto":
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class LineDetector:
    """PP-OCR's text line detector (DBNet) through a RapidOCR engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def warm_up(self) -> None:
        """Load the detector now (a small image: the detector scales its short side to 736)."""
        self.detect(np.full((64, 64, 3), 255, dtype=np.uint8))

    def detect(self, rgb: np.ndarray) -> list[TextRegion]:
        found = self.engine(_bgr(rgb))  # RapidOCR takes an array as BGR
        boxes, scores = getattr(found, "boxes", None), getattr(found, "scores", None)
        if boxes is None or scores is None:
            return []
        return [
            TextRegion(np.asarray(points, dtype=np.float32), float(score))
            for points, score in zip(boxes, scores, strict=True)
        ]


def strongest_regions(regions: Sequence[TextRegion], max_regions: int) -> list[TextRegion]:
    """At most ``max_regions`` regions, the largest and surest first (area x score)."""
    return sorted(regions, key=lambda region: region.area * region.score, reverse=True)[
        :max_regions
    ]


def crop_region(image: np.ndarray, region: TextRegion) -> np.ndarray:
    """The region's quadrilateral, warped upright (tall crops are turned to lie flat)."""
    from rapidocr.utils.process_img import get_rotate_crop_image

    return np.ascontiguousarray(get_rotate_crop_image(image, region.points.copy()))


def _croppable(region: TextRegion) -> bool:
    x0, y0, x1, y1 = region.box
    return min(x1 - x0, y1 - y0) >= MIN_REGION_SIDE


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


class DetectThenRecognise(ABC):
    """Detect lines (unless given), keep the strongest ``max_regions``, recognise the crops."""

    name: str

    def __init__(self, detector: LineDetector, max_regions: int) -> None:
        self.detector, self.max_regions = detector, max_regions

    def read(self, rgb: np.ndarray, regions: Sequence[TextRegion] | None = None) -> list[OcrLine]:
        if regions is None:
            regions = self.detector.detect(rgb)
        regions = strongest_regions([r for r in regions if _croppable(r)], self.max_regions)
        if not regions:
            return []
        crops = [crop_region(rgb, region) for region in regions]
        recognised = self.recognise(crops)
        return [
            OcrLine(text.strip(), float(confidence), region.box)
            for region, (text, confidence) in zip(regions, recognised, strict=True)
            if text.strip()
        ]

    @abstractmethod
    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence in [0, 1]) of each RGB line crop, in order."""


# --- Backends ---------------------------------------------------------------------------------
class RapidOcrBackend(DetectThenRecognise):
    """PP-OCR detection, angle classification and recognition (RapidOCR, bundled ONNX models)."""

    name = "rapidocr"

    def __init__(
        self,
        max_regions: int,
        threads: int,
        device: str,
        max_side: int,
        use_angle_classifier: bool = True,
    ) -> None:
        self.engine = rapidocr_engine(threads, device, max_side)
        super().__init__(LineDetector(self.engine), max_regions)
        self.use_angle_classifier = use_angle_classifier
        self._warm_up()

    def _warm_up(self) -> None:
        """Load every model now: a broken install fails the job before any image is read."""
        self.detector.warm_up()
        self.recognise([np.full((48, 160, 3), 255, dtype=np.uint8)])

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        images = [_bgr(crop) for crop in crops]
        readings = self._recognise_bgr(images)
        if self.use_angle_classifier:
            # The classifier calls some upright lines upside down (seen on clean print with
            # scores up to 0.97): a turned line replaces the upright reading only when it
            # reads with more confidence.
            upside_down = self._upside_down(images)
            turned = self._recognise_bgr(
                [np.ascontiguousarray(images[i][::-1, ::-1]) for i in upside_down]
            )
            for index, reading in zip(upside_down, turned, strict=True):
                if reading[1] > readings[index][1]:
                    readings[index] = reading
        return readings

    def _recognise_bgr(self, images: list[np.ndarray]) -> list[tuple[str, float]]:
        if not images:
            return []
        result = self.engine.recognize_txt(images)
        return list(zip(result.txts, map(float, result.scores), strict=True))

    def _upside_down(self, images: list[np.ndarray]) -> list[int]:
        """Lines the angle classifier is sure are upside down."""
        _, classified = self.engine.cls_and_rotate(images)
        threshold = self.engine.cfg.Cls.cls_thresh
        return [
            index
            for index, (label, score) in enumerate(classified.cls_res)
            if "180" in label and score > threshold
        ]


class TrOcrBackend(DetectThenRecognise):
    """TrOCR (a ViT encoder and a text decoder) on the lines PP-OCR's detector finds."""

    def __init__(
        self,
        model: str,
        max_regions: int,
        threads: int,
        device: str,
        max_side: int,
        batch_size: int = TROCR_BATCH_SIZE,
        max_new_tokens: int = TROCR_MAX_NEW_TOKENS,
    ) -> None:
        import torch

        from imganalyzer.runtime.batched import choose_device, choose_dtype

        self.model_name = model
        self.name = f"trocr:{model}"
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, half_precision_safe=True)
        self.processor, self.model = load_trocr(model)
        self.model.to(self.device, self.dtype).eval()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self._torch = torch
        super().__init__(LineDetector(rapidocr_engine(threads, device, max_side)), max_regions)
        self.detector.warm_up()

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = []
        for start in range(0, len(crops), self.batch_size):
            results += self._recognise_batch(crops[start : start + self.batch_size])
        return results

    def _recognise_batch(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        torch = self._torch
        pixels = self.processor(images=crops, return_tensors="pt").pixel_values
        with torch.inference_mode():
            out = self.model.generate(
                pixels.to(self.device, self.dtype),
                max_new_tokens=self.max_new_tokens,
                num_beams=1,  # beam search multiplies the cost (OPP-3.9) for little gain
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
            log_probs = self.model.compute_transition_scores(
                out.sequences, out.scores, normalize_logits=True
            )
        texts = self.processor.batch_decode(out.sequences, skip_special_tokens=True)
        generated = out.sequences[:, -log_probs.shape[1] :]
        confidences = _sequence_confidences(
            log_probs.float().cpu(), generated.cpu(), self.model.generation_config.eos_token_id
        )
        return list(zip(texts, confidences, strict=True))


def _sequence_confidences(log_probs: Any, tokens: Any, eos_token_id: Any) -> list[float]:
    """exp(mean log-probability) of each sequence's tokens up to and including its first end
    token (what follows is padding)."""
    eos_ids = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id]
    is_eos = np.isin(tokens.numpy(), [i for i in eos_ids if i is not None])
    ended_before = np.greater(np.cumsum(is_eos, axis=1) - is_eos, 0)
    values = np.where(ended_before, 0.0, log_probs.numpy())
    counts = np.maximum((~ended_before).sum(axis=1), 1)
    return [
        float(np.exp(total / count))
        for total, count in zip(values.sum(axis=1), counts, strict=True)
    ]


def load_trocr(model: str) -> tuple[Any, Any]:
    """``(TrOCRProcessor, VisionEncoderDecoderModel)`` from a local folder or a Hugging Face id
    (the cache first; downloads only when allowed, see ``weights.downloads_allowed``)."""
    from transformers import TrOCRProcessor, VisionEncoderDecoderModel

    source = hf_load_path("ocr", model)  # fetches it if allowed
    try:
        processor = TrOCRProcessor.from_pretrained(source)
        network = VisionEncoderDecoderModel.from_pretrained(source)
    except OSError as error:  # transformers reports missing files and failed downloads so
        reason = " ".join(str(error).split())[:300]
        raise ModelNotFoundError(model, source, reason) from error
    return processor, network


def make_backend(
    backend: str, trocr_model: str, max_regions: int, threads: int, device: str, max_side: int
) -> DetectThenRecognise:
    """The configured backend (rapidocr or trocr, as the schema allows), its models loaded."""
    if backend == "trocr":
        return TrOcrBackend(trocr_model, max_regions, threads, device, max_side)
    return RapidOcrBackend(max_regions, threads, device, max_side)
