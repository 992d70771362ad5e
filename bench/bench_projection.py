"""Projected time for a 500K-image library on 16 cores + one GPU, from measured costs.

Run from the repository root: ``.venv/bin/python bench/bench_projection.py [--quick]
[--gpu-json bench/gpu/results/<run>.json ...]``. Measures, on this machine and one core,
the CPU seconds per image of the real shard jobs (decode-once + metadata) on generated
24 MP JPEGs, 24 MP DNGs with an embedded preview and 12 MP HEICs, then projects the library
mix of the issue (40% RAW, 50% JPEG, 10% HEIC). GPU throughputs come from the GPU kit's
JSON where given (its ``projection`` rates, or, for older files, each module's images/s;
later files override earlier ones), else from an assumption, and each row says which.
Faces run on the images with people and OCR on the images with text (``--people-share``,
``--text-share``: assumptions, stated in the output). Captions are projected twice: at
realistic lengths (about 10 tokens a caption, 2 an answer) and at the worst case (every
text runs to max_new_tokens, as with random weights).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Row, publish
from PIL import Image
from skimage import data

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.example.writers import write_dng, write_heic, write_jpeg

LIBRARY = 500_000
MIX = {"raw": 0.4, "jpeg": 0.5, "heic": 0.1}
CORES = 16
# Assumed GPU throughputs (images/s) on one H100-class GPU, used where the GPU kit measured
# none: embedding is clip-retrieval's ViT-L/14 figure on an A100.
GPU_ASSUMED = {
    "embedding": 312,
    "objects": 60,
    "captions_realistic": 40,
    "captions_worst": 40,
    "faces": 200,
    "ocr": 300,
}
# Shares of the library the gated modules read (assumptions): faces run on the images
# objects flagged has_person (people are in about half of a family library's photos), OCR
# on those flagged has_text.
PEOPLE_SHARE = 0.5
TEXT_SHARE = 0.1
TIERS = {"detect": 1024, "clip": 384}


def photo(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(data.coffee()).resize((width, height), Image.LANCZOS))
    noise = rng.normal(0, 4, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def build(library: Path, kind: str, count: int) -> list[Entry]:
    entries = []
    for index in range(count):
        name = f"{kind}/{index:03d}"
        if kind == "jpeg":
            path = write_jpeg(library / f"{name}.jpg", photo(6000, 4000, index), quality=92)
        elif kind == "raw":
            path = write_dng(
                library / f"{name}.dng", photo(6000, 4000, index), preview_long_edge=1600
            )
        else:
            path = write_heic(library / f"{name}.heic", photo(4000, 3000, index))
        st = path.stat()
        entries.append(Entry(str(path.relative_to(library)), st.st_size, st.st_mtime_ns))
    return entries


def cpu_seconds_per_image(library: Path, entries: list[Entry], out: Path) -> float:
    manifest = out / "m.tsv"
    write_manifest(manifest, entries)
    before = resource.getrusage(resource.RUSAGE_SELF)
    run_metadata_shard(manifest, library, out / "meta.jsonl", threads=1)
    run_decode_shard(
        manifest, library, out / "t.zarr", out / "tech.jsonl", out / "th.zip", TIERS, threads=1
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / len(entries)


def measured_gpu_rates(paths: list[str]) -> dict[str, tuple[float, str]]:
    """Rate key (GPU_ASSUMED's) -> (images/s, where measured) from GPU kit JSON files: a
    file's ``projection`` rates, or for an older file the images/s of each module that ran
    on a GPU (captions then only at the worst case; faces on onnxruntime's CPU provider is
    not a GPU figure)."""
    rates: dict[str, tuple[float, str]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        where = f"measured on {results.get('machine', {}).get('gpu', 'a GPU')}"
        where += f" ({Path(path).name})"
        for key, rate in results.get("projection", {}).items():
            rates[key] = (rate["images_per_s"], f"{where}, {rate['how']}")
        if results.get("projection"):
            continue
        for module, row in results.get("modules", {}).items():
            key = "captions_worst" if module == "captions" else module
            if key in GPU_ASSUMED and row.get("device") == "cuda" and row.get("images_per_s"):
                rates[key] = (row["images_per_s"], where)
    return rates


def gpu_rows(
    measured: dict[str, tuple[float, str]], people: float, text: float
) -> tuple[list[Row], dict[str, float]]:
    """The rows of every GPU rate, and the GPU stage's seconds with realistic and with
    worst-case caption lengths."""
    shares = {"faces": people, "ocr": text}
    if "captions_realistic" not in measured and "captions_worst" in measured:
        rate, source = measured["captions_worst"]  # a file without a realistic run: at most
        measured = {**measured, "captions_realistic": (rate, f"{source}, worst-case lengths")}
    rows, seconds = [], {"realistic": 0.0, "worst": 0.0}
    for key, assumed in GPU_ASSUMED.items():
        rate, source = measured.get(key, (assumed, "assumed"))
        share = shares.get(key, 1.0)
        note = f"on {share:.0%} of images" if share < 1 else ""
        rows.append(Row(f"{source}: {key}", rate, "images/s", note))
        for lengths in seconds:
            if key.startswith("captions") and key != f"captions_{lengths}":
                continue
            seconds[lengths] += LIBRARY * share / rate
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 images per format")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    parser.add_argument(
        "--gpu-json", nargs="+", default=[], metavar="PATH", help="GPU kit results (gpu_kit.json)"
    )
    parser.add_argument("--people-share", type=float, default=PEOPLE_SHARE)
    parser.add_argument("--text-share", type=float, default=TEXT_SHARE)
    args = parser.parse_args()
    count = 2 if args.quick else 4
    rows, cpu_total = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "library"
        for kind in MIX:
            entries = build(library, kind, count)
            seconds = cpu_seconds_per_image(library, entries, Path(tmp) / f"out-{kind}")
            images = LIBRARY * MIX[kind]
            cpu_total += seconds * images
            rows.append(Row(f"measured: CPU s/image, {kind}", seconds, "s", f"{count} images"))
    cpu_wall = cpu_total / CORES
    rows.append(Row("projected: CPU stage wall time", cpu_wall / 3600, "h", f"{CORES} cores"))
    module_rows, gpu_walls = gpu_rows(
        measured_gpu_rates(args.gpu_json), args.people_share, args.text_share
    )
    rows += module_rows
    for lengths, gpu_wall in gpu_walls.items():
        note = f"one GPU, captions at {lengths} lengths"
        rows.append(Row(f"projected: GPU stage wall time ({lengths})", gpu_wall / 3600, "h", note))
        rows.append(
            Row(
                f"projected: whole library ({lengths} caption lengths; stages overlap)",
                max(cpu_wall, gpu_wall) / 3600,
                "h",
                f"sum if they did not overlap: {(cpu_wall + gpu_wall) / 3600:.1f} h",
            )
        )
    title = f"projection: {LIBRARY:,} images (40% RAW, 50% JPEG, 10% HEIC), {CORES} cores + 1 GPU"
    publish(title, rows, args.json)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
