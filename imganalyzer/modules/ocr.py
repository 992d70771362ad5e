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

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.decode.jobs import ImageSkipped, check_version
from imganalyzer.decode.readers import DecodedImage, DecodeError, decode_image
from imganalyzer.results import OK, error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.registry import MODELS, ModelNotFoundError, hf_load_path
from imganalyzer.threadpool import ordered_map

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


# --- The job ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OcrShardFiles:
    """The inputs and outputs of one shard of an OCR job."""

    manifest: str | os.PathLike
    objects: str | os.PathLike  # the objects rows (has_text) of the same manifest
    out_jsonl: str | os.PathLike


@dataclass
class OcrStats:
    """Counts and timings (seconds) of one OCR job."""

    images: int = 0  # rows written
    read: int = 0  # images opened and read
    skipped: int = 0  # objects saw no text: never opened
    errors: int = 0
    lines: int = 0
    load_s: float = 0.0
    total_s: float = 0.0


@dataclass
class OcrJob:
    """What ``run_ocr_job`` did: ``module``, ``model_id`` and ``stats`` (the shape
    ``runtime.write_job_summary`` reads)."""

    model_id: str
    stats: OcrStats = field(default_factory=OcrStats)
    module: str = _SPEC.module


def run_ocr_job(
    shards: Sequence[OcrShardFiles],
    library: str | os.PathLike,
    backend: str = _SPEC.model_keys["backend"],
    trocr_model: str = _SPEC.model_keys["trocr_model"],
    max_side: int = 2048,
    max_regions: int = 64,
    min_confidence: float = 0.5,
    max_pixels: int = 200_000_000,
    device: str = "auto",
    threads: int = 2,
) -> OcrJob:
    """Read the text of the images that ``objects`` flagged, in several shards, with one
    backend load.

    ``threads``: CPU threads of the job. rapidocr reads that many images at once (at most
    ``RAPIDOCR_MAX_IMAGES_AT_ONCE``) with one ONNX Runtime thread each; TrOCR reads one image
    at a time with ``threads`` torch threads. A decode thread prepares the next images.
    """
    started = time.perf_counter()
    images_at_once = _images_at_once(backend, threads)
    model_threads = max(1, threads // images_at_once)
    if backend == "trocr":
        import torch

        torch.set_num_threads(model_threads)
    reader = make_backend(backend, trocr_model, max_regions, model_threads, device, max_side)
    job = OcrJob(model_id=reader.name)
    job.stats.load_s = time.perf_counter() - started
    log.info("ocr: %s loaded in %.1f s", reader.name, job.stats.load_s)
    settings = _ReadSettings(Path(library), max_side, max_pixels, min_confidence)
    for shard in shards:
        rows = _shard_rows(shard, reader, settings, images_at_once)
        write_rows(shard.out_jsonl, rows)
        _count(job.stats, rows)
    job.stats.total_s = time.perf_counter() - started
    _log_stats(job)
    return job


def _images_at_once(backend: str, threads: int) -> int:
    """rapidocr: one image per thread (capped); trocr: one (torch uses every thread)."""
    if backend != "rapidocr":
        return 1
    return max(1, min(threads, RAPIDOCR_MAX_IMAGES_AT_ONCE))


@dataclass(frozen=True)
class _ReadSettings:
    library: Path
    max_side: int
    max_pixels: int
    min_confidence: float


def _shard_rows(
    shard: OcrShardFiles, reader: OcrBackend, settings: _ReadSettings, images_at_once: int
) -> list[dict[str, Any]]:
    """The shard's rows in manifest order: gated rows at once, read rows as they come."""
    entries = read_manifest(shard.manifest)
    gated = [_gate(entry, row, reader.name) for entry, row in _objects_rows(shard, entries)]
    to_read = [entry for entry, row in zip(entries, gated, strict=True) if row is None]
    read = iter(list(_read_all(to_read, reader, settings, images_at_once)))
    return [row if row is not None else next(read) for row in gated]


def _objects_rows(shard: OcrShardFiles, entries: list[Entry]) -> Iterator[tuple[Entry, dict]]:
    rows = list(read_rows(shard.objects))
    if len(rows) != len(entries):
        raise ValueError(f"{shard.objects}: {len(rows)} rows, expected {len(entries)}")
    for entry, row in zip(entries, rows, strict=True):
        if (row.get("path"), row.get("size"), row.get("mtime_ns")) != (
            entry.path,
            entry.size,
            entry.mtime_ns,
        ):
            raise ValueError(f"{shard.objects}: row of {row.get('path')!r} is not {entry.path!r}")
        yield entry, row


def _gate(entry: Entry, objects_row: dict, backend: str) -> dict[str, Any] | None:
    """The row of an image that is not to be read, or None for one that is."""
    if objects_row.get("status") != OK:
        return error_row(entry, f"objects: {objects_row.get('error', 'failed')}")
    if not objects_row.get("has_text", False):
        return ok_row(entry, skipped_fields(backend))
    return None


def _read_all(
    entries: list[Entry], reader: OcrBackend, settings: _ReadSettings, images_at_once: int
) -> Iterator[dict[str, Any]]:
    """Rows of ``entries`` in order; decoding runs ahead on its own thread."""
    decoded = ordered_map(lambda entry: _decode(entry, settings), entries, threads=1)
    pairs = zip(entries, decoded, strict=True)
    return ordered_map(
        lambda pair: _recognise(*pair, reader, settings.min_confidence), pairs, images_at_once
    )


def _decode(entry: Entry, settings: _ReadSettings) -> DecodedImage | str:
    path = settings.library / entry.path
    try:
        check_version(path, entry)
        return decode_image(path, settings.max_side, settings.max_pixels)
    except (DecodeError, ImageSkipped) as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 (one image never fails the shard)
        log.exception("internal error decoding %s", entry.path)
        return f"internal error: {type(error).__name__}: {error}"


def _recognise(
    entry: Entry, decoded: DecodedImage | str, reader: OcrBackend, min_confidence: float
) -> dict[str, Any]:
    if isinstance(decoded, str):
        log.warning("%s: %s", entry.path, decoded)
        return error_row(entry, decoded)
    try:
        lines = reader.read(decoded.rgb)
    except Exception as error:  # noqa: BLE001 (one image never fails the shard)
        log.exception("ocr failed on %s", entry.path)
        return error_row(entry, f"ocr failed: {type(error).__name__}: {error}")
    read_size = (decoded.rgb.shape[1], decoded.rgb.shape[0])
    kept = [
        to_original(line, read_size, decoded.original_size)
        for line in lines
        if line.confidence >= min_confidence
    ]
    return ok_row(entry, text_fields(reader.name, kept))


def _count(stats: OcrStats, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        stats.images += 1
        if row["status"] != OK:
            stats.errors += 1
        elif "skipped" in row:
            stats.skipped += 1
        else:
            stats.read += 1
            stats.lines += len(row["lines"])


def _log_stats(job: OcrJob) -> None:
    s = job.stats
    rate = s.read / (s.total_s - s.load_s) if s.total_s > s.load_s else 0.0
    log.info(
        "ocr: %d images (%d read, %d skipped: no text, %d errors), %d lines, %.2f s "
        "(%.2f images read/s), %s loaded in %.1f s",
        s.images, s.read, s.skipped, s.errors, s.lines, s.total_s, rate, job.model_id, s.load_s,
    )  # fmt: skip


def run_ocr_shard(
    manifest: str | os.PathLike,
    objects: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    library: str | os.PathLike,
    **settings: Any,
) -> OcrJob:
    """``run_ocr_job`` for a single shard."""
    return run_ocr_job([OcrShardFiles(manifest, objects, out_jsonl)], library, **settings)
