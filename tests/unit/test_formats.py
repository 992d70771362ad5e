"""Image formats: the extensions the catalog picks up, a file's format named from its first
bytes (files written by the real encoders, the RAW signatures, and the real-file corpus
with ExifTool's reading of each), RAW files, the note on a misnamed file, and libheif's
compact "mini" HEIF files (sniffed, decoded and their metadata read, although pillow-heif's
own signature check turns them away)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image
from skimage import data

from imganalyzer import formats
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.readers import decode_image
from imganalyzer.example.writers import write_dng, write_heic, write_jpeg, write_png, write_tiff16
from imganalyzer.formats import (
    IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    is_raw,
    mismatch_note,
    sniff,
)
from tests.support.corpus_compare import CORPUS, corpus_files
from tests.support.exif_samples import X_T4
from tests.support.format_files import mini_heif_writable, write_mini_heic

PIXELS = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
# ExifTool's FileType -> the format sniff names (TIFF-based RAW formats read as "tiff").
EXIFTOOL_TYPES = {
    "JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff", "WEBP": "webp",
    "Extended WEBP": "webp", "HEIC": "heif", "HEIF": "heif", "MP4": "heif", "AVIF": "avif",
    "JXL": "jxl", "CR2": "cr2", "CR3": "cr3", "CRW": "crw", "RAF": "raf", "X3F": "x3f",
    "MRW": "mrw", "ORF": "orf", "RAW": "rw2", "RW2": "rw2", "DNG": "tiff", "NEF": "tiff",
    "ARW": "tiff", "KDC": "tiff", "IIQ": "tiff", "GPR": "tiff", "PEF": "tiff",
}  # fmt: skip
RAW_TYPES = {"CR2", "CR3", "CRW", "RAF", "X3F", "MRW", "ORF", "RAW", "RW2", "DNG", "NEF"} | {
    "ARW", "KDC", "IIQ", "GPR", "PEF",
}  # fmt: skip


def head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(32)


def test_raw_extensions_are_lowercase_with_dot():
    assert {".dng", ".nef", ".cr2", ".cr3", ".arw", ".raf", ".orf", ".rw2"} <= RAW_EXTENSIONS


def test_every_extension_is_lowercase_with_a_dot_and_raw_ones_are_images() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert RAW_EXTENSIONS <= IMAGE_EXTENSIONS and ".jxl" in IMAGE_EXTENSIONS
    assert not {".mp4", ".txt", ".xmp", ".mov"} & IMAGE_EXTENSIONS


def test_files_written_by_the_real_encoders_are_sniffed_by_content(tmp_path: Path) -> None:
    written = {
        "jpeg": write_jpeg(tmp_path / "a.jpg", PIXELS),
        "png": write_png(tmp_path / "a.png", PIXELS),
        "tiff": write_tiff16(tmp_path / "a.tif", PIXELS.astype(np.uint16) * 257),
        "heif": write_heic(tmp_path / "a.heic", PIXELS),
    }
    for fmt, suffix in (("gif", ".gif"), ("bmp", ".bmp"), ("webp", ".webp")):
        Image.fromarray(PIXELS).save(tmp_path / f"a{suffix}")
        written[fmt] = tmp_path / f"a{suffix}"
    for fmt, path in written.items():
        assert sniff(head(path)) == fmt, path.name
    assert sniff(head(write_dng(tmp_path / "a.dng", PIXELS))) == "tiff"  # DNG is TIFF-based


@pytest.mark.parametrize(
    ("first_bytes", "fmt"),
    [
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00", "cr2"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "cr3"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "avif"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00", "heif"),
        (b"FUJIFILMCCD-RAW 0201", "raf"),
        (b"FOVb\x00\x00\x00\x00", "x3f"),
        (b"\x00MRM\x00\x00\x00\x00", "mrw"),
        (b"II\x1a\x00\x00\x00HEAPCCDR", "crw"),
        (b"IIRO\x08\x00\x00\x00", "orf"),
        (b"IIU\x00\x08\x00\x00\x00", "rw2"),
        (b"\xff\x0a\x00\x00", "jxl"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
        (b"BM", "unknown"),  # too short for a BMP header
        (b"", "unknown"),
        (b"just some text", "unknown"),
    ],
)
def test_signatures_name_their_format(first_bytes: bytes, fmt: str) -> None:
    assert sniff(first_bytes) == fmt


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"real-file corpus not found at {CORPUS}")
def test_the_real_corpus_is_sniffed_as_exiftool_reads_it() -> None:
    files, readings = corpus_files()
    checked = 0
    for name, reading in readings.items():
        kind = reading.get("FileType")
        if kind not in EXIFTOOL_TYPES or not (files / name).exists():
            continue
        fmt = sniff(head(files / name))
        assert fmt == EXIFTOOL_TYPES[kind], (name, kind, fmt)
        extension = (files / name).suffix.lower()
        assert is_raw(fmt, extension) == (kind in RAW_TYPES), (name, kind)
        checked += 1
    assert checked >= 150


def test_raw_is_told_by_signature_or_by_a_raw_name_on_tiff_like_content() -> None:
    assert is_raw("cr3", ".jpg")  # the content wins
    assert is_raw("tiff", ".nef") and is_raw("unknown", ".kdc")
    assert not is_raw("tiff", ".tif") and not is_raw("jpeg", ".nef")


def test_a_misnamed_file_gets_a_note_and_a_well_named_one_none() -> None:
    assert mismatch_note("jpeg", ".nef") == "content is JPEG, not .nef"
    assert mismatch_note("png", ".jpg") == "content is PNG, not .jpg"
    assert mismatch_note("jpeg", ".jxl") == "content is JPEG, not .jxl"
    for fmt, extension in [("jpeg", ".jpeg"), ("tiff", ".dng"), ("cr2", ".cr2"), ("avif", ".heic")]:
        assert mismatch_note(fmt, extension) is None, (fmt, extension)
    assert mismatch_note("unknown", ".jpg") is None  # nothing to say about unknown content


# ----------------------------------------------------------------- mini HEIF

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


@pytest.mark.parametrize(
    ("head", "since"),
    [
        (b"\xff\x0a\xfa\x7f" + bytes(12), 2),  # JPEG XL codestream
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", 2),  # container
        (b"\x00\x00\x00\x10ftypmif3heic", 2),  # libheif's mini HEIF
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", 1),  # a plain HEIF
        (b"\xff\xd8\xff\xe0" + bytes(12), 1),
        (b"this is no image", 1),
    ],
)
def test_the_formats_version_a_file_needs_comes_from_its_first_bytes(
    head: bytes, since: int
) -> None:
    assert formats.readable_since(head) == since <= formats.FORMATS_VERSION


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
