"""Measuring one model module: its pipeline (the project's batched runtime, with its loader
threads, precision choice and out-of-memory back-off) against a bare forward loop over the
same tensors already on the device, with GPU utilisation and peak memory.

Inputs are the kit's own tier store (``write_tier_store``): a few hundred synthetic photos
at the real tier sizes, JPEG-compressed in Zarr as the decode job writes them, read again
and again by ``RepeatedTierBatches`` so that a run can be as long as the model needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage import data

from imganalyzer.decode.tiers import TierReader, TierWriter, make_tiers
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import EncodedTierBatches, RowBatch, TierBatches

# Utilisation samples per second while a pipeline runs.
SAMPLE_INTERVAL_S = 0.1
# Photo shapes of a library: mostly 4:3 landscape, some portrait (GroundingDINO runs one
# forward pass per shape in a batch, so the mix matters).
ASPECTS = ((4, 3), (4, 3), (4, 3), (3, 4))
# Tier pixels per cell of the 640 px face detector input on a 1024 px tier, and the bright
# squares (cells, as row, column) that the SCRFD-shaped detector takes for faces.
FACE_CELL = 1024 / 20
FACE_CELLS = ((2, 3), (2, 9), (6, 14))


def synthetic_photo(index: int, long_edge: int) -> np.ndarray:
    """A scikit-image photo, cropped, flipped and shaded per index, at ``long_edge`` px,
    with three bright squares for the face detector: (h, w, 3) uint8."""
    sources = (data.astronaut, data.coffee, data.chelsea, data.rocket, data.immunohistochemistry)
    rng = np.random.default_rng(index)
    rgb = sources[index % len(sources)]()
    if index // len(sources) % 2:
        rgb = rgb[:, ::-1]
    aspect_w, aspect_h = ASPECTS[index % len(ASPECTS)]
    width, height = (long_edge, long_edge * aspect_h // aspect_w)
    if aspect_h > aspect_w:
        width, height = long_edge * aspect_w // aspect_h, long_edge
    image = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height)))
    # dark enough (< 128) that only the bright squares are faces to the detector
    image = (image * rng.uniform(0.25, 0.45)).astype(np.uint8)
    cell = FACE_CELL * long_edge / 1024
    for row, column in FACE_CELLS:
        image[
            round(row * cell) : round((row + 1) * cell),
            round(column * cell) : round((column + 1) * cell),
        ] = 255
    return image


def write_tier_store(path: Path, n_images: int, tiers: dict[str, int]) -> TierReader:
    """``n_images`` synthetic photos as the decode job would store them (JPEG q90)."""
    with TierWriter(path, n_images=n_images, tiers=tiers) as writer:
        for index in range(n_images):
            writer.write(index, make_tiers(synthetic_photo(index, max(tiers.values())), tiers))
    return TierReader(path)


class RepeatedTierBatches:
    """``n_rows`` rows of one tier, row ``i`` being stored image ``i % stored``;
    ``encoded``: their JPEG bytes (``EncodedTierBatches``), for a model decoding on its device."""

    def __init__(self, reader: TierReader, tier: str, n_rows: int, encoded: bool = False) -> None:
        inner = EncodedTierBatches if encoded else TierBatches
        self.inner, self.stored, self.n_rows = inner(reader, tier), reader.n_images, n_rows

    def read(self, start: int, stop: int) -> RowBatch:
        parts, position = [], start
        while position < stop:
            first = position % self.stored
            last = min(self.stored, first + stop - position)
            batch = self.inner.read(first, last)
            parts.append(RowBatch(batch.indices - first + position, batch.data, batch.sizes))
            position += last - first
        if len(parts) == 1:
            return parts[0]
        return RowBatch(
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.data for p in parts]),
            np.concatenate([p.sizes for p in parts]),
        )


class GpuSampler:
    """Mean GPU utilisation (%) and peak used memory (GiB) by NVML, or by ``nvidia-smi`` if
    NVML is missing, sampled in a thread while the ``with`` block runs; None without a GPU."""

    def __init__(self) -> None:
        self.utilisation: list[float] = []
        self.used_gib: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        read = _nvml_reader() or _nvidia_smi_reader()
        if read is not None and torch.cuda.is_available():
            self._thread = threading.Thread(target=self._sample, args=(read,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self, read: Callable[[], tuple[float, float]]) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            with contextlib.suppress(Exception):
                utilisation, used = read()
                self.utilisation.append(utilisation)
                self.used_gib.append(used)

    @property
    def mean_utilisation(self) -> float | None:
        return float(np.mean(self.utilisation)) if self.utilisation else None

    @property
    def peak_used_gib(self) -> float | None:
        return max(self.used_gib) if self.used_gib else None


def _nvml_reader() -> Callable[[], tuple[float, float]] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # noqa: BLE001 (no NVML: try nvidia-smi)
        return None

    def read() -> tuple[float, float]:
        used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30
        return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu), used

    return read


def _nvidia_smi_reader() -> Callable[[], tuple[float, float]] | None:
    if shutil.which("nvidia-smi") is None:
        return None

    def read() -> tuple[float, float]:
        query = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        out = subprocess.run(["nvidia-smi", *query], capture_output=True, text=True, timeout=5)
        utilisation, used_mib = out.stdout.splitlines()[0].split(",")
        return float(utilisation), float(used_mib) / 1024

    return read


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, float | None]]:
    """``{"peak_gib": ...}`` after the block: torch's peak allocation on CUDA, else None."""
    result: dict[str, float | None] = {"peak_gib": None}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    yield result
    if torch.cuda.is_available():
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def _discard(indices: np.ndarray, results: Any) -> None:
    pass


def pipeline(
    model: BatchedModel,
    reader: TierReader,
    target_s: float,
    loader_threads: int,
    max_rows: int,
    encoded: bool = False,
) -> dict[str, Any]:
    """The model's own ``run`` over as many whole batches as take about ``target_s``, sized
    by the second of two two-batch warm-ups (the first absorbs CUDA's first-call costs and
    a compiled model's compilation); ``encoded``: the tier's JPEG bytes as the source."""
    model.load()
    initial = model.batch_size
    warm = RepeatedTierBatches(reader, model.image_tier, 2 * initial, encoded)
    torch.set_num_threads(loader_threads + 1)  # as run_model_job sets it for ``threads``
    try:
        for _ in range(2):
            began = time.perf_counter()
            model.run(warm, _discard, loader_threads=loader_threads)
        rate = warm.n_rows / (time.perf_counter() - began)
        batches = max(2, round(min(max_rows, rate * target_s) / model.batch_size))
        source = RepeatedTierBatches(reader, model.image_tier, batches * model.batch_size, encoded)
        with peak_memory() as memory, GpuSampler() as gpu:
            stats = model.run(source, _discard, loader_threads=loader_threads)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    return {
        "images": stats.images,
        "seconds": round(stats.total_s, 2),
        "images_per_s": stats.images / stats.total_s,
        "gpu_utilisation_pct": gpu.mean_utilisation,
        "peak_gpu_memory_gib": memory["peak_gib"],
        "batch_auto_initial": initial,
        "batch_final": stats.batch_size,
        "oom_backoffs": stats.oom_backoffs,
        "loader_wait_s": round(stats.wait_s, 2),
        "device": model.device.type,
        "dtype": str(model.dtype).removeprefix("torch."),
        "loader_threads": loader_threads,
    }


def bare_loop(model: BatchedModel, reader: TierReader, target_s: float) -> float:
    """Images/s of ``predict_batch`` alone over a few batches already on the device, in the
    model's dtype, repeated for about ``target_s`` (no loader, no postprocess, no host copy)."""
    size = model.batch_size
    source = RepeatedTierBatches(reader, model.image_tier, 4 * size)
    batches = []
    for start in range(0, source.n_rows, size):
        inputs = model.preprocess(source.read(start, start + size)).to(model.device)
        batches.append(inputs.to(model.dtype) if inputs.is_floating_point() else inputs)
    with torch.inference_mode():
        for inputs in batches:  # untimed: first-call costs of these shapes and thread counts
            model.predict_batch(inputs)
        synchronize()
        images, began = 0, time.perf_counter()
        while True:
            for inputs in batches:
                model.predict_batch(inputs)
                images += len(inputs)
            synchronize()
            if time.perf_counter() - began >= target_s:
                break
    return images / (time.perf_counter() - began)


def fixed_batch(reader: TierReader, tier: str, n: int) -> RowBatch:
    """The first ``n`` stored images of ``tier`` as one batch."""
    return RepeatedTierBatches(reader, tier, n).read(0, n)


def pair(
    change: str,
    before: str,
    before_value: float,
    after: str,
    after_value: float,
    unit: str = "images/s",
) -> dict[str, Any]:
    """One change's before and after, measured in the same run (a section's ``before_after``
    list; the report's first table)."""
    ratio = after_value / before_value if before_value else None
    return {"change": change, "before": before, "before_value": before_value, "after": after,
            "after_value": after_value, "unit": unit, "after_over_before": ratio}  # fmt: skip
