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

InsightFace runs on onnxruntime, not torch: the model's inputs stay on the host
(``on_torch = False``) and the detector takes one image at a time (batch size 1 by default),
while the runtime's loader thread reads and decodes the next tier images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.config import Settings
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import HostItems, RowBatch, RowFailure, TierBatches
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS, ModelNotFoundError
from imganalyzer.runtime.weights import downloads_allowed, locate_insightface

log = logging.getLogger(__name__)

SKIPPED_NO_PERSON = "no person"
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


@dataclass(frozen=True)
class FaceSettings(Settings):
    """The ``faces`` section: an InsightFace ``pack`` (name or folder), the smallest face
    kept (short side of the box, original pixels: ArcFace is trained on faces of ~100 px and
    its identity accuracy collapses below ~40 px, whatever the tier shows), the lowest
    detection score kept and the detector's square input size."""

    section = "faces"
    pack: str
    min_face_size: int
    min_score: float
    det_size: int
    device: str


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


@dataclass(frozen=True)
class FaceInput:
    """One tier image to analyse ((h, w, 3) uint8 RGB, its true region) and its ``scale``:
    original pixels per tier pixel (x, y)."""

    rgb: np.ndarray
    scale: tuple[float, float]


class _FaceImages(TierBatches):
    """The tier images of a shard's rows, each with its scale to the original (the technical
    rows' width/height; tier pixels where they are missing). A batch whose tier read fails
    is read again one image at a time: an unreadable image becomes that image's error."""

    def __init__(self, shard: JobShard, tier: str, rows: np.ndarray) -> None:
        super().__init__(shard.reader, tier, rows)
        self.technical = shard.rows.get("technical")

    def read(self, start: int, stop: int) -> RowBatch:
        try:
            batch = super().read(start, stop)
        except Exception:  # noqa: BLE001 (one unreadable tier image never stops the shard)
            return self._read_one_by_one(start, stop)
        items = np.empty(len(batch.indices), dtype=object)
        for k, (index, image, (height, width)) in enumerate(
            zip(batch.indices, batch.data, batch.image_sizes, strict=True)
        ):
            rgb = np.ascontiguousarray(image[:height, :width])
            items[k] = FaceInput(rgb, self._scale(int(self.manifest_rows(index)), width, height))
        return RowBatch(batch.indices, items, batch.sizes)

    def _read_one_by_one(self, start: int, stop: int) -> RowBatch:
        items = np.empty(stop - start, dtype=object)
        for k, row in enumerate(self.manifest_rows(np.arange(start, stop)).tolist()):
            try:
                rgb = self.reader.image(self.tier, row)
                items[k] = FaceInput(rgb, self._scale(row, rgb.shape[1], rgb.shape[0]))
            except Exception as error:  # noqa: BLE001
                items[k] = RowFailure(f"tier not readable: {error}")
        return RowBatch(np.arange(start, stop), items, np.zeros((stop - start, 2), np.int32))

    def _scale(self, row: int, width: int, height: int) -> tuple[float, float]:
        technical = self.technical[row] if self.technical else {}
        original_width = technical.get("width") or width
        original_height = technical.get("height") or height
        return original_width / width, original_height / height


class FaceAnalyzer(BatchedModel):
    """An InsightFace pack (detector, recogniser, optional genderage) on onnxruntime; gated,
    it reads only the images the objects job flagged ``has_person``."""

    spec = MODELS["faces"]
    on_torch = False

    def __init__(self, settings: FaceSettings, threads: int = 2) -> None:
        super().__init__(settings.device, batch_size="auto")
        self.pack, self.min_face_size = settings.pack, settings.min_face_size
        self.min_score, self.det_size, self.threads = settings.min_score, settings.det_size, threads
        self.app: Any = None
        self.faces = 0  # kept, in this job
        self._embedding_rows: dict[int, int] = {}  # row -> its first face's array row

    @property
    def model_id(self) -> str:
        return self.pack

    def use_threads(self, threads: int) -> int:
        """onnxruntime's intra-op threads; one loader thread reads the tiers."""
        self.threads = threads
        return 1

    def load_model(self, device: Any, dtype: Any) -> None:
        """Load the pack; ``ModelNotFoundError`` if it is not on disk (never downloads:
        ``imganalyzer models fetch`` does, ahead of the jobs)."""
        location = locate_insightface(self.pack)
        folder = location.local_path()
        if not location.present:
            reason = "no .onnx files there" if folder.is_dir() else "folder missing"
            if downloads_allowed():
                reason += "; jobs never download InsightFace packs"
            raise ModelNotFoundError(self.pack, str(location.path), reason)
        self.providers = onnx_providers(self.requested_device)
        self.app = self._face_analysis(folder)
        self.detector = self.app.det_model
        self.recognizer = self.app.models.get("recognition")
        self.genderage = self.app.models.get("genderage")
        if self.recognizer is None or not self.detector.use_kps:
            raise ModelNotFoundError(
                self.pack, str(location.path), "it needs a detector with landmarks and an ArcFace"
            )
        self.dim = self._embedding_dim()
        log.info(
            "faces: %s on %s (%s), det size %d",
            self.pack, self.providers[0], ", ".join(sorted(self.app.models)), self.det_size,
        )  # fmt: skip

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        """Decode failures and objects errors fail; images without a person are skipped."""
        failed = super().decide(shard, row)
        objects = shard.rows.get("objects")
        if failed is not None or objects is None:
            return failed
        if objects[row]["status"] != "ok":
            return RowFailure.passed_on(objects[row], "failed", "objects: ")
        if not objects[row].get("has_person", True):
            return {"model": self.pack, "skipped": SKIPPED_NO_PERSON, "n_faces": 0, "faces": []}
        return None

    def source(self, shard: JobShard, rows: np.ndarray) -> TierBatches:
        return _FaceImages(shard, self.image_tier, rows)

    def preprocess(self, batch: RowBatch) -> HostItems:
        return HostItems(batch.data)

    def predict_batch(self, inputs: HostItems) -> list[list[Face] | RowFailure]:
        """The faces of each image, or why it failed (one image never stops the shard)."""
        results: list[list[Face] | RowFailure] = []
        for item in inputs:
            if isinstance(item, RowFailure):
                results.append(item)
                continue
            try:
                faces = self.analyze(item.rgb, item.scale)
            except Exception as error:  # noqa: BLE001
                log.warning("faces: an image failed: %s", error)
                results.append(RowFailure(f"faces failed: {error}"))
                continue
            self.faces += len(faces)
            results.append(faces)
        return results

    def postprocess(self, outputs: list[list[Face] | RowFailure]) -> list:
        return outputs

    def shard_array(self, shard: JobShard, results: Sequence[Any]) -> np.ndarray:
        """(faces in the shard, dim) float16, L2-normalised, in row and face order."""
        embeddings: list[np.ndarray] = []
        self._embedding_rows = {}
        for row, faces in enumerate(results):
            if isinstance(faces, list):
                self._embedding_rows[row] = len(embeddings)
                embeddings.extend(face.embedding for face in faces)
        matrix = np.zeros((len(embeddings), self.dim), dtype=np.float16)
        if embeddings:
            matrix[:] = np.stack(embeddings)
        return matrix

    def row_fields(self, result: list[Face], shard: JobShard, row: int) -> dict[str, Any]:
        first = self._embedding_rows[row]
        faces = [face.as_row(first + j) for j, face in enumerate(result)]
        return {"model": self.pack, "n_faces": len(faces), "faces": faces}

    def summary_fields(self) -> dict[str, Any]:
        return {"faces": self.faces}

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
