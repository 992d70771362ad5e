"""Projected time for a 500K-image library on 16 cores + one GPU, from measured costs.

Run from the repository root: ``.venv/bin/python bench/bench_projection.py [--quick]``.
Measures, on this machine and one core, the CPU seconds per image of the real shard jobs
(decode-once + metadata) on generated 24 MP JPEGs, 24 MP DNGs with an embedded preview
and 12 MP HEICs, then projects the library mix of the issue (40% RAW, 50% JPEG, 10%
HEIC). GPU throughputs are assumptions (public figures; no GPU was lent to this
project's runs) and are printed as such, next to every measured figure.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Row, publish
from PIL import Image
from skimage import data

from imganalyzer.catalog import Entry, write_manifest
from imganalyzer.samples import write_dng, write_heic, write_jpeg
from imganalyzer.shardjobs import run_decode_shard, run_metadata_shard

LIBRARY = 500_000
MIX = {"raw": 0.4, "jpeg": 0.5, "heic": 0.1}
CORES = 16
# Assumed GPU throughputs (images/s) on one H100-class GPU, per model module. Only the
# embedding module exists today; its figure is clip-retrieval's ViT-L/14 on an A100 (312/s).
GPU_ASSUMED = {
    "embedding (ViT-L/14, clip-retrieval A100 figure)": 312,
    "objects (GroundingDINO-T, not built yet)": 60,
    "captions + 4 answers (BLIP-2, features once, not built yet)": 40,
    "faces (InsightFace on the tier, not built yet)": 200,
    "ocr (rapidocr, 10% of images flagged, not built yet)": 300,
}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 images per format")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
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
    gpu_wall = 0.0
    for module, rate in GPU_ASSUMED.items():
        images = LIBRARY * (0.1 if module.startswith("ocr") else 1.0)
        gpu_wall += images / rate
        rows.append(Row(f"assumed: {module}", rate, "images/s"))
    rows.append(Row("projected: GPU stage wall time", gpu_wall / 3600, "h", "one GPU, assumed"))
    rows.append(
        Row(
            "projected: whole library (stages overlap)",
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
