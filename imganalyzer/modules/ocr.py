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

The detector and the backends live in ``ocr_backends``; this file holds the rows and the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog.manifests import Entry
from imganalyzer.config import Settings
from imganalyzer.decode.jobs import ImageSkipped, check_version
from imganalyzer.decode.readers import DecodedImage, DecodeError, decode_image
from imganalyzer.modules.ocr_backends import OcrBackend, OcrLine, make_backend
from imganalyzer.results import OK
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import HostItems, RowBatch, RowFailure
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS

log = logging.getLogger(__name__)

SKIPPED_NO_TEXT = "no text"
# The rapidocr backend reads up to one image per job thread at once, each with one ONNX
# Runtime thread: on 2 cores two images at once read 1.3-1.4x faster than one image with both
# cores in ONNX Runtime's intra-op pool (bench_ocr.py; Python pre- and post-processing
# overlap too). Each image in flight holds its detector's activations (measured ~1.7 GB for
# a 2048 x 1365 page), hence a cap.
RAPIDOCR_MAX_IMAGES_AT_ONCE = 2


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
@dataclass(frozen=True)
class OcrSettings(Settings):
    """The ``ocr`` section, and the library the originals are read from (at no more than
    ``max_side`` pixels on the long edge, nor ``max_pixels`` in all)."""

    section = "ocr"
    backend: str
    trocr_model: str
    max_side: int
    max_regions: int
    min_confidence: float
    library: str
    max_pixels: int
    device: str


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

    spec = MODELS["ocr"]
    on_torch = False

    def __init__(self, settings: OcrSettings) -> None:
        super().__init__(settings.device, batch_size="auto")
        self.library, self.backend = Path(settings.library), settings.backend
        self.trocr_model, self.max_side = settings.trocr_model, settings.max_side
        self.max_regions, self.max_pixels = settings.max_regions, settings.max_pixels
        self.min_confidence = settings.min_confidence
        self.name = self.backend if self.backend == "rapidocr" else f"trocr:{self.trocr_model}"
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
            return RowFailure.passed_on(objects_row, "failed", "objects: ")
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

    @contextlib.contextmanager
    def job_context(self) -> Iterator[None]:
        """Logs what the job did by row, once it has written them."""
        yield
        c = self.counts
        log.info(
            "ocr: %d read, %d skipped (no text), %d errors, %d lines; %s",
            c.read, c.skipped, c.errors, c.lines, self.name,
        )  # fmt: skip


def _recognise(
    entry: Entry, decoded: DecodedImage | RowFailure, reader: OcrBackend, min_confidence: float
) -> dict[str, Any] | RowFailure:
    """The fields of one image's ok row, or why it failed (one image never fails the shard)."""
    if isinstance(decoded, RowFailure):
        log.warning("%s: %s", entry.path, decoded.reason)
        return decoded
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


def _images_at_once(backend: str, threads: int) -> int:
    """rapidocr: one image per thread (capped); trocr: one (torch uses every thread)."""
    if backend != "rapidocr":
        return 1
    return max(1, min(threads, RAPIDOCR_MAX_IMAGES_AT_ONCE))


def _decode(
    entry: Entry, library: Path, max_side: int, max_pixels: int
) -> DecodedImage | RowFailure:
    """The image read at most ``max_side`` on its long edge, or why it could not be (with the
    error kind the decode job gives the same file)."""
    path = library / entry.path
    try:
        check_version(path, entry)
        return decode_image(path, max_side, max_pixels)
    except (DecodeError, ImageSkipped) as error:
        return RowFailure(str(error), error.kind)
    except Exception as error:  # noqa: BLE001 (one image never fails the shard)
        log.exception("internal error decoding %s", entry.path)
        return RowFailure(f"internal error: {type(error).__name__}: {error}")
