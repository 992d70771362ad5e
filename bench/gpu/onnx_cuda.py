"""The kit's sections for the modules that run ONNX graphs (faces: InsightFace, OCR:
PP-OCR through RapidOCR): onnxruntime's CPU provider (before: all the GPU machine's
onnxruntime has) against the same graphs on the GPU through onnx2torch (``onnx_torch``),
labelled so. Users install onnxruntime-gpu; its CUDA provider is not measured here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from gpu import architectures, comparisons
from gpu.before_after import projected
from gpu.measure import pair, write_tier_store
from gpu.onnx_torch import TorchOnnxSession, cpu_session, fill_weights, max_difference

ROOT = Path(__file__).resolve().parents[2]
# onnxruntime's CPU provider runs a real-size pack at ~4 images/s: a small store for it.
FACES_CPU_IMAGES = 24
# PP-OCR graphs without weights, made by fetch_wheels.sh; the CPU smoke uses rapidocr's own.
PPOCR_FOLDER = ROOT / "bench" / "gpu" / "wheels" / "ppocr"
PPOCR_FILES = ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx")
# What the OCR job feeds them: the original read at max_side 2048 (a 4:3 photo: 2048 x 1536,
# multiples of 32), text lines cropped to 48 px high (320 px wide at most per batch here),
# recognised 6 at a time (RapidOCR's rec batch). Lines per image with text: an assumption.
PAGE = {"real": (1, 3, 1536, 2048), "smoke": (1, 3, 256, 320)}
LINES_PER_BATCH = 6
LINE_SHAPE = (LINES_PER_BATCH, 3, 48, 320)
LINES_PER_IMAGE = 8


@contextlib.contextmanager
def faces_on_torch(device: str) -> Iterator[None]:
    """FaceAnalyzer's InsightFace models run by ``TorchOnnxSession`` on ``device`` (the
    same ONNX graphs; loaded by InsightFace, then their sessions replaced)."""
    from imganalyzer.modules.faces import FaceAnalyzer

    original = FaceAnalyzer.load_model

    def load_model(self: FaceAnalyzer, device_arg: Any, dtype: Any) -> None:
        original(self, device_arg, dtype)
        for model in self.app.models.values():
            # SCRFD builds an onnxruntime session per input size unless told not to
            model.static_shape_sessions = False
            model.session = TorchOnnxSession(model.model_file, device)

    FaceAnalyzer.load_model = load_model  # type: ignore[method-assign]
    try:
        yield
    finally:
        FaceAnalyzer.load_model = original  # type: ignore[method-assign]


def faces(kit: Any) -> dict[str, Any]:
    s = kit.settings
    pack = architectures.face_pack(kit.tmp / "face_pack", s.real)
    small = write_tier_store(kit.tmp / "faces_cpu.zarr", FACES_CPU_IMAGES, kit.tiers)
    cpu = comparisons.faces_job(pack, small, kit.tmp / "faces_cpu", "cpu")
    with faces_on_torch(s.device):
        result = comparisons.faces_job(pack, kit.reader, kit.tmp / "faces_torch", "auto")
    result["onnxruntime_cpu"] = {k: cpu[k] for k in ("images", "images_per_s", "providers")}
    result["max_difference_to_onnxruntime"] = {
        path.name: _difference(path, s.device) for path in sorted(Path(pack).glob("*.onnx"))
    }
    result["before_after"] = [
        pair("faces: the pack's ONNX graphs on the GPU (onnx2torch)", "onnxruntime CPU",
             cpu["images_per_s"], result["providers"][0], result["images_per_s"]),
    ]  # fmt: skip
    projected(kit, "faces", result["images_per_s"], result["providers"][0])
    return result


def _difference(path: Path, device: str) -> float:
    session = TorchOnnxSession(path, device)
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in session.inputs[0].shape]
    if shape[-1] == 1:  # a detector with a free size: the kit's 640 px input
        shape[-2:] = [640, 640]
    feeds = {session.inputs[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return max_difference(path, session, feeds)


def _ppocr_graphs(real: bool) -> list[Any]:
    """PP-OCR's detector and recogniser: on the GPU run the stripped graphs with random
    weights; in the CPU smoke rapidocr's own files (with their weights) where installed."""
    import onnx

    if real:
        paths = [PPOCR_FOLDER / name for name in PPOCR_FILES]
        if not all(path.exists() for path in paths):
            raise FileNotFoundError(f"{PPOCR_FOLDER}: run bench/gpu/fetch_wheels.sh first")
        return [fill_weights(onnx.load(str(path))) for path in paths]
    import rapidocr

    folder = Path(rapidocr.__file__).parent / "models"
    return [onnx.load(str(folder / name)) for name in PPOCR_FILES]


def ocr(kit: Any) -> dict[str, Any]:
    """PP-OCR's forward passes per image with text: the detector on the page and the
    recogniser on ``LINES_PER_IMAGE`` lines, on the GPU through onnx2torch and on
    onnxruntime's CPU provider. RapidOCR's own pre- and post-processing (CPU) is left out."""
    s = kit.settings
    detector, recogniser = _ppocr_graphs(s.real)
    rng = np.random.default_rng(0)
    page = rng.random(PAGE["real" if s.real else "smoke"], dtype=np.float32)
    lines = rng.random(LINE_SHAPE, dtype=np.float32)
    batches = math.ceil(LINES_PER_IMAGE / LINES_PER_BATCH)
    timings: dict[str, Any] = {}
    for name, graph, feed in (("det", detector, page), ("rec", recogniser, lines)):
        torch_session = TorchOnnxSession(graph, s.device)
        feeds = {torch_session.inputs[0].name: feed}
        cpu = cpu_session(graph)
        timings[name] = {
            "torch_s": comparisons.best_of(lambda t=torch_session, f=feeds: t.run(None, f)),
            "onnxruntime_cpu_s": comparisons.best_of(lambda c=cpu, f=feeds: c.run(None, f), 2),
            "max_difference_to_onnxruntime": max_difference(graph, torch_session, feeds),
            "input": list(feed.shape),
        }
    per_image = {
        key: timings["det"][key] + batches * timings["rec"][key]
        for key in ("torch_s", "onnxruntime_cpu_s")
    }
    provider = TorchOnnxSession(recogniser, s.device).get_providers()[0]
    result = {
        "model": "PP-OCRv6 small det + rec graphs" + (" (random weights)" if s.real else ""),
        "device": s.device,
        "dtype": "float32 (onnx2torch)",
        "providers": [provider],
        "lines_per_image": LINES_PER_IMAGE,
        "images_per_s": 1 / per_image["torch_s"],
        "images_per_s_onnxruntime_cpu": 1 / per_image["onnxruntime_cpu_s"],
        "forward": timings,
    }
    result["before_after"] = [
        pair(f"ocr: det + {LINES_PER_IMAGE} lines on the GPU (onnx2torch)", "onnxruntime CPU",
             result["images_per_s_onnxruntime_cpu"], provider, result["images_per_s"]),
    ]  # fmt: skip
    projected(kit, "ocr", result["images_per_s"], f"{provider}, forward passes only")
    return result
