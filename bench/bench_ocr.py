"""OCR benchmark: RapidOCR's real bundled PP-OCR models on rendered documents and captioned photos,
and bounded vs full-resolution reading of a large document (OPP-3.9).

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``):

    .venv/bin/python bench/bench_ocr.py            # about 3 minutes on 2 cores
    .venv/bin/python bench/bench_ocr.py --quick    # smoke test: fewer and smaller images

Every figure goes through ``run_model_job`` exactly as a model job does (objects rows flag every
image as holding text; files are JPEG q90 in a temporary library). Measured, in this one run:

1. images/s on text-heavy pages (~1600 x 2000 px, ~36 lines each, read at the 2048 px bound;
   the 64-region cap leaves every line in) and on skimage's photos with a caption rendered on
   them, model load excluded (reported apart);
2. two images at a time with one ONNX Runtime thread each (the job's choice) vs one image at a
   time with both cores in ONNX Runtime's intra-op pool, on the pages;
3. a 6000 x 4000 rendered document read bounded (``max_side`` 2048) vs at full resolution,
   each in a fresh process: seconds and peak resident memory, and how many of the bounded
   run's lines read exactly as at full resolution.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Row, bench_parser, machine_description, publish, ratio_row
from PIL import Image, ImageDraw, ImageFont
from skimage import data

import imganalyzer.modules.ocr as ocr
import imganalyzer.modules.ocr_backends as ocr_backends
from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, read_rows, write_rows
from imganalyzer.runtime.job import run_model_job

WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "photo", "library",
    "analysis", "text", "line", "page", "invoice", "total", "amount", "date", "number", "street",
    "station", "museum", "open", "daily", "closed", "menu", "coffee", "2024", "1987",
)  # fmt: skip
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PHOTOS = ("astronaut", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina")
BOUND = 2048


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def font(size: int) -> ImageFont.FreeTypeFont:
    if Path(DEJAVU).exists():
        return ImageFont.truetype(DEJAVU, size)
    return ImageFont.load_default(size=size)


def random_lines(rng: np.random.Generator, n: int, words: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, words)) for _ in range(n)]


def document(size: tuple[int, int], font_size: int, seed: int) -> Image.Image:
    """A white page filled with lines of random words, one line every 1.6 font sizes."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    face = font(font_size)
    margin, step = font_size * 2, int(font_size * 1.6)
    n_lines = (size[1] - 2 * margin) // step
    for index, text in enumerate(random_lines(rng, n_lines, 7)):
        draw.text((margin, margin + index * step), text, fill="black", font=face)
    return page


def captioned_photo(name: str, seed: int) -> Image.Image:
    """An skimage photo, upscaled to ~1200 px, with a caption in a white band."""
    rgb = getattr(data, name)()
    rgb = rgb[0] if isinstance(rgb, tuple) else rgb  # a stereo pair: its left image
    photo = Image.fromarray(rgb).convert("RGB")
    photo = photo.resize((1200, round(1200 * photo.height / photo.width)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(photo)
    text = " ".join(np.random.default_rng(seed).choice(WORDS, 4)).upper()
    face = font(40)
    x0, y0, x1, y1 = draw.textbbox((40, photo.height - 90), text, font=face)
    draw.rectangle((x0 - 12, y0 - 12, x1 + 12, y1 + 12), fill="white")
    draw.text((40, photo.height - 90), text, fill="black", font=face)
    return photo


SHARD, JOB = "000001-00000", "000001-00000-00000"


def write_library(root: Path, name: str, images: list[Image.Image]) -> Layout:
    """The images as JPEG q90, and a results folder ``root/name`` with a one-shard manifest
    and objects rows flagging text."""
    entries = []
    for index, image in enumerate(images):
        path = root / f"{name}-{index:03d}.jpg"
        image.save(path, quality=90)
        stat = path.stat()
        entries.append(Entry(path.name, stat.st_size, stat.st_mtime_ns))
    layout = Layout(root / name)
    write_manifest(layout.manifest(SHARD), entries)
    write_rows(layout.rows("objects", SHARD), [ok_row(e, {"has_text": True}) for e in entries])
    return layout


def job_rate(layout: Layout, root: Path, images_at_once: int = 2) -> tuple[float, ocr.OcrReader]:
    """images/s of one OCR job on the shard of ``layout`` (model load excluded) and the job."""
    ocr.RAPIDOCR_MAX_IMAGES_AT_ONCE = images_at_once
    settings = ocr.OcrSettings.defaults(library=str(root), max_side=BOUND, device="cpu")
    job = run_model_job(ocr.OcrReader(settings), layout, JOB, [SHARD], threads=2)
    rows = list(read_rows(layout.rows("ocr", SHARD)))
    assert all(row["status"] == "ok" for row in rows), rows
    return job.counts.read / job.stats.total_s, job


def lines_per_image(layout: Layout) -> float:
    rows = list(read_rows(layout.rows("ocr", SHARD)))
    return sum(len(row["lines"]) for row in rows) / len(rows)


def child_read(path: str, max_side: int) -> None:
    """In a fresh process: load, then decode and read ``path`` once; print JSON figures."""
    from imganalyzer.decode.readers import decode_image

    max_regions = ocr.OcrSettings.defaults().max_regions
    backend = ocr_backends.RapidOcrBackend(max_regions, threads=2, device="cpu", max_side=max_side)
    loaded_mib = current_rss_mib()
    started = time.perf_counter()
    decoded = decode_image(path, max_side, 200_000_000)
    lines = ocr.reading_order(backend.read(decoded.rgb))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"seconds": seconds, "peak_mib": peak_kib / 1024, "loaded_mib": loaded_mib}
    print(json.dumps({**figures, "texts": [line.text for line in lines]}))


def current_rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def read_in_fresh_process(path: Path, max_side: int) -> dict:
    command = [sys.executable, __file__, "--child", str(path), str(max_side)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def bounded_vs_full(root: Path, quick: bool) -> list[Row]:
    size = (3072, 2048) if quick else (6000, 4000)
    path = root / "large.jpg"
    document(size, font_size=size[0] // 60, seed=99).save(path, quality=90)
    log(f"reading a {size[0]}x{size[1]} document bounded ({BOUND}) and at full resolution")
    bounded = read_in_fresh_process(path, BOUND)
    full = read_in_fresh_process(path, max(size))
    same = sum(a == b for a, b in zip(bounded["texts"], full["texts"], strict=False))
    note = f"{size[0]}x{size[1]} JPEG"
    return [
        Row(f"bounded {BOUND} px: seconds", bounded["seconds"], "s", note),
        Row("full resolution: seconds", full["seconds"], "s", note),
        ratio_row("full / bounded: time", full["seconds"], bounded["seconds"]),
        Row(f"bounded {BOUND} px: peak RSS", bounded["peak_mib"], "MiB",
            f"{bounded['loaded_mib']:.0f} MiB after model load"),
        Row("full resolution: peak RSS", full["peak_mib"], "MiB",
            f"{full['loaded_mib']:.0f} MiB after model load"),
        ratio_row("full / bounded: peak RSS", full["peak_mib"], bounded["peak_mib"]),
        ratio_row(
            "full / bounded: memory above model load",
            full["peak_mib"] - full["loaded_mib"],
            bounded["peak_mib"] - bounded["loaded_mib"],
        ),
        Row("lines read (bounded / full)", len(bounded["texts"]), "lines",
            f"full: {len(full['texts'])}; {same} bounded lines read exactly as at full resolution"),
    ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    n_pages, n_photos = (1, 2) if quick else (6, len(PHOTOS))
    page_size = (1200, 1500) if quick else (1600, 2000)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_ocr_") as folder:
        root = Path(folder)
        pages = write_library(
            root, "pages", [document(page_size, 30, seed) for seed in range(n_pages)]
        )
        photos = write_library(
            root, "photos", [captioned_photo(name, i) for i, name in enumerate(PHOTOS[:n_photos])]
        )
        log(f"OCR of {n_pages} pages and {n_photos} photos")
        page_rate, job = job_rate(pages, root)
        per_page = lines_per_image(pages)
        photo_rate, _ = job_rate(photos, root)
        per_photo = lines_per_image(photos)
        serial_rate, _ = job_rate(pages, root, images_at_once=1)
        size = f"{page_size[0]}x{page_size[1]}"
        rows += [
            Row("pages: images/s", page_rate, "images/s", f"{size}, {per_page:.1f} lines/page"),
            Row("photos: images/s", photo_rate, "images/s", f"1200 px, {per_photo:.1f} lines each"),
            Row("model load", job.stats.load_s, "s", "det + cls + rec sessions, warm-up"),
            Row("pages, 1 image at a time: images/s", serial_rate, "images/s", "2 ORT threads"),
            ratio_row("2 images at once (1 thread each) / 1 at a time", page_rate, serial_rate),
        ]  # fmt: skip
        rows += bounded_vs_full(root, quick)
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_read(argv[1], int(argv[2]))
        return
    parser = bench_parser(__doc__, "1 smaller page, 2 photos, a 3072x2048 large document")
    args = parser.parse_args(argv)
    if not args.json:
        log(machine_description())
    rows = run(args.quick)
    publish(f"ocr (rapidocr PP-OCR, CPU{', --quick' if args.quick else ''})", rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
