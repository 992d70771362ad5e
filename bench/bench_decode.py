"""Decode benchmarks on generated 24 MP JPEG and DNG files: optimised path vs the naive one.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``, so
``common`` imports directly; ``imganalyzer`` comes from the editable install):

    .venv/bin/python bench/bench_decode.py            # full run, about 2-3 minutes on 2 cores
    .venv/bin/python bench/bench_decode.py --quick    # smoke test: 6 MP, few images, 1 repeat

Measured, each printed as figures and ratios taken in this one run (no assertions):

1. Decode-once shard jobs (``run_metadata_shard`` + ``run_decode_shard``, which also write the
   Zarr tiers, thumbnails and result files) vs the naive path of the old tool (OPP-1/3/7/8):
   four consumers per image (metadata, technical, "detect 1024", "clip 384") each open and
   fully decode the original, then shrink it to what they need; nothing is written.
2. JPEG: DCT-scaled draft decode (``decode_image``) vs full decode + resize to 1024 px.
3. RAW: embedded preview vs ``half_size=True`` demosaic vs full ``postprocess()``.
4. Header-only metadata (``read_metadata``) vs full decode + ``getexif()``.

Images are written to a temporary folder (deleted at the end) and stay in the page cache:
these are decode (CPU) figures, not disk figures. Times are the best of N runs (median in the
note) because the machine is shared and noisy.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rawpy
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
from PIL import ExifTags, Image
from skimage import data

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.config import default_config
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.readers import decode_image
from imganalyzer.decode.technical import analyze_technical
from imganalyzer.example.writers import ExifInfo, write_dng, write_jpeg

TIERS = default_config()["tiers"]
MAX_PIXELS = 200_000_000
JPEG_QUALITY = 92
# Adobe DNG Converter's default "medium size" preview; the decode job needs 1024 px.
DNG_PREVIEW_LONG_EDGE = 1024
# Uniform luma noise of +-8 levels (sigma ~4.9): makes q92 JPEGs of the upscaled photos
# about as large as a 24 MP camera JPEG (7-8 MB) instead of 3-4 MB for the smooth upscale.
NOISE_AMPLITUDE = 8


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- test images


def base_photos(width: int, height: int) -> list[np.ndarray]:
    """scikit-image photos cropped to the target aspect ratio and upscaled with LANCZOS."""
    photos = []
    for photo in (data.astronaut(), data.coffee(), data.chelsea()):
        image = Image.fromarray(photo)
        crop_h = min(image.height, round(image.width * height / width))
        crop_w = round(crop_h * width / height)
        left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
        photos.append(np.asarray(image.resize((width, height), Image.Resampling.LANCZOS)))
    return photos


def noisy(photo: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, photo.shape[:2], dtype=np.int16)
    pixels = photo.astype(np.int16)
    pixels += noise[..., None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def exif_for(index: int) -> ExifInfo:
    return ExifInfo(
        make="Canon",
        model="Canon EOS R6",
        lens="RF24-105mm F4 L IS USM",
        datetime_original=f"2024:05:{1 + index % 28:02d} 12:{index % 60:02d}:00",
        offset="+02:00",
        exposure_time=1 / 250,
        f_number=5.6,
        iso=400,
        focal_length=50.0,
        focal_length_35mm=50,
        gps=(48.8583, 2.2945, 35.0),
        orientation=1,
    )


def generate(library: Path, size: tuple[int, int], n_jpeg: int, n_dng: int) -> dict:
    """Write the test images; returns their paths relative to ``library``."""
    photos = base_photos(*size)
    jpegs, dngs = [], []
    for index, photo in zip(range(n_jpeg), itertools.cycle(photos), strict=False):
        rel = f"jpeg/IMG_{index:04d}.JPG"
        write_jpeg(library / rel, noisy(photo, index), exif_for(index), quality=JPEG_QUALITY)
        jpegs.append(rel)
    for index, photo in zip(range(n_dng), itertools.cycle(photos), strict=False):
        rel = f"dng/RAW_{index:04d}.DNG"
        pixels = noisy(photo, 1000 + index)
        write_dng(library / rel, pixels, exif_for(index), preview_long_edge=DNG_PREVIEW_LONG_EDGE)
        dngs.append(rel)
    no_preview = "dng-no-preview/RAW_NP.DNG"
    write_dng(library / no_preview, noisy(photos[0], 2000), exif_for(0), preview_long_edge=None)
    return {"jpeg": jpegs, "dng": dngs, "dng_no_preview": no_preview}


def mean_mb(library: Path, rels: list[str]) -> float:
    return sum(os.path.getsize(library / r) for r in rels) / len(rels) / 1e6


# ----------------------------------------------------------------------------- naive path


def full_decode(path: Path) -> Image.Image:
    """What the old tool's ``_read_image`` did: the whole image, every time."""
    if path.suffix.lower() == ".dng":
        with rawpy.imread(str(path)) as raw:
            return Image.fromarray(raw.postprocess(use_camera_wb=True, output_bps=8))
    with Image.open(path) as image:
        return image.convert("RGB")


def naive_metadata(path: Path) -> dict:
    full_decode(path)  # the old metadata module went through _read_image too
    with Image.open(path) as image:
        exif = image.getexif()
        return {**exif, **exif.get_ifd(ExifTags.IFD.Exif)}


def naive_resized(path: Path, long_edge: int) -> np.ndarray:
    image = full_decode(path)
    image.thumbnail((long_edge, long_edge))  # already decoded: no draft() shortcut here
    return np.asarray(image)


def naive_image(path: Path) -> None:
    """The four consumers of one image, each with its own full decode (OPP-1/3/7/8)."""
    naive_metadata(path)
    analyze_technical(naive_resized(path, 1024))  # technical
    naive_resized(path, TIERS["detect"])  # objects / faces
    naive_resized(path, TIERS["clip"])  # CLIP / captions


# ----------------------------------------------------------------------------- decode once


class DecodeOnce:
    """Runs the real shard jobs on one manifest, into a fresh output folder per run."""

    def __init__(self, library: Path, work: Path, rels: list[str], name: str) -> None:
        self.library, self.work, self.name = library, work, name
        self.manifest = work / f"{name}.tsv"
        entries = []
        for rel in rels:
            st = os.stat(library / rel)
            entries.append(Entry(rel, st.st_size, st.st_mtime_ns))
        write_manifest(self.manifest, entries)
        self.runs = itertools.count()
        self.last_out: Path | None = None

    def __call__(self, threads: int) -> None:
        out = self.work / f"{self.name}-out-{next(self.runs)}"
        out.mkdir()
        run_metadata_shard(self.manifest, self.library, out / "metadata.jsonl", threads=threads)
        run_decode_shard(
            self.manifest,
            self.library,
            tiers_out=out / "tiers.zarr",
            technical_out=out / "technical.jsonl",
            thumbnails_out=out / "thumbnails.zip",
            tiers=TIERS,
            max_pixels=MAX_PIXELS,
            threads=threads,
        )
        self.last_out = out

    def decoders(self) -> str:
        """The decode methods the last run used, checking every row succeeded."""
        methods = set()
        for name in ("metadata.jsonl", "technical.jsonl"):
            for line in (self.last_out / name).read_text().splitlines():
                row = json.loads(line)
                if row["status"] != "ok":
                    raise RuntimeError(f"{name}: {row['path']}: {row.get('error')}")
                methods.add(row.get("decoder"))
        return ",".join(sorted(m for m in methods if m))


def aliases(library: Path, rels: list[str], copies: int) -> list[str]:
    """``rels`` plus ``copies - 1`` hard links of each under other names (no extra disk)."""
    names = list(rels)
    for copy, rel in itertools.product(range(1, copies), rels):
        alias = rel.replace(".", f"_alias{copy}.", 1)
        try:
            os.link(library / rel, library / alias)
        except OSError:
            shutil.copyfile(library / rel, library / alias)
        names.append(alias)
    return names


def bench_shard(
    kind: str, library: Path, work: Path, naive_rels: list[str], once_rels: list[str], reps: dict
) -> list[Row]:
    """Section 1 for one format: naive single-thread vs decode-once with 1 and 2 threads.

    Rates are per image; the decode-once manifest may be longer than the naive image list
    (hard-linked aliases) so that the fixed cost of a shard job (creating the Zarr store,
    the thumbnail zip, the result files: ~80 ms) does not dominate a very fast job.
    """
    n, m = len(naive_rels), len(once_rels)
    paths = [library / r for r in naive_rels]
    once = DecodeOnce(library, work, once_rels, kind)
    once(threads=1)  # warm-up: first zarr store, codec set-up, thread pool
    naive_image(paths[0])

    log(f"[{kind}] naive: {n} images x 4 full decodes ...")
    naive = measure(lambda: [naive_image(p) for p in paths], reps["naive"])
    log(f"[{kind}] decode-once on {m} images, threads=1 and threads=2 ...")
    one = measure(lambda: once(threads=1), reps["once"])
    two = measure(lambda: once(threads=2), reps["once"])
    files = f"{m} files" if m == n else f"{m} files ({n} images under {m // n} names each)"
    naive_cpu, once_cpu = naive.best_cpu / n, one.best_cpu / m
    return [
        rate_row(f"{kind}: naive (4 full decodes/image, 1 thread)", naive, n, f"{n} images"),
        rate_row(f"{kind}: decode-once jobs, threads=1", one, m, f"{files}, {once.decoders()}"),
        rate_row(f"{kind}: decode-once jobs, threads=2", two, m),
        ratio_row(
            f"{kind}: decode-once t=1 vs naive", m / one.best, n / naive.best, "same CPU budget"
        ),
        ratio_row(f"{kind}: decode-once t=2 vs naive", m / two.best, n / naive.best),
        ratio_row(
            f"{kind}: CPU seconds naive / decode-once t=1",
            naive_cpu,
            once_cpu,
            f"{naive_cpu * 1e3:.0f} vs {once_cpu * 1e3:.0f} ms CPU per image",
        ),
    ]


# ----------------------------------------------------------------------------- sections 2-4


def bench_jpeg_draft(paths: list[Path], repeats: int) -> list[Row]:
    n = len(paths)
    full = measure(lambda: [full_decode(p) for p in paths], repeats)
    full_resize = measure(lambda: [naive_resized(p, 1024) for p in paths], repeats)
    draft = measure(lambda: [decode_image(p, 1024, MAX_PIXELS) for p in paths], repeats)
    return [
        ms_row("jpeg: full decode (Pillow convert RGB)", full, n),
        ms_row("jpeg: full decode + thumbnail(1024)", full_resize, n),
        ms_row("jpeg: decode_image draft -> 1024", draft, n, "DCT scale 1/4 + LANCZOS"),
        ratio_row("jpeg: full+resize vs draft decode", full_resize.best, draft.best),
    ]


def bench_raw(preview: Path, no_preview: Path, repeats: int) -> list[Row]:
    methods = {p: decode_image(p, 1024, MAX_PIXELS).method for p in (preview, no_preview)}
    if methods != {preview: "raw-preview", no_preview: "raw-half-size"}:
        raise RuntimeError(f"unexpected decode methods {methods}")
    from_preview = measure(lambda: decode_image(preview, 1024, MAX_PIXELS), repeats * 10)
    half = measure(lambda: decode_image(no_preview, 1024, MAX_PIXELS), repeats)
    full = measure(lambda: full_decode(preview), repeats)
    return [
        ms_row("raw: decode_image, embedded preview", from_preview, 1, "raw-preview -> 1024"),
        ms_row("raw: decode_image, half_size demosaic", half, 1, "raw-half-size -> 1024"),
        ms_row("raw: rawpy full postprocess", full, 1, "no resize"),
        ratio_row("raw: full postprocess vs preview", full.best, from_preview.best),
        ratio_row("raw: full postprocess vs half_size", full.best, half.best),
        ratio_row("raw: half_size vs preview", half.best, from_preview.best),
    ]


def bench_metadata(jpegs: list[Path], dng: Path, repeats: int) -> list[Row]:
    n = len(jpegs)
    header = measure(lambda: [read_metadata(p) for p in jpegs], repeats * 5)
    decoded = measure(lambda: [naive_metadata(p) for p in jpegs], repeats)
    dng_header = measure(lambda: read_metadata(dng), repeats * 10)
    dng_decoded = measure(lambda: naive_metadata(dng), repeats)
    return [
        ms_row("metadata jpeg: read_metadata (header only)", header, n),
        ms_row("metadata jpeg: full decode + getexif", decoded, n),
        ratio_row("metadata jpeg: decode-based vs header-only", decoded.best, header.best),
        ms_row("metadata dng: read_metadata (header only)", dng_header),
        ms_row("metadata dng: full postprocess + getexif", dng_decoded),
        ratio_row("metadata dng: decode-based vs header-only", dng_decoded.best, dng_header.best),
    ]


# ----------------------------------------------------------------------------- main


def run(quick: bool) -> list[Row]:
    size = (3000, 2000) if quick else (6000, 4000)
    n_jpeg, n_dng = (3, 1) if quick else (12, 4)
    reps = {"naive": 1, "once": 1} if quick else {"naive": 2, "once": 5}
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-decode-") as tmp:
        library, work = Path(tmp) / "library", Path(tmp) / "work"
        work.mkdir()
        log(f"generating {n_jpeg} JPEG + {n_dng + 1} DNG at {size[0]}x{size[1]} in {tmp} ...")
        start = time.perf_counter()
        rels = generate(library, size, n_jpeg, n_dng)
        log(
            f"  done in {time.perf_counter() - start:.1f} s: "
            f"JPEG q{JPEG_QUALITY} {mean_mb(library, rels['jpeg']):.1f} MB, "
            f"DNG {mean_mb(library, rels['dng']):.1f} MB "
            f"({DNG_PREVIEW_LONG_EDGE} px JPEG preview) on average"
        )
        jpegs = [library / r for r in rels["jpeg"]]
        dng, no_preview = library / rels["dng"][0], library / rels["dng_no_preview"]

        dng_once = aliases(library, rels["dng"], copies=1 if quick else 4)
        rows = bench_shard("jpeg", library, work, rels["jpeg"], rels["jpeg"], reps)
        rows += bench_shard("dng", library, work, rels["dng"], dng_once, {**reps, "naive": 1})
        log("draft decode vs full decode ...")
        rows += bench_jpeg_draft(jpegs[:4], repeats)
        log("RAW: preview vs half size vs full ...")
        rows += bench_raw(dng, no_preview, repeats)
        log("metadata: header only vs decode ...")
        rows += bench_metadata(jpegs[:4], dng, repeats)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "6 MP, few images, 1 repeat")
    args = parser.parse_args(argv)
    if not args.json:
        log(machine_description())
    rows = run(args.quick)
    title = f"decode ({'6 MP, --quick' if args.quick else '24 MP'} JPEG / DNG)"
    publish(title, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
