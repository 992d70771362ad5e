"""Faces of a shard (InsightFace): detected on the ``detect`` tier, never on the original (OPP-3.8).

Per image: each face's box and 5 landmarks in original-image pixels (the tier's coordinates
times ``technical`` width / tier width), detection score, age and sex when the pack has a
genderage model, and a 512-d ArcFace embedding. The aligned crops of one image go through
the recogniser in one call. Faces smaller than ``min_face_size`` original pixels (the box's
short side) or scoring below ``min_score`` are dropped before recognition.

With the ``objects`` module enabled only images it flagged ``has_person`` are read; the
others get an ok row with ``"skipped": "no person"``. Output per shard: ``<shard>.jsonl``
(``model``, ``n_faces``, ``faces``: each with ``embedding_row``) and ``<shard>.npy``, a
float16 (faces in the shard, dim) matrix of L2-normalised embeddings in row and face order.

InsightFace runs on onnxruntime, not torch, so this module does not subclass
``runtime.BatchedModel``: the detector takes one image at a time. A loader thread reads and
decodes the next tier images while the current one is analysed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.files import atomic_open
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.registry import (
    MODELS,
    ModelNotFoundError,
    downloads_allowed,
    locate_insightface,
)
from imganalyzer.threadpool import ordered_map

log = logging.getLogger(__name__)

_SPEC = MODELS["faces"]
# ArcFace is trained on faces of ~100 px and its identity accuracy collapses below ~40 px:
# smaller faces in the original carry too little identity to cluster, whatever the tier
# shows (they are also below what SCRFD finds on a 1024 px tier of a typical photo).
DEFAULT_MIN_FACE_SIZE = 40
DEFAULT_MIN_SCORE = 0.5
DEFAULT_DET_SIZE = 640
SKIPPED_NO_PERSON = "no person"
NOT_DECODED = "not decoded"  # as runtime.NOT_DECODED; runtime is not imported: it loads torch
# Only these InsightFace tasks run: the 68/106-point landmark models of buffalo_l cost time
# and give nothing the results keep.
TASKS = ("detection", "recognition", "genderage")
DEFAULT_EMBEDDING_DIM = 512


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for ``device`` (auto, cuda, mps or cpu): CUDA first where
    present unless ``cpu``."""
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("config key 'device' is 'cuda', but onnxruntime has no CUDA provider")
    if device != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass
class FacesStats:
    """Timings of one job (seconds), in the shape ``runtime.write_job_summary`` records."""

    images: int = 0  # analysed (read and run through the detector)
    faces: int = 0  # kept
    load_s: float = 0.0
    wait_s: float = 0.0  # waiting for the loader thread: ~0 if it keeps up
    predict_s: float = 0.0  # detection, alignment, recognition, genderage
    total_s: float = 0.0


@dataclass
class Face:
    """One face in original-image pixels; ``embedding`` (dim,) float32, L2-normalised."""

    box: np.ndarray  # (4,) x0, y0, x1, y1
    landmarks: np.ndarray  # (5, 2) x, y: eyes, nose, mouth corners
    score: float
    embedding: np.ndarray
    age: int | None = None
    sex: str | None = None

    def as_row(self, embedding_row: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }
        if self.age is not None:
            row["age"] = self.age
        if self.sex is not None:
            row["sex"] = self.sex
        row["embedding_row"] = embedding_row
        return row


class FaceAnalyzer:
    """An InsightFace pack (detector, recogniser, optional genderage) on onnxruntime."""

    module = _SPEC.module
    tier = _SPEC.tier

    def __init__(
        self,
        pack: str = _SPEC.model_keys["pack"],
        min_face_size: float = DEFAULT_MIN_FACE_SIZE,
        min_score: float = DEFAULT_MIN_SCORE,
        det_size: int = DEFAULT_DET_SIZE,
        device: str = "auto",
        threads: int = 2,
    ) -> None:
        self.pack, self.min_face_size, self.min_score = pack, min_face_size, min_score
        self.det_size, self.requested_device, self.threads = det_size, device, threads
        self.stats = FacesStats()
        self.app: Any = None

    @property
    def model_id(self) -> str:
        return self.pack

    def load(self) -> None:
        """Load the pack once; ``ModelNotFoundError`` if it is not on disk (never downloads:
        ``imganalyzer models fetch`` does, ahead of the jobs)."""
        if self.app is not None:
            return
        started = time.perf_counter()
        location = locate_insightface(self.pack)
        if not location.present:
            reason = "no .onnx files there" if location.path.is_dir() else "folder missing"
            if downloads_allowed():
                reason += "; jobs never download InsightFace packs"
            raise ModelNotFoundError(self.pack, str(location.path), reason)
        self.providers = onnx_providers(self.requested_device)
        self.app = self._face_analysis(location.path)
        self.detector = self.app.det_model
        self.recognizer = self.app.models.get("recognition")
        self.genderage = self.app.models.get("genderage")
        if self.recognizer is None or not self.detector.use_kps:
            raise ModelNotFoundError(
                self.pack, str(location.path), "it needs a detector with landmarks and an ArcFace"
            )
        self.dim = self._embedding_dim()
        self.stats.load_s = time.perf_counter() - started
        log.info(
            "faces: %s on %s (%s), det size %d; loaded in %.1f s",
            self.pack, self.providers[0], ", ".join(sorted(self.app.models)), self.det_size,
            self.stats.load_s,
        )  # fmt: skip

    def _face_analysis(self, folder: Path) -> Any:
        import onnxruntime
        from insightface.app import FaceAnalysis

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, self.threads)
        options.inter_op_num_threads = 1
        try:
            app = FaceAnalysis(
                name=str(folder), allowed_modules=list(TASKS), providers=self.providers,
                sess_options=options,
            )  # fmt: skip
        except AssertionError as error:  # FaceAnalysis asserts that a detector was found
            raise ModelNotFoundError(self.pack, str(folder), "no face detector in it") from error
        ctx_id = 0 if self.providers[0] == "CUDAExecutionProvider" else -1
        side = int(self.det_size)
        app.prepare(ctx_id=ctx_id, det_thresh=self.min_score, det_size=(side, side))
        return app

    def _embedding_dim(self) -> int:
        width = self.recognizer.output_shape[-1]
        return width if isinstance(width, int) else DEFAULT_EMBEDDING_DIM

    def analyze(self, rgb: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> list[Face]:
        """The faces of one tier image ((h, w, 3) uint8 RGB); ``scale``: original pixels per
        tier pixel (x, y). Boxes are clipped to the image."""
        self.load()
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # InsightFace takes OpenCV's BGR
        boxes, landmarks = self.detector.detect(bgr, max_num=0)
        if not len(boxes):
            return []
        height, width = rgb.shape[:2]
        tier_boxes = np.clip(boxes[:, :4], 0, [width, height, width, height])
        factor = np.array(scale, dtype=np.float32)
        original = tier_boxes * np.tile(factor, 2)
        short_side = np.minimum(original[:, 2] - original[:, 0], original[:, 3] - original[:, 1])
        keep = np.flatnonzero((boxes[:, 4] >= self.min_score) & (short_side >= self.min_face_size))
        if not len(keep):
            return []
        embeddings = self._embed(bgr, landmarks[keep])
        attributes = self._gender_age(bgr, tier_boxes[keep])
        return [
            Face(original[k], landmarks[k] * factor, float(boxes[k, 4]), embeddings[j], *attrs)
            for j, (k, attrs) in enumerate(zip(keep, attributes, strict=True))
        ]

    def _embed(self, bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """All faces of one image through the recogniser in one call: (k, dim) normalised."""
        from insightface.utils.face_align import norm_crop

        side = self.recognizer.input_size[0]
        crops = [norm_crop(bgr, points, image_size=side) for points in landmarks]
        if self.recognizer.input_shape[0] == 1:  # exported with a fixed batch of one
            features = np.concatenate([self.recognizer.get_feat(crop) for crop in crops])
        else:
            features = np.asarray(self.recognizer.get_feat(crops), dtype=np.float32)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)

    def _gender_age(
        self, bgr: np.ndarray, boxes: np.ndarray
    ) -> list[tuple[int | None, str | None]]:
        """(age, sex) per face, from one genderage call (as InsightFace's Attribute.get)."""
        if self.genderage is None:
            return [(None, None)] * len(boxes)
        import cv2
        from insightface.utils.face_align import transform

        model = self.genderage
        side = model.input_size[0]
        crops = []
        for x0, y0, x1, y1 in boxes:
            scale = side / (max(x1 - x0, y1 - y0, 1.0) * 1.5)
            crops.append(transform(bgr, ((x0 + x1) / 2, (y0 + y1) / 2), side, scale, 0)[0])
        mean, std = model.input_mean, model.input_std
        blobs = cv2.dnn.blobFromImages(crops, 1 / std, (side, side), (mean,) * 3, swapRB=True)
        if model.input_shape[0] == 1:  # exported with a fixed batch of one
            preds = np.concatenate([_run_genderage(model, blob[None]) for blob in blobs])
        else:
            preds = _run_genderage(model, blobs)
        return [(int(np.round(p[2] * 100)), "M" if np.argmax(p[:2]) == 1 else "F") for p in preds]


def _run_genderage(model: Any, blob: np.ndarray) -> np.ndarray:
    inputs = {model.input_name: np.ascontiguousarray(blob, dtype=np.float32)}
    return model.session.run(model.output_names, inputs)[0]


@dataclass(frozen=True)
class FacesShardFiles:
    """The inputs and outputs of one shard of a faces job (``objects``: None when that
    module is disabled: every decoded image is analysed)."""

    manifest: str | os.PathLike
    tiers: str | os.PathLike
    technical: str | os.PathLike
    objects: str | os.PathLike | None
    out_jsonl: str | os.PathLike
    out_npy: str | os.PathLike


@dataclass
class _Item:
    """One image to analyse: its shard, manifest row and original pixels per tier pixel."""

    shard: int
    row: int
    original_size: tuple[int, int] | None  # (width, height) from the technical row


def run_faces_job(
    shards: Sequence[FacesShardFiles],
    pack: str = _SPEC.model_keys["pack"],
    min_face_size: float = DEFAULT_MIN_FACE_SIZE,
    min_score: float = DEFAULT_MIN_SCORE,
    det_size: int = DEFAULT_DET_SIZE,
    device: str = "auto",
    threads: int = 2,
) -> FaceAnalyzer:
    """Analyse the faces of several shards with one model load; returns the analyzer (its
    ``stats`` hold the job's timings). A loader thread reads the next tier images."""
    analyzer = FaceAnalyzer(pack, min_face_size, min_score, det_size, device, threads)
    analyzer.load()
    started = time.perf_counter()
    entries = [read_manifest(shard.manifest) for shard in shards]
    readers = [TierReader(shard.tiers) for shard in shards]
    rows: list[list[dict | None]] = []
    items: list[_Item] = []
    for k, (shard, shard_entries) in enumerate(zip(shards, entries, strict=True)):
        if readers[k].n_images != len(shard_entries):
            raise ValueError(
                f"{shard.tiers}: {readers[k].n_images} images, manifest has {len(shard_entries)}"
            )
        shard_rows, shard_items = _plan_shard(k, shard, shard_entries, pack)
        rows.append(shard_rows)
        items.extend(shard_items)
    results = _analyze_items(analyzer, readers, items)
    for item, result in zip(items, results, strict=True):
        rows[item.shard][item.row] = result  # type: ignore[assignment]
    for shard, shard_entries, shard_rows in zip(shards, entries, rows, strict=True):
        _write_shard(shard, shard_entries, shard_rows, pack, analyzer.dim)
    analyzer.stats.total_s = time.perf_counter() - started
    log.info(
        "faces: %d images, %d faces in %.2f s; waited for the loader %.2f s",
        analyzer.stats.images, analyzer.stats.faces, analyzer.stats.total_s,
        analyzer.stats.wait_s,
    )  # fmt: skip
    return analyzer


def _plan_shard(
    k: int, shard: FacesShardFiles, entries: list[Entry], pack: str
) -> tuple[list[dict | None], list[_Item]]:
    """Rows decided without pixels (decode errors, objects errors, no person) and the
    images to analyse (their rows are None until analysed)."""
    technical = _rows_of(shard.technical, len(entries))
    objects = _rows_of(shard.objects, len(entries)) if shard.objects is not None else None
    rows: list[dict | None] = []
    items = []
    for i, (entry, tech) in enumerate(zip(entries, technical, strict=True)):
        if tech["status"] != "ok":
            rows.append(error_row(entry, tech.get("error", NOT_DECODED)))
        elif objects is not None and objects[i]["status"] != "ok":
            rows.append(error_row(entry, f"objects: {objects[i].get('error', 'failed')}"))
        elif objects is not None and not objects[i].get("has_person", True):
            rows.append(ok_row(entry, {"model": pack, "skipped": SKIPPED_NO_PERSON,
                                       "n_faces": 0, "faces": []}))  # fmt: skip
        else:
            size = (tech["width"], tech["height"]) if "width" in tech and "height" in tech else None
            rows.append(None)
            items.append(_Item(k, i, size))
    return rows, items


def _rows_of(path: str | os.PathLike, n_rows: int) -> list[dict]:
    rows = list(read_rows(path))
    if len(rows) != n_rows:
        raise ValueError(f"{path}: {len(rows)} rows, expected {n_rows} (manifest rows)")
    return rows


def _analyze_items(
    analyzer: FaceAnalyzer, readers: list[TierReader], items: list[_Item]
) -> list[list[Face] | str]:
    """Faces of each item (or an error reason), tier reads prefetched by one thread."""

    def load(item: _Item) -> np.ndarray | str:
        try:
            return readers[item.shard].image(analyzer.tier, item.row)
        except Exception as error:  # one unreadable tier image never stops the shard
            return f"tier not readable: {error}"

    results: list[list[Face] | str] = []
    images = ordered_map(load, items, threads=1)
    for item in items:
        began = time.perf_counter()
        rgb = next(images)
        analyzer.stats.wait_s += time.perf_counter() - began
        results.append(rgb if isinstance(rgb, str) else _analyze_one(analyzer, rgb, item))
    return results


def _analyze_one(analyzer: FaceAnalyzer, rgb: np.ndarray, item: _Item) -> list[Face] | str:
    height, width = rgb.shape[:2]
    original_width, original_height = item.original_size or (width, height)
    began = time.perf_counter()
    try:
        faces = analyzer.analyze(rgb, (original_width / width, original_height / height))
    except Exception as error:
        log.warning("faces: row %d of shard %d failed: %s", item.row, item.shard, error)
        return f"faces failed: {error}"
    analyzer.stats.predict_s += time.perf_counter() - began
    analyzer.stats.images += 1
    analyzer.stats.faces += len(faces)
    return faces


def _write_shard(
    shard: FacesShardFiles, entries: list[Entry], rows: list, pack: str, dim: int
) -> None:
    embeddings: list[np.ndarray] = []
    out_rows = []
    for entry, row in zip(entries, rows, strict=True):
        if isinstance(row, str):
            row = error_row(entry, row)
        elif isinstance(row, list):
            faces = [face.as_row(len(embeddings) + j) for j, face in enumerate(row)]
            embeddings.extend(face.embedding for face in row)
            row = ok_row(entry, {"model": pack, "n_faces": len(faces), "faces": faces})
        out_rows.append(row)
    matrix = np.zeros((len(embeddings), dim), dtype=np.float16)
    if embeddings:
        matrix[:] = np.stack(embeddings)
    with atomic_open(shard.out_npy, "wb") as handle:
        np.save(handle, matrix)
    write_rows(shard.out_jsonl, out_rows)
