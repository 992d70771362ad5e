"""Text in images (OCR), for the images that ``objects`` flagged as holding text.

Only images whose objects row is ok with ``has_text`` are read; the others get an ok row with
``skipped: "no text"`` without their file being opened. An image is read from the original
file, after checking it is still the catalogued version, and never at more than ``max_side``
pixels on its long edge (JPEG via DCT-scaled decoding). PP-OCR's detector (RapidOCR, ONNX
weights bundled in its wheel) finds the text lines; at most ``max_regions`` of them per image
(largest and surest first) are cut out and recognised by one of two backends:

- ``rapidocr`` (default): PP-OCR's angle classifier and recogniser, ONNX Runtime on the CPU
  (or CUDA when onnxruntime-gpu is installed), one image per job thread;
- ``trocr``: a TrOCR model (transformers ``VisionEncoderDecoderModel``, e.g.
  ``microsoft/trocr-base-printed``), greedy decoding of the line crops in batches.

Output per shard: ``<shard>.jsonl`` rows with ``backend``, ``lines`` (``text``, ``confidence``,
``box`` [x0, y0, x1, y1] in original image pixels), ``text`` (the lines in reading order,
one per line) and, for images not read, ``skipped``; error rows for images that could not be
read, or whose objects row is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imganalyzer.catalog.manifests import Entry
from imganalyzer.decode.jobs import ImageSkipped, check_version
from imganalyzer.decode.readers import DecodedImage, DecodeError, decode_image
from imganalyzer.layout import Layout
from imganalyzer.results import OK
from imganalyzer.runtime.batched import BatchedModel, HostItems, RowBatch, RowFailure
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import MODELS, ModelNotFoundError, hf_load_path
from imganalyzer.runtime.shards import JobShard

log = logging.getLogger(__name__)

_SPEC = MODELS["ocr"]
BACKENDS = ("rapidocr", "trocr")
SKIPPED_NO_TEXT = "no text"
# Text lines recognised per TrOCR forward pass (a line crop is 384 x 384 px for the model).
TROCR_BATCH_SIZE = 16
# A printed line rarely needs more tokens; the cap bounds the cost of a runaway decode.
TROCR_MAX_NEW_TOKENS = 64
# The rapidocr backend reads up to one image per job thread at once, each with one ONNX
# Runtime thread: on 2 cores two images at once read 1.3-1.4x faster than one image with both
# cores in ONNX Runtime's intra-op pool (bench_ocr.py; Python pre- and post-processing
# overlap too). Each image in flight holds its detector's activations (measured ~1.7 GB for
# a 2048 x 1365 page), hence a cap.
RAPIDOCR_MAX_IMAGES_AT_ONCE = 2
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
def rapidocr_engine(threads: int = 1, device: str = "auto", max_side: int = 2048) -> Any:
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
        max_regions: int = 64,
        threads: int = 1,
        device: str = "auto",
        max_side: int = 2048,
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
        model: str = _SPEC.model_keys["trocr_model"],
        max_regions: int = 64,
        threads: int = 1,
        device: str = "auto",
        max_side: int = 2048,
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
    ended_before = np.cumsum(is_eos, axis=1) - is_eos > 0
    values = np.where(ended_before, 0.0, log_probs.numpy())
    counts = np.maximum((~ended_before).sum(axis=1), 1)
    return [
        float(np.exp(total / count))
        for total, count in zip(values.sum(axis=1), counts, strict=True)
    ]


def load_trocr(model: str) -> tuple[Any, Any]:
    """``(TrOCRProcessor, VisionEncoderDecoderModel)`` from a local folder or a Hugging Face id
    (the cache first; downloads only when allowed, see ``models.downloads_allowed``)."""
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
    backend: str = "rapidocr",
    trocr_model: str = _SPEC.model_keys["trocr_model"],
    max_regions: int = 64,
    threads: int = 1,
    device: str = "auto",
    max_side: int = 2048,
) -> DetectThenRecognise:
    """The configured backend (one of ``BACKENDS``, as the schema allows), its models loaded."""
    if backend == "trocr":
        return TrOcrBackend(trocr_model, max_regions, threads, device, max_side)
    return RapidOcrBackend(max_regions, threads, device, max_side)


# --- Rows -------------------------------------------------------------------------------------
def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Top to bottom, then left to right: a line whose vertical centre lies within half a
    line height of a row's first line belongs to that row."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=_centre_y):
        if rows and _same_row(rows[-1][0], line):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: line.box[0])]


def _centre_y(line: OcrLine) -> float:
    return (line.box[1] + line.box[3]) / 2


def _same_row(first: OcrLine, line: OcrLine) -> bool:
    height = min(first.box[3] - first.box[1], line.box[3] - line.box[1])
    return abs(_centre_y(line) - _centre_y(first)) <= height / 2


def to_original(
    line: OcrLine, read_size: tuple[int, int], original_size: tuple[int, int]
) -> OcrLine:
    """``line`` with its box in original pixels; sizes are (width, height)."""
    scale_x, scale_y = (
        original / read for original, read in zip(original_size, read_size, strict=True)
    )
    x0, y0, x1, y1 = line.box
    width, height = original_size
    box = (
        round(min(max(x0 * scale_x, 0.0), width), 1),
        round(min(max(y0 * scale_y, 0.0), height), 1),
        round(min(max(x1 * scale_x, 0.0), width), 1),
        round(min(max(y1 * scale_y, 0.0), height), 1),
    )
    return OcrLine(line.text, line.confidence, box)


def text_fields(backend: str, lines: Sequence[OcrLine]) -> dict[str, Any]:
    """The fields of an ok row: lines in reading order and the text they make."""
    ordered = reading_order(lines)
    return {
        "backend": backend,
        "lines": [
            {"text": line.text, "confidence": round(line.confidence, 4), "box": list(line.box)}
            for line in ordered
        ],
        "text": "\n".join(line.text for line in ordered),
    }


def skipped_fields(backend: str) -> dict[str, Any]:
    return {"backend": backend, "lines": [], "text": "", "skipped": SKIPPED_NO_TEXT}


# --- The job ---------------------------------------------------------------------------------
@dataclass
class OcrCounts:
    """What one OCR job did, by row."""

    read: int = 0  # images opened and read
    skipped: int = 0  # objects saw no text: never opened
    errors: int = 0
    lines: int = 0


class _Originals:
    """A shard's rows to read, as a batch source: each original decoded (in the loader
    thread) after checking that it is still the catalogued version, at most ``max_side``
    pixels on its long edge; a failure is that image's ``RowFailure``."""

    def __init__(
        self, library: Path, entries: list[Entry], rows: np.ndarray, bounds: tuple
    ) -> None:
        self.library, self.entries, self.rows, self.bounds = library, entries, rows, bounds
        self.n_rows = len(rows)

    def read(self, start: int, stop: int) -> RowBatch:
        items = np.empty(stop - start, dtype=object)
        for k, row in enumerate(self.rows[start:stop].tolist()):
            items[k] = (self.entries[row], _decode(self.entries[row], self.library, *self.bounds))
        return RowBatch(np.arange(start, stop), items)


class OcrReader(BatchedModel):
    """An OCR backend over the originals of the images ``objects`` flagged ``has_text``.

    Its model runs outside torch's batching: ``predict_batch`` hands each image of a batch
    to a pool of ``images_at_once`` threads and returns at once; ``postprocess`` (the
    writer thread) waits for the results, so the pool stays busy across batches."""

    spec = _SPEC
    on_torch = False
    inputs = ("objects",)

    def __init__(
        self,
        library: str | os.PathLike,
        backend: str = _SPEC.model_keys["backend"],
        trocr_model: str = _SPEC.model_keys["trocr_model"],
        max_side: int = 2048,
        max_regions: int = 64,
        min_confidence: float = 0.5,
        max_pixels: int = 200_000_000,
        device: str = "auto",
    ) -> None:
        super().__init__(device, batch_size="auto")
        self.library, self.backend, self.trocr_model = Path(library), backend, trocr_model
        self.max_side, self.max_regions, self.max_pixels = max_side, max_regions, max_pixels
        self.min_confidence = min_confidence
        self.name = backend if backend == "rapidocr" else f"trocr:{trocr_model}"
        self.counts = OcrCounts()
        self.use_threads(2)

    @property
    def model_id(self) -> str:
        return self.name

    def use_threads(self, threads: int) -> int:
        """rapidocr reads up to ``threads`` images at once (at most RAPIDOCR_MAX_IMAGES_AT_ONCE)
        with one ONNX Runtime thread each; TrOCR one image with ``threads`` torch threads. A
        loader thread decodes the next images."""
        self.images_at_once = _images_at_once(self.backend, threads)
        self.model_threads = max(1, threads // self.images_at_once)
        # Two batches per pool: the next batch's images queue while the last ones finish.
        self.default_batch_size = 2 * self.images_at_once
        return 1

    def load_model(self, device: Any, dtype: Any) -> None:
        if self.backend == "trocr":
            import torch

            torch.set_num_threads(self.model_threads)
        self.reader = make_backend(
            self.backend, self.trocr_model, self.max_regions, self.model_threads,
            self.requested_device, self.max_side,
        )  # fmt: skip
        self.pool = ThreadPoolExecutor(self.images_at_once, thread_name_prefix="ocr")

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        """Images whose objects row failed, or holds no text, are never opened."""
        objects_row = shard.rows["objects"][row]
        if objects_row.get("status") != OK:
            self.counts.errors += 1
            return RowFailure(f"objects: {objects_row.get('error', 'failed')}")
        if not objects_row.get("has_text", False):
            self.counts.skipped += 1
            return skipped_fields(self.name)
        return None

    def source(self, shard: JobShard, rows: np.ndarray) -> _Originals:
        return _Originals(self.library, shard.entries, rows, (self.max_side, self.max_pixels))

    def preprocess(self, batch: RowBatch) -> HostItems:
        return HostItems(batch.data)

    def predict_batch(self, inputs: HostItems) -> list[Future]:
        return [
            self.pool.submit(_recognise, entry, decoded, self.reader, self.min_confidence)
            for entry, decoded in inputs
        ]

    def postprocess(self, outputs: list[Future]) -> list[dict[str, Any] | RowFailure]:
        results = [future.result() for future in outputs]
        for result in results:
            if isinstance(result, RowFailure):
                self.counts.errors += 1
            else:
                self.counts.read += 1
                self.counts.lines += len(result["lines"])
        return results

    def row_fields(self, result: dict[str, Any], shard: JobShard, row: int) -> dict[str, Any]:
        return result

    def summary_fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self.counts)


def _recognise(
    entry: Entry, decoded: DecodedImage | str, reader: OcrBackend, min_confidence: float
) -> dict[str, Any] | RowFailure:
    """The fields of one image's ok row, or why it failed (one image never fails the shard)."""
    if isinstance(decoded, str):
        log.warning("%s: %s", entry.path, decoded)
        return RowFailure(decoded)
    try:
        lines = reader.read(decoded.rgb)
    except Exception as error:  # noqa: BLE001 (one image never fails the shard)
        log.exception("ocr failed on %s", entry.path)
        return RowFailure(f"ocr failed: {type(error).__name__}: {error}")
    read_size = (decoded.rgb.shape[1], decoded.rgb.shape[0])
    kept = [
        to_original(line, read_size, decoded.original_size)
        for line in lines
        if line.confidence >= min_confidence
    ]
    return text_fields(reader.name, kept)


def run_ocr_job(
    layout: Layout,
    job: str,
    shards: Sequence[str],
    library: str | os.PathLike,
    backend: str = _SPEC.model_keys["backend"],
    trocr_model: str = _SPEC.model_keys["trocr_model"],
    max_side: int = 2048,
    max_regions: int = 64,
    min_confidence: float = 0.5,
    max_pixels: int = 200_000_000,
    device: str = "auto",
    threads: int = 2,
) -> OcrReader:
    """Read the text of the images that ``objects`` flagged in a job's shards, with one
    backend load (``run_model_job``). ``threads``: CPU threads of the job (see
    ``OcrReader.use_threads``). Returns the reader (``stats``: timings; ``counts``)."""
    reader = OcrReader(
        library, backend, trocr_model, max_side, max_regions, min_confidence, max_pixels, device
    )
    run_model_job(reader, layout, job, shards, threads)
    _log_counts(reader)
    return reader


def _images_at_once(backend: str, threads: int) -> int:
    """rapidocr: one image per thread (capped); trocr: one (torch uses every thread)."""
    if backend != "rapidocr":
        return 1
    return max(1, min(threads, RAPIDOCR_MAX_IMAGES_AT_ONCE))


def _decode(entry: Entry, library: Path, max_side: int, max_pixels: int) -> DecodedImage | str:
    """The image read at most ``max_side`` on its long edge, or why it could not be."""
    path = library / entry.path
    try:
        check_version(path, entry)
        return decode_image(path, max_side, max_pixels)
    except (DecodeError, ImageSkipped) as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 (one image never fails the shard)
        log.exception("internal error decoding %s", entry.path)
        return f"internal error: {type(error).__name__}: {error}"


def _log_counts(reader: OcrReader) -> None:
    c = reader.counts
    log.info(
        "ocr: %d read, %d skipped (no text), %d errors, %d lines; %s",
        c.read, c.skipped, c.errors, c.lines, reader.name,
    )  # fmt: skip
