"""Header-only metadata: EXIF round trips through every writer, sizes, errors, no decoding."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageFile

from imganalyzer.decode.metadata import FIELDS, MetadataError, _exposure_text, read_metadata
from imganalyzer.example.writers import (
    ExifInfo,
    write_dng,
    write_heic,
    write_jpeg,
    write_png,
    write_tiff16,
)
from tests.support.exif_samples import X_T4

FULL = X_T4
EXPECTED = {
    "make": "FUJIFILM",
    "model": "X-T4",
    "camera": "FUJIFILM X-T4",
    "lens": "XF16-80mmF4 R OIS WR",
    "exposure_time": 1 / 250,
    "exposure_time_text": "1/250",
    "f_number": 5.6,
    "iso": 400,
    "focal_length": 23.0,
    "focal_length_35mm": 35,
    "datetime_original": "2023-07-14T18:03:22+02:00",
    "gps_latitude": 48.8583,
    "gps_longitude": 2.2945,
    "gps_altitude": 35.0,
    "orientation": 1,
    "software": "imganalyzer tests",
    "artist": "Test Artist",
    "copyright": "CC0",
    "rating": 3,
    "place": "Paris",  # the Eiffel Tower: Paris, not the suburb whose centre is nearest
    "region": "Île-de-France",
    "country": "France",
}
HEIGHT, WIDTH = 96, 128  # small: HEIC encoding is slow


def rgb(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // width, y * 255 // height, np.full_like(x, 96)]).astype(np.uint8)


WRITERS: dict[str, Callable[[Path, ExifInfo | None], Path]] = {
    "jpeg": lambda d, info: write_jpeg(d / "a.jpg", rgb(), info),
    "tiff": lambda d, info: write_tiff16(d / "a.tif", rgb().astype(np.uint16) * 257, info),
    "heic": lambda d, info: write_heic(d / "a.heic", rgb(), info),
    "dng": lambda d, info: write_dng(d / "a.dng", rgb(), info, preview_long_edge=64),
}


@pytest.mark.parametrize("fmt", WRITERS)
def test_every_field_round_trips(tmp_path: Path, fmt: str) -> None:
    result = read_metadata(WRITERS[fmt](tmp_path, FULL))
    assert list(result) == list(FIELDS)
    assert result == EXPECTED | {"width": WIDTH, "height": HEIGHT, "format": fmt}
    json.dumps(result)


@pytest.mark.parametrize("fmt", WRITERS)
def test_orientation_6_swaps_the_displayed_size(tmp_path: Path, fmt: str) -> None:
    result = read_metadata(WRITERS[fmt](tmp_path, ExifInfo(make="Canon", orientation=6)))
    assert (result["orientation"], result["width"], result["height"]) == (6, HEIGHT, WIDTH)


@pytest.mark.parametrize("fmt", WRITERS)
def test_south_west_and_below_sea_level_are_negative(tmp_path: Path, fmt: str) -> None:
    info = ExifInfo(gps=(-33.9249, -70.6693, -430.25))
    result = read_metadata(WRITERS[fmt](tmp_path, info))
    assert (result["gps_latitude"], result["gps_longitude"]) == (-33.9249, -70.6693)
    assert result["gps_altitude"] == -430.25


@pytest.mark.parametrize("fmt", WRITERS)
def test_missing_exif_gives_nones_and_the_size(tmp_path: Path, fmt: str) -> None:
    result = read_metadata(WRITERS[fmt](tmp_path, None))
    expected = dict.fromkeys(FIELDS) | {"orientation": 1, "width": WIDTH, "height": HEIGHT}
    assert result == expected | {"format": fmt}


def test_partial_exif(tmp_path: Path) -> None:
    info = ExifInfo(make="Apple", exposure_time=0.5, gps=(10.5, -20.25, None), iso=100)
    result = read_metadata(write_jpeg(tmp_path / "a.jpg", rgb(), info))
    assert result["make"] == "Apple" and result["model"] is None
    assert (result["exposure_time"], result["exposure_time_text"]) == (0.5, "1/2")
    assert (result["gps_latitude"], result["gps_longitude"], result["gps_altitude"]) == (
        10.5,
        -20.25,
        None,
    )
    assert result["datetime_original"] is None and result["focal_length_35mm"] is None


def test_datetime_without_offset(tmp_path: Path) -> None:
    info = ExifInfo(datetime_original="2001:02:03 04:05:06")
    assert read_metadata(write_jpeg(tmp_path / "a.jpg", rgb(), info))["datetime_original"] == (
        "2001-02-03T04:05:06"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1 / 8000, "1/8000"),
        (1 / 250, "1/250"),
        (1 / 3, "1/3"),
        (0.3, "0.3"),
        (2.0, "2"),
        (2.5, "2.5"),
    ],
)
def test_exposure_time_text(tmp_path: Path, seconds: float, text: str) -> None:
    result = read_metadata(write_jpeg(tmp_path / "a.jpg", rgb(), ExifInfo(exposure_time=seconds)))
    assert result["exposure_time"] == pytest.approx(seconds)
    assert result["exposure_time_text"] == text


def test_exposure_text_of_unusual_values() -> None:
    assert _exposure_text(None) is None
    assert _exposure_text([0]) is None


@pytest.mark.parametrize(
    ("pixels", "size"),
    [
        (np.dstack([rgb(), np.full((HEIGHT, WIDTH), 9, np.uint8)]), (WIDTH, HEIGHT)),
        (rgb(50, 70)[..., 0], (70, 50)),
        (rgb(30, 20)[..., 0].astype(np.uint16) * 257, (20, 30)),
    ],
)
def test_png_sizes(tmp_path: Path, pixels: np.ndarray, size: tuple[int, int]) -> None:
    result = read_metadata(write_png(tmp_path / "a.png", pixels))
    assert (result["width"], result["height"], result["format"]) == (*size, "png")
    assert result["make"] is None and result["orientation"] == 1


def test_webp_with_exif(tmp_path: Path) -> None:
    from imganalyzer.example.writers import exif_bytes

    path = tmp_path / "a.webp"
    Image.fromarray(rgb()).save(path, "WEBP", exif=exif_bytes(FULL))
    result = read_metadata(path)
    assert result == EXPECTED | {"width": WIDTH, "height": HEIGHT, "format": "webp"}


def test_utf8_text_and_xmp_rating(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x013B] = "José Müller".encode()  # written by another tool as UTF-8
    exif[0x010F] = b"Canon   \x00\x00"  # padded
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description xmp:Rating="5"/></x:xmpmeta>'
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb()).save(path, "JPEG", exif=exif, xmp=xmp)
    result = read_metadata(path)
    assert (result["artist"], result["make"], result["rating"]) == ("José Müller", "Canon", 5)


def test_exif_rating_wins_over_xmp(tmp_path: Path) -> None:
    from imganalyzer.example.writers import exif_bytes

    path = tmp_path / "a.jpg"
    xmp = b"<rdf:Description><xmp:Rating>1</xmp:Rating></rdf:Description>"
    Image.fromarray(rgb()).save(path, "JPEG", exif=exif_bytes(ExifInfo(rating=4)), xmp=xmp)
    assert read_metadata(path)["rating"] == 4
    Image.fromarray(rgb()).save(path, "JPEG", xmp=xmp)
    assert read_metadata(path)["rating"] == 1


def test_dng_is_recognised_without_its_extension(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "a.dng", rgb(), FULL, preview_long_edge=32)
    renamed = shutil.copy(dng, tmp_path / "a.tif")
    result = read_metadata(renamed)
    assert (result["format"], result["width"], result["make"]) == ("dng", WIDTH, "FUJIFILM")


def test_dng_size_is_the_raw_not_the_preview(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "a.dng", rgb(200, 300), None, preview_long_edge=50)
    result = read_metadata(path)
    assert (result["width"], result["height"]) == (300, 200)


# ----------------------------------------------------------------------------- bad files


def _jpeg_bytes(tmp_path: Path) -> bytes:
    return write_jpeg(tmp_path / "good.jpg", rgb(), FULL).read_bytes()


BAD_FILES: dict[str, Callable[[Path], bytes | None]] = {
    "missing.jpg": lambda d: None,
    "empty.jpg": lambda d: b"",
    "notes.jpg": lambda d: b"this is a text file with an image extension\n",
    "truncated_header.jpg": lambda d: _jpeg_bytes(d)[:400],
    "tiny.jpg": lambda d: b"\xff\xd8\xff",
    "truncated.png": lambda d: write_png(d / "g.png", rgb()).read_bytes()[:20],
    "truncated.heic": lambda d: write_heic(d / "g.heic", rgb(16, 16)).read_bytes()[:300],
    "truncated.dng": lambda d: write_dng(d / "g.dng", rgb(), None).read_bytes()[:200],
    "truncated.tif": lambda d: write_tiff16(d / "g.tif", rgb().astype(np.uint16)).read_bytes()[:60],
    "random.nef": lambda d: bytes(range(256)) * 8,
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_raise_one_line_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    content = BAD_FILES[name](tmp_path)
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MetadataError) as error:
        read_metadata(path)
    message = str(error.value)
    assert message and "\n" not in message


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="is a directory") as error:
        read_metadata(tmp_path)
    assert error.value.kind == "unreadable"


def test_error_messages(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="not found"):
        read_metadata(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MetadataError, match="empty"):
        read_metadata(tmp_path / "empty.jpg")
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(MetadataError, match="not an image"):
        read_metadata(tmp_path / "notes.jpg")


def test_corrupt_exif_keeps_the_size(tmp_path: Path) -> None:
    data = bytearray(_jpeg_bytes(tmp_path))
    start = data.find(b"Exif\x00\x00") + 6
    data[start + 8 : start + 300] = b"\xff" * 292  # IFD0 entries: garbage
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data))
    result = read_metadata(path)
    assert (result["width"], result["height"], result["format"]) == (WIDTH, HEIGHT, "jpeg")
    assert result["make"] is None and result["orientation"] == 1
    json.dumps(result)


def test_unreadable_exif_header_keeps_the_size(tmp_path: Path) -> None:
    data = bytearray(_jpeg_bytes(tmp_path))
    start = data.find(b"Exif\x00\x00") + 6
    data[start : start + 8] = b"XX\x00\x00\xff\xff\xff\xff"  # no byte order, wild IFD offset
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data))
    result = read_metadata(path)
    assert (result["width"], result["height"], result["make"]) == (WIDTH, HEIGHT, None)


def test_truncated_pixel_data_is_fine_for_headers(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes(tmp_path)[:-200])
    assert read_metadata(path)["make"] == "FUJIFILM"


# ----------------------------------------------------------------------------- no decoding


def _forbid(*args, **kwargs):
    raise AssertionError("pixels were decoded")


@pytest.mark.parametrize("fmt", WRITERS)
def test_no_pixel_decoding(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = WRITERS[fmt](tmp_path, FULL)
    monkeypatch.setattr(ImageFile.ImageFile, "load", _forbid)
    monkeypatch.setattr(Image.Image, "load", _forbid)
    monkeypatch.setattr(pillow_heif.HeifImage, "data", property(_forbid))
    monkeypatch.setattr(pillow_heif.HeifImage, "load", _forbid)
    assert read_metadata(path)["make"] == "FUJIFILM"


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR says ``width`` x ``height`` (8-bit grey), with one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))  # the first row only
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path


def test_huge_png_header_is_read_without_allocating(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "huge.png", 20000, 20000)  # 400 MP: over Pillow's bomb limit
    start = time.perf_counter()
    result = read_metadata(path)
    assert time.perf_counter() - start < 0.5
    assert (result["width"], result["height"], result["format"]) == (20000, 20000, "png")


def test_metadata_is_much_faster_than_decoding(tmp_path: Path) -> None:
    pixels = np.asarray(Image.fromarray(rgb()).resize((2400, 1600)))
    path = write_jpeg(tmp_path / "4mp.jpg", pixels, FULL)
    read_metadata(path)

    def best(function: Callable[[], object], repeat: int) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    header = best(lambda: read_metadata(path), 20)
    decode = best(lambda: Image.open(path).load(), 3)
    print(
        f"read_metadata {header * 1e3:.2f} ms, decode {decode * 1e3:.1f} ms, {decode / header:.0f}x"
    )
    assert header < decode / 5  # loose: the real margin (24 MP) is > 300x


# ----------------------------------------------------------------------------- logging


def test_exifread_warnings_stay_out_of_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    read_metadata(write_png(tmp_path / "a.png", rgb()))  # exifread warns: no eXIf chunk
    assert not [r for r in caplog.records if r.name.startswith("exifread")]
    logging.getLogger("imganalyzer.decode.metadata").debug("ours")
    assert [r.message for r in caplog.records if r.name.startswith("imganalyzer")] == ["ours"]
