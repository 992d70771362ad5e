"""The example library: real photos bundled with scikit-image written as a small, realistic
photo library (several cameras, GPS, a rotated portrait, PNG, TIFF, HEIC, DNG), for
``imganalyzer example``, the tests and the benchmarks."""

from __future__ import annotations

import filecmp
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from PIL import Image, ImageOps

from imganalyzer.example.writers import (
    ExifInfo,
    write_dng,
    write_heic,
    write_jpeg,
    write_png,
    write_tiff16,
)


def _upscale(rgb: np.ndarray, factor: float) -> np.ndarray:
    image = Image.fromarray(rgb)
    size = (round(image.width * factor), round(image.height * factor))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def _stored_for_orientation_6(display: np.ndarray) -> np.ndarray:
    """Pixels a camera held upright-right stores: rotating them 90° clockwise shows ``display``."""
    return np.ascontiguousarray(np.rot90(display, k=1))


def _alpha_vignette(rgb: np.ndarray) -> np.ndarray:
    """RGBA ``(H, W, 4)``: opaque centre fading to transparent corners."""
    height, width = rgb.shape[:2]
    y, x = np.ogrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    alpha = np.clip(1.6 - np.hypot(x, y), 0, 1) * 255
    return np.dstack([rgb, alpha.astype(np.uint8)])


def _example_images() -> dict[str, Callable[[], np.ndarray]]:
    """Photos bundled with scikit-image (no downloads), by name."""
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "coffee": data.coffee,
        "chelsea": data.chelsea,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "hubble": data.hubble_deep_field,
        "ihc": data.immunohistochemistry,
        "coins": data.coins,
        "camera": data.camera,
        "page": data.page,
    }


class Camera(TypedDict, total=False):
    """The camera fields of an example photo's EXIF."""

    make: str
    model: str
    lens: str


CANON: Camera = {"make": "Canon", "model": "Canon EOS R5", "lens": "RF24-105mm F4 L IS USM"}
NIKON: Camera = {
    "make": "NIKON CORPORATION",
    "model": "NIKON Z 6_2",
    "lens": "NIKKOR Z 24-70mm f/4 S",
}
FUJI: Camera = {"make": "FUJIFILM", "model": "X100V"}
APPLE: Camera = {
    "make": "Apple",
    "model": "iPhone 15 Pro",
    "lens": "iPhone 15 Pro back camera 6.765mm f/1.78",
}
LEICA: Camera = {
    "make": "Leica Camera AG",
    "model": "LEICA M11",
    "lens": "Summilux-M 1:1.4/35 ASPH.",
}
RICOH: Camera = {"make": "RICOH IMAGING COMPANY, LTD.", "model": "RICOH GR III"}


def _shot(
    camera: Camera,
    when: str,
    offset: str,
    exposure: float,
    f: float,
    iso: int,
    **kw: Any,
) -> ExifInfo:
    return ExifInfo(
        **camera,
        datetime_original=when,
        offset=offset,
        exposure_time=exposure,
        f_number=f,
        iso=iso,
        **kw,
    )


# EXIF of the example library, by path (files not listed here have none).
# fmt: off
EXAMPLE_EXIF = {
    "2023/holiday/IMG_2041.JPG": _shot(
        CANON, "2023:07:14 18:03:22", "+02:00", 1 / 250, 5.6, 400, focal_length=50.0,
        focal_length_35mm=50, gps=(48.8583, 2.2945, 35.0), artist="Jane Doe",
        copyright="(c) 2023 Jane Doe", rating=4,
    ),
    "2023/holiday/IMG_2042.JPG": _shot(
        CANON, "2023:07:15 09:12:05", "+02:00", 1 / 1000, 8.0, 100, focal_length=105.0,
        focal_length_35mm=105, orientation=6, gps=(48.8606, 2.3376, 41.5), artist="Jane Doe",
    ),
    "2023/holiday/DSC_0815.JPG": _shot(
        NIKON, "2023:08:02 11:47:31", "+01:00", 1 / 60, 4.0, 1600, focal_length=35.0,
        focal_length_35mm=35, gps=(38.7223, -9.1393, 12.0), software="Ver.1.10",
    ),
    "2023/holiday/DSC_0904.JPG": _shot(  # Dead Sea: below sea level
        NIKON, "2023:08:09 06:30:00", "+03:00", 1 / 500, 11.0, 200, focal_length=24.0,
        focal_length_35mm=24, gps=(31.559, 35.4732, -430.0),
    ),
    "2023/holiday/IMG_3107.HEIC": _shot(
        APPLE, "2023:12:27 16:20:41", "+02:00", 1 / 120, 1.78, 64, focal_length=6.765,
        focal_length_35mm=24, gps=(-33.9249, 18.4241, 8.0), software="17.2",
    ),
    "2023/holiday/L1000123.DNG": _shot(
        LEICA, "2023:07:16 20:41:10", "+02:00", 1 / 125, 1.4, 800, focal_length=35.0,
        gps=(48.853, 2.3499, 33.0), rating=5,
    ),
    "2024/home/IMG_0001.JPG": _shot(
        APPLE, "2024:02:03 21:05:17", "+01:00", 1 / 30, 1.78, 1250, focal_length=6.765,
        focal_length_35mm=24, software="17.3",
    ),
    "2024/home/DSCF4410.JPG": _shot(
        FUJI, "2024:03:10 14:00:09", "+01:00", 1 / 180, 2.0, 320, focal_length=23.0,
        focal_length_35mm=35, rating=3,
    ),
    "2024/home/hubble_deep_field.jpg": ExifInfo(
        software="GIMP 2.10.36", artist="NASA/ESA", copyright="Public domain",
    ),
    "2024/home/R0001234.DNG": _shot(
        RICOH, "2024:05:01 08:15:44", "+09:00", 1 / 2000, 2.8, 200, focal_length=18.3,
        focal_length_35mm=28, gps=(35.6595, 139.7005, None),
    ),
    "scans/slide_0042.tif": ExifInfo(
        make="Nikon", model="LS-5000", software="VueScan 9.8",
        datetime_original="2024:01:20 10:00:00",
    ),
}
# fmt: on


def _example_pixels() -> dict[str, np.ndarray]:
    """Pixels of each example file by path, as stored (IMG_2042 is rotated for orientation 6)."""
    photos = {name: load() for name, load in _example_images().items()}
    coffee = _upscale(photos["coffee"], 2)  # 800 x 1200
    motorcycle = _upscale(photos["motorcycle"], 2)  # 1000 x 1482
    rocket_portrait = _upscale(photos["rocket"][:, 170:470], 2)  # 854 x 600 as displayed
    page = np.asarray(ImageOps.autocontrast(Image.fromarray(photos["page"])))
    return {
        "2023/holiday/IMG_2041.JPG": coffee,
        "2023/holiday/IMG_2042.JPG": _stored_for_orientation_6(rocket_portrait),
        "2023/holiday/DSC_0815.JPG": motorcycle,
        "2023/holiday/DSC_0904.JPG": _upscale(photos["astronaut"], 1.5),
        "2023/holiday/IMG_3107.HEIC": photos["chelsea"],  # small: HEIC encoding is slow
        "2023/holiday/L1000123.DNG": coffee,
        "2024/home/IMG_0001.JPG": _upscale(photos["chelsea"], 2.5),
        "2024/home/DSCF4410.JPG": _upscale(photos["coins"], 2),  # greyscale
        "2024/home/hubble_deep_field.jpg": photos["hubble"],
        "2024/home/astronaut_cutout.png": _alpha_vignette(photos["astronaut"]),
        "2024/home/R0001234.DNG": motorcycle,
        "scans/slide_0042.tif": photos["ihc"].astype(np.uint16) * 257,
        "scans/print_1987.png": photos["camera"].astype(np.uint16) * 257,  # 16-bit greyscale
        "scans/letter_p1.jpg": page,  # greyscale
    }


def _write_example(path: Path, pixels: np.ndarray, exif: ExifInfo | None) -> Path:
    suffix = path.suffix.lower()
    if suffix == ".png":
        return write_png(path, pixels)
    if suffix == ".tif":
        return write_tiff16(path, pixels, exif)
    if suffix == ".heic":
        return write_heic(path, pixels, exif)
    if suffix == ".dng":  # the Leica DNG has a preview, the Ricoh one none
        return write_dng(path, pixels, exif, 1024 if path.name.startswith("L") else None)
    return write_jpeg(path, pixels, exif)


@dataclass
class ExampleLibrary:
    """The files of the example library (``paths``) and those written this time (``written``:
    missing or different; the others were left as they were, mtime included)."""

    paths: list[Path]
    written: list[Path]


def build_example_library(dest: str | os.PathLike) -> ExampleLibrary:
    """Write a small, realistic photo library (14 files, deterministic) under ``dest``.

    Real photos shipped with scikit-image, in ``2023/holiday``, ``2024/home`` and ``scans``:
    JPEGs from several cameras with varied EXIF (:data:`EXAMPLE_EXIF`: GPS north/south/east/
    west and below sea level, one stored rotated with orientation 6), two greyscale JPEGs, an
    RGBA PNG, a 16-bit greyscale PNG, a 16-bit RGB TIFF, a small HEIC, a DNG with a JPEG
    preview and one without. Takes about a second.

    Idempotent: each file is made in a hidden folder under ``dest`` (which the catalog does not
    scan) and moved into place only where it is missing or its bytes differ, so building an
    unchanged library again touches nothing and the next run has nothing to do.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    paths, written = [], []
    with tempfile.TemporaryDirectory(dir=root, prefix=".imganalyzer-example-") as scratch:
        for name, pixels in _example_pixels().items():
            made = _write_example(Path(scratch) / name, pixels, EXAMPLE_EXIF.get(name))
            path = root / name
            if not _same_bytes(made, path):
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(made, path)
                written.append(path)
            paths.append(path)
    return ExampleLibrary(paths, written)


def _same_bytes(first: Path, second: Path) -> bool:
    try:
        return second.is_file() and filecmp.cmp(first, second, shallow=False)
    except OSError:
        return False
