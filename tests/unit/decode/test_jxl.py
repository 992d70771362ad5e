"""JPEG XL: the header parser against libjxl on files it wrote, and decoding and metadata of
JPEG XL files through the same paths as every other format."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from skimage import data

from imganalyzer.decode import jxl
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.readers import DecodeError, decode_image
from imganalyzer.example.writers import ExifInfo
from imganalyzer.formats import IMAGE_EXTENSIONS, sniff
from tests.support.exif_samples import X_T4
from tests.support.format_files import write_jxl, write_jxl_from_jpeg

MAX_PIXELS = 50_000_000
# Sizes that take each SizeHeader path: small (multiples of 8 up to 256), each of the four U32
# sizes of a large one (<= 512, <= 8192, <= 262144 is not encoded here), and fixed ratios.
SIZES = [(8, 8), (256, 128), (40, 24), (1, 1), (300, 400), (513, 17), (1000, 750), (3000, 2000)]
SIZES += [(1920, 1080), (1250, 1000), (600, 400), (900, 900), (2048, 1024), (7, 301)]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("container", [False, True])
def test_header_size_is_the_size_libjxl_decodes(width: int, height: int, container: bool) -> None:
    pixels = np.zeros((height, width), np.uint8)
    encoded = imagecodecs.jpegxl_encode(pixels, effort=1, usecontainer=container)
    header = jxl.read_header(io.BytesIO(encoded))
    assert (header.width, header.height, header.orientation) == (width, height, 1)
    assert imagecodecs.jpegxl_decode(encoded).shape[:2] == (height, width)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_header_orientation_is_the_one_libjxl_applies(tmp_path: Path, orientation: int) -> None:
    # libjxl moves a JPEG's EXIF orientation into the codestream when it transcodes it, and
    # splits the codestream over jxlp boxes after a jbrd box.
    path = write_jxl_from_jpeg(
        tmp_path / "turned.jxl", data.astronaut()[:96, :160], turned(orientation)
    )
    with open(path, "rb") as handle:
        header = jxl.read_header(handle)
    assert (header.width, header.height, header.orientation) == (160, 96, orientation)
    decoded = imagecodecs.jpegxl_decode(path.read_bytes())
    assert decoded.shape[1::-1] == header.displayed_size


def turned(orientation: int) -> ExifInfo:
    return dataclasses.replace(X_T4, orientation=orientation)


def test_a_file_cut_inside_its_header_or_boxes_ends_early(tmp_path: Path) -> None:
    bare = imagecodecs.jpegxl_encode(np.zeros((300, 700), np.uint8), effort=1)
    with pytest.raises(EOFError):
        jxl.read_header(io.BytesIO(bare[:3]))
    boxed = write_jxl(tmp_path / "boxed.jxl", data.astronaut()[:64, :64], X_T4).read_bytes()
    with pytest.raises(EOFError, match="'Exif' box"):
        jxl.read_header(io.BytesIO(boxed[:100]))  # cut inside the Exif box
    with pytest.raises(ValueError, match="without a codestream"):
        jxl.read_header(io.BytesIO(boxed[:32]))  # signature and ftyp only


def test_jpeg_xl_is_catalogued_sniffed_and_decoded_to_the_photo(tmp_path: Path) -> None:
    photo = data.astronaut()[:300, :400]
    for container in (False, True):
        path = write_jxl(tmp_path / f"photo{container}.jxl", photo, container=container)
        assert path.suffix in IMAGE_EXTENSIONS and sniff(path.read_bytes()[:32]) == "jxl"
        decoded = decode_image(path, long_edge=400, max_pixels=MAX_PIXELS)
        assert decoded.method == "jpegxl" and decoded.original_size == (400, 300)
        difference = np.abs(decoded.rgb.astype(int) - photo.astype(int)).mean()
        assert difference < 4, difference  # lossy at distance 1: close to the original


def test_jpeg_xl_is_shown_upright_and_downscaled(tmp_path: Path) -> None:
    path = write_jxl_from_jpeg(tmp_path / "turned.jxl", data.astronaut()[:96, :160], turned(6))
    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert decoded.original_size == (96, 160)  # displayed: turned a quarter
    assert decoded.rgb.shape == (64, 38, 3)


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((40, 50), 200, np.uint8),  # grey
        np.full((40, 50, 4), (10, 200, 30, 255), np.uint8),  # RGBA
        np.full((40, 50, 3), (1000, 30000, 65535), np.uint16),  # 16 bits
    ],
    ids=["grey", "rgba", "16-bit"],
)
def test_jpeg_xl_of_any_layout_decodes_to_eight_bit_rgb(tmp_path: Path, pixels) -> None:
    path = tmp_path / "layout.jxl"
    path.write_bytes(imagecodecs.jpegxl_encode(pixels, lossless=True))
    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert decoded.rgb.shape == (40, 50, 3) and decoded.rgb.dtype == np.uint8
    expected = pixels[..., :3] if pixels.ndim == 3 else pixels[..., None]
    scale = 255 / 65535 if pixels.dtype == np.uint16 else 1
    assert np.allclose(decoded.rgb[20, 25], np.rint(expected[20, 25] * scale), atol=1)


def test_jpeg_xl_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jxl(tmp_path / "big.jxl", np.zeros((200, 300, 3), np.uint8))
    monkeypatch.setattr(jxl, "decode", lambda data: pytest.fail("decoded over the limit"))
    with pytest.raises(DecodeError, match="60000 pixels") as caught:
        decode_image(path, long_edge=64, max_pixels=50_000)
    assert caught.value.kind == "too_large"


def test_jpeg_xl_metadata_comes_from_its_exif_box_and_codestream(tmp_path: Path) -> None:
    path = write_jxl(tmp_path / "exif.jxl", data.astronaut()[:96, :128], X_T4)
    fields = read_metadata(path)
    assert (fields["make"], fields["model"], fields["camera"]) == (
        "FUJIFILM",
        "X-T4",
        "FUJIFILM X-T4",
    )
    assert (fields["iso"], fields["f_number"], fields["lens"]) == (400, 5.6, "XF16-80mmF4 R OIS WR")
    assert fields["datetime_original"] == "2023-07-14T18:03:22+02:00"
    assert (fields["gps_latitude"], fields["place"]) == (48.8583, "Paris")
    assert (fields["width"], fields["height"], fields["format"]) == (128, 96, "jxl")


def test_jpeg_xl_metadata_of_a_transcoded_jpeg_has_its_displayed_size(tmp_path: Path) -> None:
    path = write_jxl_from_jpeg(tmp_path / "turned.jxl", data.astronaut()[:96, :160], turned(6))
    fields = read_metadata(path)  # its EXIF is in a Brotli-compressed brob box
    assert (fields["make"], fields["iso"]) == ("FUJIFILM", 400)
    assert (fields["orientation"], fields["width"], fields["height"]) == (6, 96, 160)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="ExifTool is not installed")
def test_jpeg_xl_metadata_agrees_with_exiftool(tmp_path: Path) -> None:
    import json

    path = write_jxl(tmp_path / "exif.jxl", data.astronaut()[:96, :128], X_T4)
    reading = json.loads(subprocess.run(
        ["exiftool", "-json", "-n", str(path)], capture_output=True, check=True, text=True
    ).stdout)[0]  # fmt: skip
    fields = read_metadata(path)
    assert (fields["make"], fields["model"]) == (reading["Make"], reading["Model"])
    assert (fields["width"], fields["height"]) == (reading["ImageWidth"], reading["ImageHeight"])
    assert fields["exposure_time"] == reading["ExposureTime"]
