"""Writers of real image files with EXIF: JPEG, PNG, 16-bit TIFF, HEIC and DNG.

Used by the example library, tests and benchmarks. Every writer creates the parent folder,
writes ``path`` and returns it as a :class:`~pathlib.Path`. Pixel arrays are ``(height, width,
channels)`` in the order they are stored in the file (an :attr:`ExifInfo.orientation` is only
recorded, the writers never rotate pixels).

EXIF layout (the same in every format that carries EXIF):

* IFD0: Make, Model, Orientation, Software, DateTime (= DateTimeOriginal), Artist, Copyright,
  Rating (0x4746).
* Exif IFD (0x8769): ExifVersion, DateTimeOriginal, DateTimeDigitized, OffsetTimeOriginal,
  ExposureTime, FNumber, ISOSpeedRatings (0x8827), FocalLength, FocalLengthIn35mmFilm, LensModel.
* GPS IFD (0x8825): GPSVersionID, latitude/longitude as degrees, minutes, seconds with N/S and E/W
  references, GPSAltitudeRef (1 = below sea level) and GPSAltitude.

TIFF and DNG files are written with tifffile, which refuses to write the Exif and GPS IFD
pointers itself: they are written as placeholder tags, the two IFDs (serialised by Pillow) are
appended to the file, and the placeholders are renamed and pointed at them (see
:func:`_attach_sub_ifds`).
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pillow_heif
import tifffile
from PIL import ExifTags, Image, TiffImagePlugin
from PIL.TiffImagePlugin import IFDRational

TAG = ExifTags.Base
GPS = ExifTags.GPS

# tifffile filters the Exif/GPS IFD pointers out of ``extratags``: write these unused tag codes
# instead and rename them afterwards. Each sorts directly before its real code, so IFD0 stays
# in ascending tag order after the rename.
_PLACEHOLDERS = {34664: ExifTags.IFD.Exif, 34852: ExifTags.IFD.GPSInfo}

# DNG (Adobe DNG specification 1.4) tags.
DNG_VERSION = 50706
DNG_BACKWARD_VERSION = 50707
UNIQUE_CAMERA_MODEL = 50708
CFA_REPEAT_PATTERN_DIM = 33421
CFA_PATTERN = 33422
BLACK_LEVEL = 50714
WHITE_LEVEL = 50717
COLOR_MATRIX_1 = 50721
AS_SHOT_NEUTRAL = 50728
CALIBRATION_ILLUMINANT_1 = 50778
PHOTOMETRIC_CFA = 32803
ILLUMINANT_D65 = 21

DNG_BLACK = 512
DNG_WHITE = 16383  # a 14-bit sensor
# XYZ (D65) -> linear sRGB: the "camera" of our DNGs sees linear sRGB, so AsShotNeutral is 1, 1, 1.
XYZ_TO_LINEAR_SRGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)

# Tuple layout of tifffile's ``extratags``: (code, dtype, count, value, writeonce).
TagTuple = tuple[int, int | str, int, object, bool]


@dataclass(frozen=True)
class ExifInfo:
    """EXIF fields to write; every field is optional (None = tag not written)."""

    make: str | None = None
    model: str | None = None
    lens: str | None = None
    datetime_original: str | None = None  # "YYYY:MM:DD HH:MM:SS"
    offset: str | None = None  # OffsetTimeOriginal, e.g. "+02:00"
    exposure_time: float | None = None  # seconds, e.g. 1/250
    f_number: float | None = None
    iso: int | None = None
    focal_length: float | None = None  # mm
    focal_length_35mm: int | None = None  # mm
    gps: tuple[float, float, float | None] | None = None  # (lat, lon, altitude m); S/W negative
    orientation: int | None = None  # EXIF orientation 1-8
    software: str | None = None
    artist: str | None = None
    copyright: str | None = None
    rating: int | None = None  # 0-5 (-1 = rejected)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, str) and not value.isascii():
                raise ValueError(f"ExifInfo.{name} must be ASCII (the EXIF ASCII type): {value!r}")


# ----------------------------------------------------------------------------- EXIF


def _rational(value: float, max_denominator: int = 1_000_000) -> IFDRational:
    fraction = Fraction(value).limit_denominator(max_denominator)
    return IFDRational(fraction.numerator, fraction.denominator)


def _exposure_rational(seconds: float) -> IFDRational:
    """1/250 s is stored as 1/250 (not 4/1000), as cameras do."""
    if 0 < seconds < 1 and math.isclose(1 / seconds, round(1 / seconds), rel_tol=1e-9):
        return IFDRational(1, round(1 / seconds))
    return _rational(seconds, 10_000)


def _dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Absolute decimal degrees as whole degrees, whole minutes and seconds (1e-6 s steps)."""
    micro_seconds = round(abs(degrees) * 3600 * 1_000_000)
    whole_degrees, rest = divmod(micro_seconds, 3600 * 1_000_000)
    minutes, micro = divmod(rest, 60 * 1_000_000)
    return IFDRational(whole_degrees, 1), IFDRational(minutes, 1), IFDRational(micro, 1_000_000)


def _ifd0_tags(info: ExifInfo) -> dict[int, str | int]:
    values: dict[int, str | int | None] = {
        TAG.Make: info.make,
        TAG.Model: info.model,
        TAG.Orientation: info.orientation,
        TAG.Software: info.software,
        TAG.DateTime: info.datetime_original,
        TAG.Artist: info.artist,
        TAG.Copyright: info.copyright,
        TAG.Rating: info.rating,
    }
    return {tag: value for tag, value in values.items() if value is not None}


def _exif_ifd_tags(info: ExifInfo) -> dict[int, object]:
    values = {
        TAG.DateTimeOriginal: info.datetime_original,
        TAG.DateTimeDigitized: info.datetime_original,
        TAG.OffsetTimeOriginal: info.offset,
        TAG.ExposureTime: None
        if info.exposure_time is None
        else _exposure_rational(info.exposure_time),
        TAG.FNumber: None if info.f_number is None else _rational(info.f_number, 10_000),
        TAG.ISOSpeedRatings: info.iso,
        TAG.FocalLength: None
        if info.focal_length is None
        else _rational(info.focal_length, 10_000),
        TAG.FocalLengthIn35mmFilm: info.focal_length_35mm,
        TAG.LensModel: info.lens,
    }
    tags: dict[int, object] = {tag: value for tag, value in values.items() if value is not None}
    if tags:
        tags[TAG.ExifVersion] = b"0232"
    return tags


def _gps_ifd_tags(info: ExifInfo) -> dict[int, object]:
    if info.gps is None:
        return {}
    latitude, longitude, altitude = info.gps
    tags: dict[int, object] = {
        GPS.GPSVersionID: b"\x02\x03\x00\x00",
        GPS.GPSLatitudeRef: "S" if latitude < 0 else "N",
        GPS.GPSLatitude: _dms(latitude),
        GPS.GPSLongitudeRef: "W" if longitude < 0 else "E",
        GPS.GPSLongitude: _dms(longitude),
    }
    if altitude is not None:
        tags[GPS.GPSAltitudeRef] = 1 if altitude < 0 else 0
        tags[GPS.GPSAltitude] = _rational(abs(altitude), 1000)
    return tags


def exif_bytes(info: ExifInfo) -> bytes:
    """The EXIF block (``b"Exif\\0\\0"`` + little-endian TIFF) Pillow writes for ``info``.

    Holds IFD0, the Exif IFD and the GPS IFD (the latter two only when they have fields).
    Rational values are written as ``IFDRational`` (RATIONAL type), as cameras do.
    """
    exif = Image.Exif()
    exif.update(_ifd0_tags(info))
    for ifd, tags in (
        (ExifTags.IFD.Exif, _exif_ifd_tags(info)),
        (ExifTags.IFD.GPSInfo, _gps_ifd_tags(info)),
    ):
        if tags:
            exif.get_ifd(ifd).update(tags)
    return exif.tobytes()


# ----------------------------------------------------------------------------- TIFF plumbing


def _tifffile_tags(tags: dict[int, str | int]) -> list[TagTuple]:
    """IFD0 EXIF tags as tifffile ``extratags`` (ASCII, SHORT)."""
    extratags: list[TagTuple] = []
    for code, value in sorted(tags.items()):
        if isinstance(value, str):
            extratags.append((code, "s", 0, value, True))
        else:
            extratags.append((code, "h" if int(value) < 0 else "H", 1, int(value), True))
    return extratags


def _placeholder_tags(info: ExifInfo) -> list[TagTuple]:
    """Placeholder IFD pointers for the sub-IFDs ``info`` needs (see :func:`_attach_sub_ifds`)."""
    wanted = {ExifTags.IFD.Exif: _exif_ifd_tags(info), ExifTags.IFD.GPSInfo: _gps_ifd_tags(info)}
    return [(code, "I", 1, 0, True) for code, ifd in _PLACEHOLDERS.items() if wanted[ifd]]


def _attach_sub_ifds(path: Path, info: ExifInfo) -> None:
    """Append the Exif and GPS IFDs to a little-endian classic TIFF and link them from IFD0.

    The file must have been written with :func:`_placeholder_tags` in its first IFD: each
    placeholder entry is renamed to the real pointer tag and given the new IFD's offset.
    """
    contents = {ExifTags.IFD.Exif: _exif_ifd_tags(info), ExifTags.IFD.GPSInfo: _gps_ifd_tags(info)}
    with tifffile.TiffFile(path) as tif:
        if tif.byteorder != "<" or tif.is_bigtiff:
            raise ValueError(f"{path}: expected a little-endian classic TIFF")
        page_tags = tif.pages.first.tags
        entries = {
            code: (page_tags[code].offset, page_tags[code].valueoffset)
            for code in _PLACEHOLDERS
            if code in page_tags
        }
    with open(path, "r+b") as fh:
        for placeholder, (entry_offset, value_offset) in entries.items():
            ifd_tag = _PLACEHOLDERS[placeholder]
            ifd = TiffImagePlugin.ImageFileDirectory_v2(group=ifd_tag)  # little-endian default
            for code, value in contents[ifd_tag].items():
                ifd[code] = value
            start = fh.seek(0, os.SEEK_END)
            if start % 2:
                start += fh.write(b"\0")
            fh.write(ifd.tobytes(start))
            fh.seek(entry_offset)
            fh.write(struct.pack("<H", int(ifd_tag)))
            fh.seek(value_offset)
            fh.write(struct.pack("<I", start))


# ----------------------------------------------------------------------------- writers


def _prepare(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_jpeg(
    path: str | os.PathLike, rgb: np.ndarray, exif: ExifInfo | None = None, quality: int = 92
) -> Path:
    """Write a baseline JPEG. ``rgb``: uint8 ``(H, W, 3)``, or ``(H, W)`` for greyscale."""
    path = _prepare(path)
    extra = {} if exif is None else {"exif": exif_bytes(exif)}
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, "JPEG", quality=quality, **extra)
    return path


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """Write a PNG. ``pixels``: uint8 ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` L,
    or uint16 ``(H, W)`` (16-bit greyscale)."""
    path = _prepare(path)
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16 and pixels.ndim != 2:
        raise ValueError("16-bit PNGs must be greyscale (H, W)")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported dtype {pixels.dtype}")
    Image.fromarray(pixels).save(path, "PNG")
    return path


def write_tiff16(path: str | os.PathLike, rgb16: np.ndarray, exif: ExifInfo | None = None) -> Path:
    """Write a 16-bit RGB TIFF (deflate). ``rgb16``: uint16 ``(H, W, 3)``.

    EXIF goes into IFD0 plus linked Exif and GPS IFDs, as a camera's TIFF would have it.
    """
    path = _prepare(path)
    if rgb16.dtype != np.uint16 or rgb16.ndim != 3 or rgb16.shape[2] != 3:
        raise ValueError("write_tiff16 needs a uint16 (H, W, 3) array")
    info = exif or ExifInfo()
    tifffile.imwrite(
        path,
        rgb16,
        photometric="rgb",
        compression="zlib",
        metadata=None,
        software=False,
        extratags=_tifffile_tags(_ifd0_tags(info)) + _placeholder_tags(info),
    )
    _attach_sub_ifds(path, info)
    return path


def write_heic(
    path: str | os.PathLike, rgb: np.ndarray, exif: ExifInfo | None = None, quality: int = 80
) -> Path:
    """Write a HEIC (HEVC) with pillow-heif. ``rgb``: uint8 ``(H, W, 3)``.

    Slow (~1 s for 800x600): keep images small. pillow-heif turns an EXIF orientation into a
    HEIF ``irot``/``imir`` transform, so decoders show the image upright.
    """
    path = _prepare(path)
    heif = pillow_heif.from_pillow(Image.fromarray(np.ascontiguousarray(rgb)))
    extra = {} if exif is None else {"exif": exif_bytes(exif)}
    heif.save(path, quality=quality, **extra)
    return path


def _raw_lut(dtype: np.dtype) -> np.ndarray:
    """uint16 raw value for every sRGB code value of ``dtype`` (uint8 or uint16): the code is
    linearised and spread between :data:`DNG_BLACK` and :data:`DNG_WHITE`."""
    scaled = np.arange(np.iinfo(dtype).max + 1, dtype=np.float64) / np.iinfo(dtype).max
    linear = np.where(scaled <= 0.04045, scaled / 12.92, ((scaled + 0.055) / 1.055) ** 2.4)
    return np.round(DNG_BLACK + linear * (DNG_WHITE - DNG_BLACK)).astype(np.uint16)


def _mosaic_rggb(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8/uint16 ``(H, W, 3)`` -> uint16 ``(H', W')`` RGGB Bayer raw values (H', W'
    rounded down to even)."""
    if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError("write_dng needs a uint8 or uint16 (H, W, 3) array")
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    lut = _raw_lut(rgb.dtype)
    cfa = np.empty((height, width), np.uint16)
    cfa[0::2, 0::2] = lut[rgb[0:height:2, 0:width:2, 0]]
    cfa[0::2, 1::2] = lut[rgb[0:height:2, 1:width:2, 1]]
    cfa[1::2, 0::2] = lut[rgb[1:height:2, 0:width:2, 1]]
    cfa[1::2, 1::2] = lut[rgb[1:height:2, 1:width:2, 2]]
    return cfa


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    return (rgb.astype(np.uint32) * 255 // np.iinfo(rgb.dtype).max).astype(np.uint8)


def _preview_jpeg(rgb: np.ndarray, long_edge: int) -> tuple[bytes, tuple[int, int]]:
    """Baseline JPEG of ``rgb`` scaled so its long edge is ``long_edge`` (never enlarged);
    returns the bytes and the ``(height, width)``."""
    image = Image.fromarray(np.ascontiguousarray(_to_uint8(rgb)))
    scale = min(1.0, long_edge / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), (image.height, image.width)


def _srational_tuple(values: list[float], denominator: int = 10_000) -> tuple[int, ...]:
    return tuple(x for v in values for x in (round(v * denominator), denominator))


def _dng_ifd0_tags(info: ExifInfo) -> list[TagTuple]:
    camera = " ".join(filter(None, (info.make, info.model))) or "imganalyzer synthetic camera"
    matrix = [v for row in XYZ_TO_LINEAR_SRGB for v in row]
    return [
        (DNG_VERSION, "B", 4, (1, 4, 0, 0), True),
        (DNG_BACKWARD_VERSION, "B", 4, (1, 1, 0, 0), True),
        (UNIQUE_CAMERA_MODEL, "s", 0, camera, True),
        (COLOR_MATRIX_1, 10, 9, _srational_tuple(matrix), True),  # SRATIONAL
        (AS_SHOT_NEUTRAL, 5, 3, (1, 1, 1, 1, 1, 1), True),  # RATIONAL
        (CALIBRATION_ILLUMINANT_1, "H", 1, ILLUMINANT_D65, True),
    ]


def _dng_raw_tags() -> list[TagTuple]:
    return [
        (CFA_REPEAT_PATTERN_DIM, "H", 2, (2, 2), True),
        (CFA_PATTERN, "B", 4, (0, 1, 1, 2), True),  # R G / G B
        (BLACK_LEVEL, "I", 1, DNG_BLACK, True),
        (WHITE_LEVEL, "I", 1, DNG_WHITE, True),
    ]


def write_dng(
    path: str | os.PathLike,
    rgb: np.ndarray,
    exif: ExifInfo | None = None,
    preview_long_edge: int | None = 1024,
) -> Path:
    """Write a CFA (RGGB Bayer) DNG that LibRaw/rawpy opens and demosaics.

    ``rgb``: uint8 or uint16 sRGB ``(H, W, 3)``; it is linearised and mosaiced into 14-bit raw
    values (black 512, white 16383), odd rows/columns dropped. ColorMatrix1 is XYZ -> linear
    sRGB and AsShotNeutral is 1, 1, 1, so the colours come back roughly as given.

    ``preview_long_edge=None``: IFD0 is the raw image, no preview. Otherwise IFD0 is an 8-bit
    baseline JPEG preview (NewSubfileType 1, Compression 7, YCbCr, one strip) with that long
    edge, and the raw CFA image is in a SubIFD (NewSubfileType 0), so
    ``rawpy.imread(p).extract_thumb()`` returns the JPEG without touching the raw data.

    EXIF: Make/Model/Orientation/Software/DateTime/Artist/Copyright/Rating in IFD0, the
    Exif IFD (34665) and the GPS IFD (34853) linked from IFD0, as in cameras' DNGs.
    """
    path = _prepare(path)
    info = exif or ExifInfo()
    cfa = _mosaic_rggb(rgb)
    ifd0_tags = _dng_ifd0_tags(info) + _tifffile_tags(_ifd0_tags(info)) + _placeholder_tags(info)
    with tifffile.TiffWriter(path, byteorder="<", bigtiff=False) as tif:
        if preview_long_edge is not None:
            jpeg, (height, width) = _preview_jpeg(rgb[..., :3], preview_long_edge)
            tif.write(
                iter([jpeg]),
                shape=(height, width, 3),
                dtype=np.uint8,
                photometric="ycbcr",
                compression=7,
                rowsperstrip=height,
                subfiletype=1,
                subifds=1,
                extratags=ifd0_tags,
                metadata=None,
                software=False,
            )
            ifd0_tags = []
        tif.write(
            cfa,
            photometric=PHOTOMETRIC_CFA,
            subfiletype=0,
            extratags=ifd0_tags + _dng_raw_tags(),
            metadata=None,
            software=False,
        )
    _attach_sub_ifds(path, info)
    return path
