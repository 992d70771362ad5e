"""Metadata reader vs ExifTool, side by side on the same files, in one run.

Run from the repository root as a plain script:

    .venv/bin/python bench/bench_metadata.py            # 24 MP files + the real corpus, ~1 min
    .venv/bin/python bench/bench_metadata.py --quick    # smoke test: 6 MP, few files

Files: generated camera-like JPEG and DNG files (full EXIF, GPS, XMP rating) and, where it is
present, the real-file corpus (``../shared/corpus``: 182 files of 80+ cameras, odd and broken
ones included). They sit in the page cache: these are CPU figures, not disk figures.

Measured:

1. ``read_metadata`` on one thread, file after file (what one metadata job thread does), after
   the once-per-job start-up (place names loaded, ExifTool fallback process started), which
   is reported on its own row.
2. ExifTool the way Immich and PhotoPrism batch it: one ``exiftool -json -n -fast`` process
   given every file (its start-up included, as a job would pay it).
3. Agreement with ExifTool's answers (make, model, lens, exposure, f-number, ISO, focal length,
   date, GPS, orientation), judged as in ``tests/support/corpus_compare.py``.
4. One decode (``decode_image`` to 1024 px) per generated file, for the header-only ratio.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import Row, bench_parser, measure, ms_row, publish, rate_row, ratio_row
from skimage import data

from imganalyzer.decode.exiftool import exiftool_fields
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.places import place_of
from imganalyzer.decode.readers import decode_image
from imganalyzer.example.writers import write_dng, write_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.corpus_compare import CORPUS, compare  # noqa: E402
from tests.support.exif_samples import X_T4  # noqa: E402

EXIF = dataclasses.replace(X_T4, software=None, artist=None, copyright=None)


def generated_files(folder: Path, size: tuple[int, int], n_jpeg: int, n_dng: int) -> list[Path]:
    photo = np.asarray(data.astronaut())
    width, height = size
    tiles = np.tile(photo, (height // photo.shape[0] + 1, width // photo.shape[1] + 1, 1))
    pixels = np.ascontiguousarray(tiles[:height, :width])
    first_jpeg = write_jpeg(folder / "IMG_0000.jpg", pixels, EXIF)
    first_dng = write_dng(folder / "DSC_0000.dng", pixels[: height // 4, : width // 4], EXIF)
    files = [first_jpeg, first_dng]
    for i in range(1, n_jpeg):  # copies: same content, separate files (and inodes)
        files.append(Path(shutil.copy(first_jpeg, folder / f"IMG_{i:04d}.jpg")))
    for i in range(1, n_dng):
        files.append(Path(shutil.copy(first_dng, folder / f"DSC_{i:04d}.dng")))
    return files


def exiftool_batch(files: list[Path]) -> dict[str, dict]:
    command = ["exiftool", "-json", "-n", "-fast", *map(str, files)]
    done = subprocess.run(command, capture_output=True, check=False)
    return {r["SourceFile"]: r for r in json.loads(done.stdout or b"[]")}


def ours(files: list[Path]) -> dict[str, dict]:
    rows = {}
    for path in files:
        try:
            rows[str(path)] = {"status": "ok", **read_metadata(path)}
        except Exception as error:  # noqa: BLE001 - a failure is a miss in the agreement
            rows[str(path)] = {"status": "error", "error": str(error)}
    return rows


def side_by_side(label: str, files: list[Path], repeats: int) -> list[Row]:
    reader = measure(lambda: ours(files), repeats)
    exiftool = measure(lambda: exiftool_batch(files), repeats)
    counts, misses = compare(exiftool_batch(files), ours(files))
    agreeing = sum(a for a, _ in counts.values())
    expected = sum(n for _, n in counts.values())
    return [
        rate_row(f"{label}: read_metadata, 1 thread", reader, len(files)),
        rate_row(f"{label}: exiftool -json -n -fast, 1 batch", exiftool, len(files)),
        ratio_row(f"{label}: speed vs ExifTool", exiftool.best, reader.best),
        Row(
            f"{label}: agreement with ExifTool",
            100.0 * agreeing / max(expected, 1),
            "%",
            f"{agreeing}/{expected} values, {len(misses)} misses",
        ),
    ]


def start_up() -> Row:
    """What a metadata job pays once: the place gazetteer and the ExifTool fallback process."""
    timing = measure(lambda: (place_of(48.8583, 2.2945), exiftool_fields(__file__)), 1)
    return Row("once per job: load places + start ExifTool", timing.best, "s")


def run(quick: bool) -> list[Row]:
    size = (3000, 2000) if quick else (6000, 4000)
    n_jpeg, n_dng = (8, 2) if quick else (80, 20)
    repeats = 2 if quick else 3
    if shutil.which("exiftool") is None:
        print("ExifTool is not installed: nothing to compare with", file=sys.stderr)
        return []
    rows = [start_up()]
    with tempfile.TemporaryDirectory() as tmp:
        files = generated_files(Path(tmp), size, n_jpeg, n_dng)
        rows += side_by_side(f"{size[0] * size[1] // 10**6} MP JPEG+DNG", files, repeats)
        jpegs = [f for f in files if f.suffix == ".jpg"][:10]
        decode = measure(lambda: [decode_image(f, 1024, 200_000_000) for f in jpegs], repeats)
        metadata = measure(lambda: [read_metadata(f) for f in jpegs], repeats)
        rows.append(ms_row("decode_image to 1024 px, per JPEG", decode, len(jpegs)))
        rows.append(ratio_row("header-only metadata vs one decode", decode.best, metadata.best))
    corpus = sorted(p for p in (CORPUS / "files").rglob("*") if p.is_file())
    if corpus:
        rows += side_by_side(f"real corpus ({len(corpus)} files)", corpus, repeats)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "6 MP, 10 files, 1 repeat")
    args = parser.parse_args(argv)
    publish("metadata (read_metadata vs ExifTool)", run(args.quick), args.json)


if __name__ == "__main__":
    main()
