"""Header-only image metadata: EXIF, maker notes, XMP and displayed pixel size, never pixels.

* Fields come from exiv2 (:mod:`imganalyzer.decode.exif_fields`: JPEG, TIFF and TIFF-based RAW, CR3,
  HEIF/AVIF, RAF, CRW, PNG ``eXIf``, WebP, XMP, maker notes). For HEIF the primary image's own
  EXIF block is read. Where exiv2 refuses a file, or cannot decode its maker note while make,
  ISO or lens is missing, ExifTool is asked (:mod:`.exiftool`, if installed). Where
  neither found the basic fields, exifread's reading fills the gaps (``details=False``; for
  WebP and HEIF from the EXIF block Pillow or libheif extracted).
* Pixel size: Pillow's lazy ``Image.open`` machinery (header only, and without the
  decompression-bomb limit: a 40000 x 20000 panorama is a valid photo), pillow-heif for HEIF
  (its size already includes the ``irot``/``imir`` transforms), and LibRaw for RAW files
  (``rawpy.imread(...).sizes`` parses the headers only). For RAW files the orientation is
  LibRaw's ``flip``, the orientation LibRaw develops them with. A RAW file LibRaw cannot open
  (its pixel data stripped, say) keeps the metadata exiv2 read, without a size.
* ``place``, ``region`` and ``country`` come from the GPS position (:mod:`.places`).

:func:`read_metadata` returns a JSON-ready dict with every key of :data:`FIELDS` (None when
absent) or raises :class:`MetadataError`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Mapping
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, cast

import exifread
import pillow_heif
import rawpy
from PIL import Image

from imganalyzer import formats
from imganalyzer.decode import exif_fields, jxl
from imganalyzer.decode.exiftool import exiftool_fields
from imganalyzer.decode.failures import FileError, check_file, classify
from imganalyzer.decode.names import camera_name
from imganalyzer.decode.places import place_of
from imganalyzer.decode.readers import PILLOW_ERRORS, open_pillow

FIELDS = (
    "make",
    "model",
    "camera",
    "lens",
    "exposure_time",
    "exposure_time_text",
    "f_number",
    "iso",
    "focal_length",
    "focal_length_35mm",
    "datetime_original",
    "gps_latitude",
    "gps_longitude",
    "gps_altitude",
    "orientation",
    "width",
    "height",
    "software",
    "artist",
    "copyright",
    "rating",
    "format",
    "place",
    "region",
    "country",
)

# exifread reports unremarkable things (a PNG without eXIf, a short slice) as warnings.
logging.getLogger("exifread").setLevel(logging.ERROR)

log = logging.getLogger(__name__)
# warnings.catch_warnings() changes process-wide state: one thread at a time.
_WARNINGS_LOCK = threading.Lock()

# TIFF-based RAW formats LibRaw reads, by extension (their magic is plain TIFF).
TIFF_RAW_EXTENSIONS = frozenset(
    (".dng", ".cr2", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".pef", ".srw", ".3fr", ".erf")
    + (".kdc", ".dcr", ".mef", ".mos", ".iiq", ".rwl", ".raw", ".orf", ".rw2")
)
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", formats.MINI_BRAND})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
# LibRaw ``flip`` -> EXIF orientation (inverse of dcraw's "50132467"[orientation]).
LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
DNG_VERSION_TAG = "Image Tag 0xC612"
XMP_RATING = re.compile(rb"xmp:Rating\s*(?:=\s*[\"']|>)\s*(-?\d+)")
# Without any of these, the primary reader's answer is completed from exifread's.
EXIF_CORE_FIELDS = ("make", "model", "datetime_original", "exposure_time", "f_number")
# Fields that cameras keep in maker notes: when exiv2 cannot decode a maker note and one of
# them is missing, ExifTool (where installed) is asked.
MAKER_NOTE_FIELDS = ("make", "iso", "lens")


class MetadataError(FileError):
    """One-line reason why a file's metadata cannot be read, and its ``kind`` (one of
    :data:`imganalyzer.results.ERROR_KINDS`), as :func:`imganalyzer.decode.failures.classify`
    gives it: the decode job gives the same file the same kind."""


# ----------------------------------------------------------------------------- entry point


def read_metadata(path: str | os.PathLike) -> dict[str, object]:
    """Metadata of the image at ``path`` from its headers only (no pixel decoding).

    Returns every key of :data:`FIELDS`, None where a value is absent. ``width``/``height``
    are the size as displayed (swapped for EXIF orientations 5-8). Raises
    :class:`MetadataError` for missing, empty, unreadable, truncated or non-image files; a
    corrupt EXIF block only leaves the EXIF fields None.
    """
    path = Path(path)
    try:
        check_file(path)
        with open(path, "rb") as fh:
            result = _read(path, fh)
    except MetadataError:
        raise
    except (FileError, OSError) as error:
        raise MetadataError(*classify(error, path)) from None
    result = {key: result.get(key) for key in FIELDS}
    # The readers give each coordinate as a float or None (exif_fields.coordinate, _coordinate).
    latitude = cast("float | None", result["gps_latitude"])
    longitude = cast("float | None", result["gps_longitude"])
    place = place_of(latitude, longitude)
    if place is not None:
        result.update(place.as_fields())
    return result


def _read(path: Path, fh: BinaryIO) -> dict[str, object]:
    head = fh.read(64)
    container = _sniff(head)
    tags, exif = _primary_exif(path)
    if container == "heif":
        return _read_heif(path, fh, head, tags, exif)
    if container == "jxl":
        return _read_jxl(path, fh, exif)
    if container == "raw":  # RAW formats exifread cannot parse (CR3, RAF, CRW, ...)
        return _read_raw(path, head, exif, is_dng=False)
    fallback_tags = _exif_from_file(fh) if _incomplete(exif) else {}
    is_dng = "Exif.Image.DNGVersion" in tags or DNG_VERSION_TAG in fallback_tags
    if container == "tiff" and _is_tiff_raw(head, path, is_dng):
        return _read_raw(path, head, _completed(exif, fallback_tags, None), is_dng=is_dng)
    return _read_pillow(path, fh, exif, fallback_tags)


def _primary_exif(path: Path) -> tuple[dict[str, object], dict[str, object]]:
    """exiv2's tags and fields; where exiv2 refuses the file, ExifTool's fields (if installed)."""
    try:
        tags = exif_fields.read_tags(path)
    except exif_fields.Exiv2Refused as refusal:
        log.debug("%s: exiv2 refused: %s", path, refusal)
        return {}, exiftool_fields(path) or {}
    exif = dict.fromkeys(FIELDS)
    exif.update(exif_fields.fields(tags) if tags else {})
    if exif_fields.undecoded_maker_note(tags) and _gaps(exif, MAKER_NOTE_FIELDS):
        exif = _filled(exif, exiftool_fields(path) or {})  # maker notes exiv2 cannot decode
    return tags, exif


def _gaps(fields: Mapping[str, object], keys: tuple[str, ...]) -> bool:
    return any(fields.get(key) is None for key in keys)


def _filled(fields: Mapping[str, object], more: Mapping[str, object]) -> dict[str, object]:
    return {key: more.get(key) if fields.get(key) is None else fields[key] for key in FIELDS}


def _incomplete(exif: Mapping[str, object]) -> bool:
    """True when the primary reader found none of the basic EXIF fields (ask exifread too)."""
    return all(exif.get(key) is None for key in EXIF_CORE_FIELDS)


def _completed(
    exif: Mapping[str, object], tags: Mapping[str, object], xmp: bytes | None
) -> dict[str, object]:
    """The primary reader's fields, gaps filled from exifread's reading of ``tags``."""
    if not _incomplete(exif):
        return dict(exif)
    fallback = _fields(tags, xmp)
    return {key: exif.get(key) if exif.get(key) is not None else fallback[key] for key in FIELDS}


# ----------------------------------------------------------------------------- containers


def _sniff(head: bytes) -> str:
    """Which reader handles the file: "heif", "jxl", "tiff", "raw" (LibRaw only), or "other"
    (Pillow)."""
    if formats.sniff(head) == "jxl":
        return "jxl"
    if head[4:8] == b"ftyp":
        return "raw" if head[8:12] == b"crx " else "heif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00"):
        return "tiff"
    if (
        head.startswith((b"FUJIFILMCCD-RAW", b"FOVb", b"\x00MRM", b"ARRI"))
        or head[6:14] == b"HEAPCCDR"
    ):
        return "raw"
    return "other"


def _is_tiff_raw(head: bytes, path: Path, is_dng: bool) -> bool:
    return (
        head[8:10] == b"CR"  # Canon CR2
        or head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")  # Olympus ORF, Panasonic RW2
        or is_dng
        or path.suffix.lower() in TIFF_RAW_EXTENSIONS
    )


def _raw_format(head: bytes, path: Path, is_dng: bool) -> str:
    """A RAW file's format: DNG, one its first bytes name, else its extension."""
    if is_dng:
        return "dng"
    sniffed = formats.sniff(head)
    if sniffed in _SNIFFED_RAW:
        return sniffed
    return path.suffix.lower().lstrip(".") or "raw"


_SNIFFED_RAW = frozenset({"cr2", "cr3", "crw", "raf", "x3f", "mrw", "orf", "rw2"})


def _heif_format(head: bytes) -> str:
    box_size = int.from_bytes(head[:4], "big")
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(box_size, len(head)), 4)}
    if head[8:12] == formats.MINI_BRAND:  # a "mini" file names its codec brand in minor_version
        brands.add(head[12:16])
    if head[8:12] in AVIF_BRANDS or (head[8:12] in HEIF_BRANDS and brands & AVIF_BRANDS):
        return "avif"
    if brands & HEIC_BRANDS:
        return "heic"
    return "heif"


def _read_pillow(
    path: Path, fh: BinaryIO, exif: Mapping[str, object], tags: Mapping[str, object]
) -> dict[str, object]:
    try:
        image = _open_header(path, fh)
    except MetadataError:
        if _incomplete(exif):
            raise
        fh.seek(0)  # exiv2 read the metadata of a file Pillow cannot open
        return {**_header_unreadable(exif), "format": formats.sniff(fh.read(32))}
    image_format = (image.format or "").lower()  # Image.open always sets it
    fmt = {"mpo": "jpeg"}.get(image_format, image_format)
    if _incomplete(exif) and not tags and isinstance(image.info.get("exif"), bytes):
        tags = _exif_from_block(image.info["exif"])
    xmp = _xmp(image)
    result = _completed(exif, tags, xmp)
    if result["rating"] is None and xmp:  # XMP that exiv2 rejects (undeclared prefix, ...)
        match = XMP_RATING.search(xmp)
        result["rating"] = int(match[1]) if match else None
    result["orientation"] = result["orientation"] or 1
    _set_size(result, _stored_size(image), swap=result["orientation"] in (5, 6, 7, 8))
    result["format"] = fmt
    return result


def _header_unreadable(exif: Mapping[str, object]) -> dict[str, object]:
    result = {key: exif.get(key) for key in FIELDS}
    result["orientation"] = result["orientation"] or 1
    return result


def _read_heif(
    path: Path,
    fh: BinaryIO,
    head: bytes,
    tags: Mapping[str, object],
    primary: Mapping[str, object],
) -> dict[str, object]:
    fh.seek(0)
    try:
        heif = pillow_heif.open_heif(fh, convert_hdr_to_8bit=False)
        image = heif[heif.primary_index]
        size, info = image.size, image.info
    except (OSError, ValueError, RuntimeError, SyntaxError, EOFError) as error:
        if head[8:12] in AVIF_BRANDS:  # pillow-heif has no AVIF decoder here; Pillow may
            return _read_pillow(path, fh, primary, {})
        if not _incomplete(primary):
            return {**_header_unreadable(primary), "format": _heif_format(head)}
        raise MetadataError(*classify(error, path)) from None
    exif = info.get("exif")
    if isinstance(exif, bytes):  # the primary image's EXIF (a file may hold one per image)
        primary = _filled(_primary_image_fields(exif, tags), primary)
    tags = _exif_from_block(exif) if isinstance(exif, bytes) and _incomplete(primary) else {}
    xmp = info.get("xmp")
    result = _completed(primary, tags, xmp if isinstance(xmp, bytes) else None)
    result["orientation"] = result["orientation"] or 1
    _set_size(result, size, swap=False)  # libheif already applied the irot/imir transforms
    result["format"] = _heif_format(head)
    return result


def _primary_image_fields(block: bytes, file_tags: Mapping[str, object]) -> dict[str, object]:
    try:
        block_tags = exif_fields.read_exif_block(block)
    except exif_fields.Exiv2Refused:
        return {}
    xmp = {key: value for key, value in file_tags.items() if key.startswith("Xmp.")}
    return exif_fields.fields({**xmp, **block_tags})


def _read_jxl(path: Path, fh: BinaryIO, exif: Mapping[str, object]) -> dict[str, object]:
    """JPEG XL: the EXIF exiv2 read from its Exif box; size and orientation from the codestream
    header (the orientation libjxl displays it with: it ignores the one in the Exif box)."""
    try:
        header = jxl.read_header(fh)
    except (OSError, ValueError, EOFError) as error:
        if not _incomplete(exif):
            return {**_header_unreadable(exif), "format": "jxl"}
        raise MetadataError(*classify(error, path)) from None
    result = {key: exif.get(key) for key in FIELDS}
    result["orientation"] = header.orientation
    _set_size(result, header.displayed_size, swap=False)
    result["format"] = "jxl"
    return result


def _read_raw(
    path: Path, head: bytes, exif: Mapping[str, object], *, is_dng: bool
) -> dict[str, object]:
    """RAW files: size and orientation from LibRaw, which is what decodes them."""
    try:
        with rawpy.imread(os.fspath(path)) as raw:  # parses headers; raw data is not unpacked
            sizes = raw.sizes
    except (rawpy.LibRawError, OSError, ValueError) as error:
        if not _incomplete(exif):  # e.g. a RAW whose pixel data was stripped: metadata is fine
            return {**_header_unreadable(exif), "format": _raw_format(head, path, is_dng)}
        raise MetadataError(*classify(error, path)) from None
    width, height = sizes.width, sizes.height
    if sizes.pixel_aspect > 1.0001:  # LibRaw stretches non-square pixels when it develops
        width = round(width * sizes.pixel_aspect)
    elif sizes.pixel_aspect < 0.9999:
        height = round(height / sizes.pixel_aspect)
    result = {key: exif.get(key) for key in FIELDS}
    result["orientation"] = LIBRAW_FLIP_TO_ORIENTATION.get(sizes.flip, 1)
    _set_size(result, (width, height), swap=result["orientation"] in (5, 6, 7, 8))
    result["format"] = _raw_format(head, path, is_dng)
    return result


def _open_header(path: Path, fh: BinaryIO) -> Image.Image:
    """The file's header, opened by Pillow the way the decoder opens it (no pixels read)."""
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read": we raise instead
            return open_pillow(fh)
    except PILLOW_ERRORS as error:
        raise MetadataError(*classify(error, path)) from None


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as stored. Pillow >= 12 reports TIFFs with orientations 5-8 swapped."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None and isinstance(tags.get(256), int) and isinstance(tags.get(257), int):
        return tags[256], tags[257]
    return image.size


def _set_size(result: dict[str, object], size: tuple[int, int], *, swap: bool) -> None:
    width, height = size
    result["width"], result["height"] = (height, width) if swap else (width, height)


def _one_line(error: object) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


# ----------------------------------------------------------------------------- EXIF


def _exif_from_file(fh: BinaryIO) -> dict[str, object]:
    """exifread's tags ("IFD Name" -> IfdTag); {} when there are none or they are corrupt."""
    try:
        fh.seek(0)
        return exifread.process_file(fh, details=False, extract_thumbnail=False)
    except Exception as error:  # noqa: BLE001 - exifread raises anything on corrupt data
        log.debug("unreadable EXIF: %s", _one_line(error))
        return {}


def _exif_from_block(block: bytes) -> dict[str, object]:
    """Tags from an EXIF block as containers store it (optional ``Exif\\0\\0`` + TIFF)."""
    start = block.find(b"Exif\x00\x00")
    if 0 <= start <= 8:  # HEIF/JPEG style prefixes
        block = block[start + 6 :]
    if block[:4] not in (b"II*\x00", b"MM\x00*"):
        return {}
    return _exif_from_file(io.BytesIO(block))


def _xmp(image: Image.Image) -> bytes | None:
    xmp = image.info.get("xmp")
    if xmp is None and hasattr(image, "tag_v2"):
        xmp = image.tag_v2.get(700)  # TIFF XMP tag
    if isinstance(xmp, str):
        return xmp.encode("utf-8", "replace")
    return xmp if isinstance(xmp, bytes) else None


def _tag(tags: Mapping[str, object], name: str, ifds: tuple[str, ...] = ("EXIF", "Image")) -> Any:
    """The first ``values`` of tag ``name`` found in ``ifds`` (TIFF/EP puts Exif tags in IFD0)."""
    for ifd in ifds:
        tag = tags.get(f"{ifd} {name}")
        values = getattr(tag, "values", None)
        if values not in (None, "", [], b""):
            return values
    return None


def _text(value: object) -> str | None:
    if isinstance(value, list):  # BYTE/UNDEFINED text
        try:
            value = bytes(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    return value or None


def _number(value: object) -> float | None:
    first: Any = value[0] if isinstance(value, list) and value else value
    if isinstance(first, tuple) and first:  # exifread wraps FLOAT/DOUBLE values in a tuple
        first = first[0]
    try:
        if isinstance(first, Fraction) and first.denominator == 0:
            return None
        number = float(first)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(round(number))


def _positive(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _exposure_text(value: object) -> str | None:
    """How cameras show exposure times: "1/250", "1/3", "0.3", "2", "2.5"."""
    seconds = _positive(value)
    if seconds is None:
        return None
    first = value[0] if isinstance(value, list) else value
    unit_fraction = isinstance(first, Fraction) and first.numerator == 1
    if seconds < 0.25 or (seconds < 1 and unit_fraction):
        return f"1/{round(1 / seconds)}"
    return f"{seconds:.1f}".removesuffix(".0")


def _datetime(tags: Mapping[str, object]) -> str | None:
    text = _text(_tag(tags, "DateTimeOriginal"))
    if text is None:
        return None
    try:
        value = datetime.strptime(text[:19].replace("-", ":"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = _text(_tag(tags, "OffsetTimeOriginal"))
    suffix = offset if offset and re.fullmatch(r"[+-]\d\d:\d\d", offset) else ""
    return value.isoformat() + suffix


def _coordinate(tags: Mapping[str, object], name: str, negative_ref: str) -> float | None:
    values = _tag(tags, f"GPS{name}", ("GPS",))
    if not isinstance(values, list) or not values:
        return None
    parts = [_number([v]) for v in values[:3]]
    if any(part is None for part in parts):
        return None
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    ref = _text(_tag(tags, f"GPS{name}Ref", ("GPS",)))
    if ref and ref.upper().startswith(negative_ref):
        degrees = -degrees
    return round(degrees, 7)


def _altitude(tags: Mapping[str, object]) -> float | None:
    altitude = _number(_tag(tags, "GPSAltitude", ("GPS",)))
    if altitude is None:
        return None
    below = _integer(_tag(tags, "GPSAltitudeRef", ("GPS",))) == 1
    return round(-altitude if below else altitude, 3)


def _iso(tags: Mapping[str, object]) -> int | None:
    """ISOSpeedRatings, or ISOSpeed / RecommendedExposureIndex where it overflows (65535)."""
    iso = _integer(_tag(tags, "ISOSpeedRatings"))
    if iso in (None, 0, 65535):
        iso = (
            _integer(_tag(tags, "ISOSpeed"))
            or _integer(_tag(tags, "RecommendedExposureIndex"))
            or iso
        )
    return iso if iso and iso > 0 else None


def _rating(tags: Mapping[str, object], xmp: bytes | None) -> int | None:
    rating = _integer(_tag(tags, "Rating", ("Image",)))
    if rating is None and xmp:
        match = XMP_RATING.search(xmp)
        rating = int(match[1]) if match else None
    return rating


def _fields(tags: Mapping[str, object], xmp: bytes | None) -> dict[str, object]:
    """Every key of :data:`FIELDS` from exifread tags (size and format left None)."""
    exposure = _tag(tags, "ExposureTime")
    orientation = _integer(_tag(tags, "Orientation", ("Image",)))
    make = _text(_tag(tags, "Make", ("Image",)))
    model = _text(_tag(tags, "Model", ("Image",)))
    result: dict[str, object] = dict.fromkeys(FIELDS)
    result.update(
        make=make,
        model=model,
        camera=camera_name(make, model),
        lens=_text(_tag(tags, "LensModel")),
        exposure_time=_positive(exposure),
        exposure_time_text=_exposure_text(exposure),
        f_number=_positive(_tag(tags, "FNumber")),
        iso=_iso(tags),
        focal_length=_positive(_tag(tags, "FocalLength")),
        focal_length_35mm=_integer(_tag(tags, "FocalLengthIn35mmFilm")) or None,
        datetime_original=_datetime(tags),
        gps_latitude=_coordinate(tags, "Latitude", "S"),
        gps_longitude=_coordinate(tags, "Longitude", "W"),
        gps_altitude=_altitude(tags),
        orientation=orientation if orientation in range(1, 9) else 1,
        software=_text(_tag(tags, "Software", ("Image",))),
        artist=_text(_tag(tags, "Artist", ("Image",))),
        copyright=_text(_tag(tags, "Copyright", ("Image",))),
        rating=_rating(tags, xmp),
    )
    return result
