"""Embedding benchmark: the batched model runtime on a real-size CLIP model vs naive use.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``, so
``common`` imports directly; ``imganalyzer`` comes from the editable install):

    .venv/bin/python bench/bench_embedding.py            # about 1.5 minutes on 2 cores
    .venv/bin/python bench/bench_embedding.py --quick    # smoke test: fewer images, 1 repeat

A real-size open_clip ViT-B-32 with random weights (saved to a file and loaded back the way
real weights are: nothing is downloaded) embeds a synthetic shard stored as a real clip tier
(384 px JPEG chunks in Zarr), through ``ClipEmbedder.run`` exactly as a shard job does.
Measured, as figures and ratios taken in this one run (no assertions):

1. images/s at batch 1 vs 16 (``auto`` on CPU) vs 32;
2. the background loader on (prefetch 2) vs off (read + preprocess, then predict, serially),
   on this CPU and against a simulated GPU (predict replaced by a wait as long as a GPU at
   clip-retrieval's 312 images/s for ViT-L/14 takes, holding no CPU);
3. model load plus a fresh job process's imports as a share of a shard job at shard_size
   1000, extrapolated from per-image costs measured on ~100 images, and the images per job
   that keep it at 5% (here, and projected for ViT-L/14 on a GPU).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from common import (
    Row,
    bench_parser,
    machine_description,
    measure,
    ms_row,
    publish,
    rate_row,
    ratio_row,
)
from PIL import Image
from skimage import data

from imganalyzer.config import default_config
from imganalyzer.decode.tiers import TierReader, TierWriter
from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings
from imganalyzer.runtime.batched import RunStats
from imganalyzer.runtime.batches import RowBatch, TierBatches

MODEL = "ViT-B-32"
MODEL_PARAMS = 151e6
CLIP_TIER = {"clip": 384}
SHARD_SIZE = default_config()["shard_size"]
LOAD_BUDGET = 0.05  # model load (and imports) at most 5% of a job
# clip-retrieval's ViT-L/14 throughput on an A100: the anchor for a GPU.
GPU_IMAGES_PER_S = 312
# ViT-L/14 (428 M parameters) vs ViT-B/32 (151 M): load time (bytes read, tensors built and
# initialised) scales with parameters, so the GPU projection scales the load measured here.
VIT_L_OVER_B32 = 428e6 / MODEL_PARAMS
# The simulated GPU reads the shard this many times over: enough batches that the first
# (which nothing can overlap) does not dominate.
SIMULATED_PASSES = 5


def log(message: str) -> None:
    print(message, flush=True)


def synthetic_photos(n: int) -> list[np.ndarray]:
    """Crops, flips and scales of scikit-image's photos, of varied aspect ratios."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    photos = []
    for i in range(n):
        rgb = sources[i % len(sources)]
        height, width = rgb.shape[:2]
        top, left = rng.integers(0, height // 4), rng.integers(0, width // 4)
        crop = rgb[top : top + height * 3 // 4, left : left + width * 3 // 4]
        crop = np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop)
        scale = rng.uniform(0.8, 1.6)
        size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
        photos.append(np.asarray(Image.fromarray(crop).resize(size)))
    return photos


def write_tier_store(path: Path, photos: list[np.ndarray]) -> TierReader:
    side = CLIP_TIER["clip"]
    with TierWriter(path, n_images=len(photos), tiers=CLIP_TIER) as writer:
        for index, rgb in enumerate(photos):
            image = Image.fromarray(rgb)
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
            writer.write(index, {"clip": np.asarray(image)})
    return TierReader(path)


class Prefix:
    """The first ``n_rows`` rows of a source."""

    def __init__(self, source: TierBatches, n_rows: int) -> None:
        self.source, self.n_rows = source, n_rows

    def read(self, start: int, stop: int):
        return self.source.read(start, min(stop, self.n_rows))


class Repeated:
    """A source's rows ``times`` times over (a longer run without a larger store)."""

    def __init__(self, source: TierBatches, times: int) -> None:
        self.source, self.n_rows = source, source.n_rows * times

    def read(self, start: int, stop: int) -> RowBatch:
        n, parts = self.source.n_rows, []
        for offset in range(start - start % n, stop, n):
            part = self.source.read(max(start, offset) - offset, min(stop, offset + n) - offset)
            parts.append(RowBatch(part.indices + offset, part.data, part.sizes))
        return RowBatch(
            np.concatenate([part.indices for part in parts]),
            np.concatenate([part.data for part in parts]),
            np.concatenate([part.sizes for part in parts]),
        )


class SimulatedGpuEmbedder(ClipEmbedder):
    """The real loader and preprocessing; predict waits as long as a GPU at GPU_IMAGES_PER_S
    would take, holding no CPU (like a GPU kernel)."""

    def predict_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        time.sleep(len(inputs) / GPU_IMAGES_PER_S)
        return torch.zeros(len(inputs), self.dim)


def measure_runs(embedder, source, batch_size: int, repeats: int, prefetch: int = 2):
    """-> (Timing over ``repeats`` runs, RunStats of the fastest)."""
    stats: list[RunStats] = []

    def one_run() -> None:
        embedder.batch_size = batch_size
        stats.append(embedder.run(source, lambda indices, vectors: None, prefetch=prefetch))

    timing = measure(one_run, repeats)
    return timing, stats[timing.runs.index(timing.best)]


def measure_loader(embedder: ClipEmbedder, source: TierBatches, repeats: int):
    """Timing of reading and preprocessing every image on one thread (a loader's work)."""

    def load_all() -> None:
        for start in range(0, source.n_rows, 32):
            embedder.preprocess(source.read(start, min(start + 32, source.n_rows)))

    return measure(load_all, repeats)


def fresh_process_import_s() -> float:
    """Seconds a new job process spends importing torch, open_clip and the module."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import imganalyzer.modules.embedding"], check=True)
    return time.perf_counter() - started


def images_per_job_for_budget(overhead_s: float, images_per_s: float) -> int:
    """Fewest images per job whose fixed overhead is at most LOAD_BUDGET of the job."""
    return math.ceil(overhead_s * images_per_s * (1 - LOAD_BUDGET) / LOAD_BUDGET)


def waits(stats: RunStats) -> str:
    return (
        f"model waited {stats.wait_s:.2f} s for the loader after the first batch "
        f"(first {stats.first_wait_s:.2f} s), predicting {stats.predict_s:.2f} s"
    )


def run(quick: bool) -> list[Row]:
    n_images, n_single, repeats = (40, 8, 1) if quick else (96, 16, 2)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    log(f"{MODEL}, random weights, CPU, torch threads = {threads} cores; {n_images} images")
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-") as tmp:
        weights = Path(tmp) / f"{MODEL}.pt"
        torch.save(open_clip.create_model(MODEL, pretrained=None).state_dict(), weights)
        source = TierBatches(
            write_tier_store(Path(tmp) / "t.zarr", synthetic_photos(n_images)), "clip"
        )
        settings = {"model": MODEL, "pretrained": str(weights), "device": "cpu", "batch_size": 32}
        embedder = ClipEmbedder(EmbeddingSettings.defaults(**settings))
        embedder.load()
        load_s, import_s = embedder.stats.load_s, fresh_process_import_s()
        for batch_size in (1, 16, 32):  # warm-up: kernels for each batch shape, allocator
            measure_runs(embedder, Prefix(source, batch_size), batch_size, 1)
        log("batch size 1 / 16 / 32 ...")
        one, _ = measure_runs(embedder, Prefix(source, n_single), 1, repeats)
        sixteen, _ = measure_runs(embedder, source, 16, repeats)
        on, on_stats = measure_runs(embedder, source, 32, repeats)
        log("loader off ...")
        off, off_stats = measure_runs(embedder, source, 32, repeats, prefetch=0)
        loader = measure_loader(embedder, source, repeats + 1)
        loader_s = loader.best / n_images
        log("simulated GPU ...")
        gpu = SimulatedGpuEmbedder(EmbeddingSettings.defaults(**settings))
        gpu.load()
        long_source = Repeated(source, SIMULATED_PASSES)
        gpu_on, gpu_on_stats = measure_runs(gpu, long_source, 32, repeats)
        gpu_off, gpu_off_stats = measure_runs(gpu, long_source, 32, repeats, prefetch=0)

    n = n_images
    rows = [
        Row(
            "model load: build + read checkpoint",
            load_s,
            "s",
            f"{MODEL_PARAMS * 4 / 2**20:.0f} MiB fp32",
        ),
        Row("imports in a fresh job process", import_s, "s", "torch, open_clip, zarr"),
        rate_row("batch 1", one, n_single),
        rate_row("batch 16 (auto on CPU)", sixteen, n),
        rate_row("batch 32", on, n),
        ratio_row("batch 32 / batch 1", n / on.best, n_single / one.best),
        ratio_row("batch 32 / batch 16", n / on.best, n / sixteen.best),
        rate_row("CPU: loader on (prefetch 2)", on, n, waits(on_stats)),
        rate_row("CPU: loader off (serial)", off, n, waits(off_stats)),
        ratio_row("CPU: loader on / off", off.best, on.best, "the loader competes for the 2 cores"),
        ms_row("loader per image: read, decode, preprocess", loader, n, "one thread"),
        rate_row("simulated GPU: loader on", gpu_on, n * SIMULATED_PASSES, waits(gpu_on_stats)),
        rate_row("simulated GPU: loader off", gpu_off, n * SIMULATED_PASSES, waits(gpu_off_stats)),
        ratio_row("simulated GPU: loader on / off", gpu_off.best, gpu_on.best),
    ]
    return rows + shard_size_rows(load_s, import_s, n / on.best, loader_s)


def shard_size_rows(load_s: float, import_s: float, cpu_rate: float, loader_s: float) -> list[Row]:
    overhead = load_s + import_s
    cpu_job = overhead + SHARD_SIZE / cpu_rate
    gpu_overhead = load_s * VIT_L_OVER_B32 + import_s
    gpu_job = gpu_overhead + SHARD_SIZE / GPU_IMAGES_PER_S
    projected = f"ViT-L/14 at {GPU_IMAGES_PER_S}/s, load x{VIT_L_OVER_B32:.1f}, CUDA init excluded"
    return [
        Row(f"CPU: job of {SHARD_SIZE} images", cpu_job, "s", "extrapolated per image"),
        Row("CPU: load + imports share of it", 100 * overhead / cpu_job, "%"),
        Row(
            f"CPU: images per job for <= {LOAD_BUDGET:.0%}",
            images_per_job_for_budget(overhead, cpu_rate),
            "images",
        ),
        Row(
            f"GPU: load + imports share at {SHARD_SIZE}",
            100 * gpu_overhead / gpu_job,
            "%",
            projected,
        ),
        Row(
            f"GPU: images per job for <= {LOAD_BUDGET:.0%}",
            images_per_job_for_budget(gpu_overhead, GPU_IMAGES_PER_S),
            "images",
            projected,
        ),
        Row(
            f"GPU: loader threads to feed {GPU_IMAGES_PER_S}/s",
            math.ceil(GPU_IMAGES_PER_S * loader_s),
            "threads",
            "at this CPU's per-image loader cost",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "fewer images, 1 repeat")
    args = parser.parse_args(argv)
    if not args.json:
        log(machine_description())
    rows = run(args.quick)
    title = f"embedding ({MODEL} random weights, CPU{', --quick' if args.quick else ''})"
    publish(title, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
