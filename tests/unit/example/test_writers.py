"""The sample writers produce real files that Pillow, pillow-heif and rawpy open."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import rawpy
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from imganalyzer.example.writers import (
    ExifInfo,
    exif_bytes,
    write_dng,
    write_heic,
    write_jpeg,
    write_png,
    write_tiff16,
)

INFO = ExifInfo(
    make="Canon",
    model="Canon EOS R5",
    lens="RF50mm F1.2 L USM",
    datetime_original="2023:07:14 18:03:22",
    offset="+02:00",
    exposure_time=1 / 250,
    f_number=2.8,
    iso=400,
    focal_length=50.0,
    focal_length_35mm=50,
    gps=(-33.9249, -18.4241, -12.5),
    orientation=1,
    software="imganalyzer tests",
    artist="Jane Doe",
    copyright="CC0",
    rating=4,
)


def gradient(height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth uint8 RGB test image (H, W, 3)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 255 // width, y * 255 // height, np.full_like(x, 96)]).astype(np.uint8)


def test_exif_bytes_uses_rational_types() -> None:
    exif = Image.Exif()
    exif.load(exif_bytes(INFO))
    assert exif[ExifTags.Base.Make] == "Canon"
    assert exif[ExifTags.Base.Rating] == 4
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    assert isinstance(sub[ExifTags.Base.ExposureTime], IFDRational)
    assert (
        sub[ExifTags.Base.ExposureTime].numerator,
        sub[ExifTags.Base.ExposureTime].denominator,
    ) == (1, 250)
    assert float(sub[ExifTags.Base.FNumber]) == 2.8
    assert sub[ExifTags.Base.OffsetTimeOriginal] == "+02:00"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "S"
    assert gps[ExifTags.GPS.GPSLongitudeRef] == "W"
    assert gps[ExifTags.GPS.GPSAltitudeRef] == b"\x01"  # BYTE: 1 = below sea level


def test_exif_bytes_without_fields_has_no_sub_ifds() -> None:
    exif = Image.Exif()
    exif.load(exif_bytes(ExifInfo(make="Apple")))
    assert dict(exif) == {ExifTags.Base.Make: "Apple"}


def test_non_ascii_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        ExifInfo(artist="José")


def test_write_jpeg_rgb_and_grey(tmp_path: Path) -> None:
    rgb = gradient()
    path = write_jpeg(tmp_path / "sub/a.jpg", rgb, INFO)
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (128, 96))
        assert np.abs(np.asarray(image).astype(int) - rgb).mean() < 3
    with Image.open(write_jpeg(tmp_path / "grey.jpg", rgb[..., 0])) as image:
        assert image.mode == "L"


@pytest.mark.parametrize(
    ("pixels", "mode"),
    [
        (gradient(), "RGB"),
        (np.dstack([gradient(), np.full((96, 128), 7, np.uint8)]), "RGBA"),
        (gradient()[..., 0], "L"),
        (gradient()[..., 0].astype(np.uint16) * 257, "I;16"),
    ],
)
def test_write_png_modes(tmp_path: Path, pixels: np.ndarray, mode: str) -> None:
    with Image.open(write_png(tmp_path / "a.png", pixels)) as image:
        assert image.mode == mode
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_write_tiff16(tmp_path: Path) -> None:
    rgb16 = gradient().astype(np.uint16) * 257 + 3
    path = write_tiff16(tmp_path / "deep.tif", rgb16, INFO)
    with Image.open(path) as image:
        assert image.size == (128, 96)
        image.load()
        exif = image.getexif()
        assert exif[ExifTags.Base.Model] == "Canon EOS R5"
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.LensModel] == "RF50mm F1.2 L USM"
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(path), rgb16)


def test_write_heic(tmp_path: Path) -> None:
    rgb = gradient()
    path = write_heic(tmp_path / "a.heic", rgb, INFO)
    heif = pillow_heif.open_heif(path)
    assert heif.size == (128, 96)
    assert np.abs(np.asarray(heif).astype(int) - rgb).mean() < 4
    assert heif.info["exif"].startswith(b"Exif\x00\x00")


def test_write_heic_orientation_becomes_a_transform(tmp_path: Path) -> None:
    path = write_heic(tmp_path / "a.heic", gradient(), ExifInfo(orientation=6))
    assert pillow_heif.open_heif(path).size == (96, 128)  # displayed upright


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()  # 400 x 600


def test_dng_develops_to_the_input_colours(tmp_path: Path, coffee: np.ndarray) -> None:
    path = write_dng(tmp_path / "a.dng", coffee, INFO, preview_long_edge=None)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_image.shape == (400, 600)
        assert raw.color_desc == b"RGBG"
        developed = raw.postprocess(half_size=True, no_auto_bright=True, gamma=(2.4, 12.92))
    assert developed.shape == (200, 300, 3)
    mean_in, mean_out = coffee.reshape(-1, 3).mean(0), developed.reshape(-1, 3).mean(0)
    assert np.abs(mean_in - mean_out).max() < 12, (mean_in, mean_out)
    with rawpy.imread(str(path)) as raw:
        default = raw.postprocess(half_size=True)  # auto-brightened, colours still right
    small = np.asarray(Image.fromarray(coffee).resize((300, 200)))
    for channel in range(3):
        corr = np.corrcoef(small[..., channel].ravel(), default[..., channel].ravel())[0, 1]
        assert corr > 0.95


def test_dng_preview_is_a_fast_jpeg(tmp_path: Path, coffee: np.ndarray) -> None:
    path = write_dng(tmp_path / "a.dng", coffee, INFO, preview_long_edge=300)
    with rawpy.imread(str(path)) as raw:
        start = time.perf_counter()
        thumb = raw.extract_thumb()
        elapsed = time.perf_counter() - start
        assert raw.sizes.width == 600  # the raw, not the preview
    assert thumb.format == rawpy.ThumbFormat.JPEG
    assert elapsed < 0.05
    with Image.open(io.BytesIO(thumb.data)) as preview:
        assert preview.size == (300, 200)


def test_dng_without_preview_has_no_thumbnail(tmp_path: Path, coffee: np.ndarray) -> None:
    path = write_dng(tmp_path / "a.dng", coffee, preview_long_edge=None)
    with rawpy.imread(str(path)) as raw, pytest.raises(rawpy.LibRawNoThumbnailError):
        raw.extract_thumb()


def test_dng_accepts_uint16_and_odd_sizes(tmp_path: Path) -> None:
    rgb16 = gradient(97, 131).astype(np.uint16) * 257
    path = write_dng(tmp_path / "a.dng", rgb16, ExifInfo(orientation=6))
    with rawpy.imread(str(path)) as raw:
        assert (raw.sizes.height, raw.sizes.width, raw.sizes.flip) == (96, 130, 6)
        assert raw.postprocess(half_size=True).shape == (65, 48, 3)  # LibRaw applies the flip
