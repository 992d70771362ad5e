"""Formats by content: libheif's compact "mini" HEIF files are HEIF (sniffed, decoded, their
metadata read), although pillow-heif's own signature check turns them away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image
from skimage import data

from imganalyzer.decode import formats
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.readers import decode_image
from imganalyzer.example.writers import write_heic
from tests.support.exif_samples import X_T4
from tests.support.format_files import mini_heif_writable, write_mini_heic

needs_mini_writer = pytest.mark.skipif(
    not mini_heif_writable(), reason="pillow-heif's libheif here cannot write mini HEIF files"
)


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x00\x00\x00\x10ftypmif3heic", "heif"),  # mini, HEVC
        (b"\x00\x00\x00\x10ftypmif3avif", "avif"),  # mini, AV1
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", "heif"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00mif1avif", "avif"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avif", "avif"),  # AV1 in generic HEIF
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heic", "heif"),
        (b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1avif", "heif"),  # avif past the box
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", "cr3"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", "jxl"),
        (b"\xff\x0a\xfa\x7f", "jxl"),
    ],
)
def test_iso_bmff_and_jpeg_xl_files_are_named_by_their_brand(head: bytes, fmt: str) -> None:
    assert formats.sniff(head) == fmt


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[100:196, 100:228]  # 128 x 96


@needs_mini_writer
def test_a_mini_heif_file_decodes_to_the_photo(tmp_path: Path, photo: np.ndarray) -> None:
    path = write_mini_heic(tmp_path / "mini.heic", photo)
    assert path.read_bytes()[4:16] == b"ftypmif3heic"
    with open(path, "rb") as handle, pytest.raises(Image.UnidentifiedImageError):
        Image.open(handle)  # what made it "not an image": Pillow's plugin refuses it
    decoded = decode_image(path, long_edge=128, max_pixels=10_000_000)
    assert decoded.method == "heif" and decoded.original_size == (128, 96)
    # The pixels libheif decodes. (libheif 1.23.7 reads back a mini file it wrote from full-range
    # RGB as limited range: its contrast is stretched, so it is compared by structure.)
    assert np.array_equal(decoded.rgb, np.asarray(pillow_heif.open_heif(path)[0]))
    correlation = np.corrcoef(decoded.rgb.ravel(), photo.ravel())[0, 1]
    assert correlation > 0.98, correlation


@needs_mini_writer
def test_a_mini_heif_file_has_the_metadata_of_a_regular_one(
    tmp_path: Path, photo: np.ndarray
) -> None:
    mini = read_metadata(write_mini_heic(tmp_path / "mini.heic", photo, X_T4))
    regular = read_metadata(write_heic(tmp_path / "regular.heic", photo, X_T4))
    assert mini == regular
    assert (mini["make"], mini["iso"], mini["place"]) == ("FUJIFILM", 400, "Paris")
    assert (mini["width"], mini["height"], mini["format"]) == (128, 96, "heic")
