"""Metadata fields from exiv2's reading of a file: EXIF, maker notes and XMP.

exiv2 (through pyexiv2's binding) parses JPEG, TIFF and TIFF-based RAW, CR3 and HEIF/AVIF (ISO
BMFF), RAF, PNG ``eXIf``/``zTXt``, WebP, JPEG XL and maker notes, without decoding pixels. Its
values come as text ("1/250", "51/1 10/1 4181/100", "0 200"); this module turns them into the
fields of :data:`metadata.FIELDS`. Where standard EXIF has no value, maker notes and
XMP fill in, the way ExifTool does: ISO from Canon, Nikon, Panasonic and Casio maker notes (with
the vendors' codes turned into numbers), lens names from Canon/Olympus/Panasonic maker notes and
XMP, the capture date from XMP with its UTC offset.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

from pyexiv2 import exiv2api

from imganalyzer.decode.names import camera_name

# exiv2 prints warnings about odd files on stderr: mute it (the reason of a failure is raised).
exiv2api.set_log_level(4)

Tags = Mapping[str, object]  # exiv2 key ("Exif.Photo.FNumber") -> text, or a list for XMP bags

_RATIONAL = re.compile(r"^(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?:/(-?\d+))?$")
_XMP_DATE = re.compile(
    r"^(\d{4})-?(\d\d)-?(\d\d)T(\d\d):(\d\d)(?::(\d\d))?(?:\.\d+)?(Z|[+-]\d\d:\d\d)?"
)
_EXIF_DATE = re.compile(r"^(\d{4})[:-](\d\d)[:-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_XMP_GPS = re.compile(r"^(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?([NSEW])$")
_OFFSET = re.compile(r"^[+-]\d\d:\d\d$")
# Canon CameraISO codes (CanonCs.ISOSpeed); 15 = auto, resolved from BaseISO x AutoISO.
_CANON_ISO_CODES = {16: 50, 17: 100, 18: 200, 19: 400, 20: 800}
# Casio type-1 maker notes store ISO as a code.
_CASIO_ISO_CODES = {3: 50, 4: 64, 6: 100, 9: 200}


_STANDARD_GROUPS = frozenset(
    {"Image", "Photo", "GPSInfo", "Iop", "Thumbnail", "MakerNote", "Image2", "Image3"}
    | {"SubImage1", "SubImage2", "SubImage3", "SubImage4", "SubThumb1", "PanasonicRaw"}
)


class Exiv2Refused(Exception):
    """exiv2 cannot read this file's metadata (its one-line reason)."""


def read_tags(path: str | os.PathLike) -> dict[str, object]:
    """exiv2's EXIF (with maker notes) and XMP of ``path``: key -> text (XMP bags: list)."""
    return _read(lambda: exiv2api.Image(os.fsencode(path)))


def read_exif_block(block: bytes) -> dict[str, object]:
    """exiv2's reading of a bare EXIF block (a TIFF structure, optionally ``Exif\\0\\0`` first),
    such as the one HEIF stores for its primary image, wrapped in a minimal JPEG."""
    start = block.find(b"Exif\x00\x00")
    tiff = block[start + 6 :] if 0 <= start <= 8 else block
    segment = b"Exif\x00\x00" + tiff
    if len(segment) + 2 > 0xFFFF:
        raise Exiv2Refused("EXIF block larger than one JPEG segment")
    jpeg = b"\xff\xd8\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment + b"\xff\xd9"
    buffer = exiv2api.Buffer(jpeg, len(jpeg))
    return _read(lambda: exiv2api.Image(buffer))


def undecoded_maker_note(tags: Tags) -> bool:
    """True when the file has a maker note that exiv2 could not decode (no vendor group)."""
    if "Exif.Photo.MakerNote" not in tags:
        return False
    return not any(key.split(".")[1] not in _STANDARD_GROUPS for key in tags if key[:5] == "Exif.")


def _read(open_image: Callable[[], Any]) -> dict[str, object]:
    try:
        image = open_image()
    except Exception as error:  # noqa: BLE001 - the binding raises RuntimeError and others
        raise Exiv2Refused(" ".join(str(error).split()) or type(error).__name__) from None
    try:
        tags: dict[str, object] = {}
        for reader in (image.read_exif, image.read_xmp):
            for datum in reader():
                key = _decode(datum.get("tag", b""))
                if key and key not in tags:
                    tags[key] = _value(datum.get("value", b""))
        return tags
    except Exception as error:  # noqa: BLE001
        raise Exiv2Refused(" ".join(str(error).split()) or type(error).__name__) from None
    finally:
        image.close_image()


def _decode(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) else ""


def _value(raw: object) -> object:
    if isinstance(raw, list):
        return [_decode(item) for item in raw]
    return _decode(raw)


# ----------------------------------------------------------------------------- values


def _get(tags: Tags, *keys: str) -> object:
    for key in keys:
        value = tags.get(key)
        if value not in (None, "", []):
            return value
    return None


def text(tags: Tags, *keys: str) -> str | None:
    value = _get(tags, *keys)
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str):
        return None
    if value.startswith('lang="'):  # XMP LangAlt: 'lang="x-default" Some text'
        value = value.split(" ", 1)[1] if " " in value else ""
    value = value.replace("\x00", " ").replace("\ufffd", " ")
    value = " ".join(value.split())
    return value if value and any(ch.isprintable() and not ch.isspace() for ch in value) else None


def numbers(value: object) -> list[float]:
    """ "51/1 10/1 4181/100" -> [51.0, 10.0, 41.81]; unparseable parts end the list."""
    if not isinstance(value, str):
        return []
    result = []
    for token in value.split():
        match = _RATIONAL.match(token)
        if not match:
            break
        numerator, denominator = float(match[1]), match[2]
        if denominator is not None:
            if int(denominator) == 0:
                break
            numerator /= int(denominator)
        if not math.isfinite(numerator):
            break
        result.append(numerator)
    return result


def number(tags: Tags, *keys: str) -> float | None:
    for key in keys:
        values = numbers(tags.get(key))
        if values:
            return values[0]
    return None


def positive(tags: Tags, *keys: str) -> float | None:
    for key in keys:
        value = number(tags, key)
        if value is not None and value > 0:
            return value
    return None


# ----------------------------------------------------------------------------- fields


def exposure_time(tags: Tags) -> float | None:
    seconds = positive(tags, "Exif.Photo.ExposureTime", "Exif.Image.ExposureTime")
    seconds = seconds or positive(tags, "Xmp.exif.ExposureTime")
    if seconds is None:
        apex = number(tags, "Exif.Photo.ShutterSpeedValue", "Exif.Image.ShutterSpeedValue")
        if apex is not None and -20 < apex < 30:
            seconds = 2.0**-apex
    return seconds


def exposure_text(tags: Tags, seconds: float | None) -> str | None:
    """How cameras show exposure times: "1/250", "1/3", "0.3", "2", "2.5"."""
    if seconds is None:
        return None
    if seconds < 0.25 or (seconds < 1 and _is_unit_fraction(tags)):
        return f"1/{round(1 / seconds)}"
    return f"{seconds:.1f}".removesuffix(".0")


def _is_unit_fraction(tags: Tags) -> bool:
    """True when the stored exposure time is a fraction 1/n (after reduction)."""
    for key in ("Exif.Photo.ExposureTime", "Exif.Image.ExposureTime", "Xmp.exif.ExposureTime"):
        value = tags.get(key)
        match = _RATIONAL.match(value.split()[0]) if isinstance(value, str) and value else None
        if match:
            if not match[2] or "." in match[1] or int(match[2]) == 0:
                return False
            return Fraction(int(match[1]), int(match[2])).numerator == 1
    return False


def f_number(tags: Tags) -> float | None:
    value = positive(tags, "Exif.Photo.FNumber", "Exif.Image.FNumber", "Xmp.exif.FNumber")
    if value is None:
        apex = number(tags, "Exif.Photo.ApertureValue", "Exif.Image.ApertureValue")
        if apex is not None and 0 <= apex < 30:
            value = round(2.0 ** (apex / 2), 2)
    return value


def focal_length(tags: Tags) -> float | None:
    value = positive(tags, "Exif.Photo.FocalLength", "Exif.Image.FocalLength")
    return value or positive(tags, "Xmp.exif.FocalLength") or _canon_focal_length(tags)


def _canon_focal_length(tags: Tags) -> float | None:
    """Canon maker notes (CRW files): FocalLength = (type, length, ...) in 1/FocalUnits mm,
    FocalUnits being the third value of CanonCs.Lens (long end, short end, units)."""
    values = numbers(tags.get("Exif.Canon.FocalLength"))
    lens_values = numbers(tags.get("Exif.CanonCs.Lens"))
    units = lens_values[2] if len(lens_values) >= 3 and lens_values[2] > 0 else 1.0
    return values[1] / units if len(values) >= 2 and values[1] > 0 else None


def iso(tags: Tags) -> int | None:
    """Standard EXIF ISO, else maker notes (vendor codes turned into numbers), else XMP."""
    for candidate in (
        _last_positive(tags, "Exif.Photo.ISOSpeedRatings", "Exif.Image.ISOSpeedRatings"),
        positive(tags, "Exif.Photo.ISOSpeed", "Exif.Photo.RecommendedExposureIndex"),
        _maker_note_iso(tags),
        positive(tags, "Exif.Photo.ExposureIndex", "Exif.Image.ExposureIndex"),
        _last_positive(tags, "Xmp.exif.ISOSpeedRatings", "Xmp.exifEX.PhotographicSensitivity"),
    ):
        if candidate is not None and 0 < candidate < 65535:
            return int(round(candidate))
    return None


def _last_positive(tags: Tags, *keys: str) -> float | None:
    """The last number of a value (Nikon writes ISO as "0 200"); XMP bags: the first item."""
    for key in keys:
        value = tags.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        values = numbers(value)
        if values and values[-1] > 0:
            return values[-1]
    return None


def _maker_note_iso(tags: Tags) -> float | None:
    nikon = _last_positive(
        tags,
        "Exif.Nikon3.ISOSpeed",
        "Exif.Nikon3.ISOSettings",
        "Exif.Nikon2.ISOSpeed",
        "Exif.Nikon1.ISOSpeed",
    )
    if nikon:
        return nikon
    nikon_info = number(tags, "Exif.NikonIi.ISO")
    if nikon_info and 0 < nikon_info < 256:  # ExifTool: 100 * 2 ** (value / 12 - 5)
        return 100 * 2 ** (nikon_info / 12 - 5)
    return (
        _canon_iso(tags)
        or positive(tags, "Exif.PanasonicRaw.ISOSpeed", "Exif.Panasonic.ISO")
        or _casio_iso(tags)
        or positive(tags, "Exif.Olympus.ISOSpeed", "Exif.OlympusCs.ISOValue")
    )


def _canon_iso(tags: Tags) -> float | None:
    """ExifTool's Canon ISO: CameraISO where it is a number, else BaseISO x AutoISO / 100."""
    code = number(tags, "Exif.CanonCs.ISOSpeed")
    if code is not None:
        code = int(code)
        if code & 0x4000:
            return float(code & 0x3FFF) or None
        if code in _CANON_ISO_CODES:
            return float(_CANON_ISO_CODES[code])
    base = number(tags, "Exif.CanonSi.ISOSpeed")
    if not base:
        return None
    auto = number(tags, "Exif.CanonSi.AutoISO") or 0.0
    if not (0 < base < 1024 and -1024 < auto < 1024):  # not a plausible code
        return None
    base_iso = 2 ** (base / 32) * 100 / 32
    auto_iso = 2 ** (auto / 32) * 100
    return base_iso * auto_iso / 100


def _casio_iso(tags: Tags) -> float | None:
    code = number(tags, "Exif.Casio.ISO")
    if code is not None and int(code) in _CASIO_ISO_CODES:
        return float(_CASIO_ISO_CODES[int(code)])
    return positive(tags, "Exif.Casio2.ISO", "Exif.Casio2.ISOSpeed")


def lens(tags: Tags) -> str | None:
    return text(
        tags,
        "Exif.Photo.LensModel",
        "Exif.Image.LensModel",
        "Xmp.exifEX.LensModel",
        "Exif.Canon.LensModel",
        "Exif.OlympusEq.LensModel",
        "Exif.Panasonic.LensType",
        "Exif.PentaxDng.LensModel",
        "Xmp.aux.Lens",
    )


def datetime_original(tags: Tags) -> str | None:
    """ISO 8601 capture time, with the UTC offset from EXIF ``OffsetTimeOriginal`` or XMP."""
    exif = text(tags, "Exif.Photo.DateTimeOriginal", "Exif.Image.DateTimeOriginal")
    match = _EXIF_DATE.match(exif or "")
    if match and (value := _datetime(match.groups())):
        offset = text(tags, "Exif.Photo.OffsetTimeOriginal")
        return value + (offset if offset and _OFFSET.match(offset) else "")
    xmp = text(tags, "Xmp.exif.DateTimeOriginal", "Xmp.photoshop.DateCreated")
    match = _XMP_DATE.match(xmp or "")
    if match and (value := _datetime((*match.groups()[:5], match[6] or "0"))):
        offset = match[7]
        return value + ("+00:00" if offset == "Z" else offset or "")
    return None


def _datetime(parts: Sequence[str]) -> str | None:
    try:
        year, month, day, hour, minute, second = (int(part) for part in parts)
        return datetime(year, month, day, hour, minute, second).isoformat()
    except (TypeError, ValueError):
        return None


def coordinate(tags: Tags, name: str) -> float | None:
    """Signed decimal degrees of GPS ``name`` ("Latitude"/"Longitude"), EXIF or XMP."""
    negative = "S" if name == "Latitude" else "W"
    parts = numbers(tags.get(f"Exif.GPSInfo.GPS{name}"))
    if len(parts) >= 1 and all(part >= 0 for part in parts[:3]):
        degrees = sum(part / 60**i for i, part in enumerate(parts[:3]))
        ref = text(tags, f"Exif.GPSInfo.GPS{name}Ref") or ""
        degrees = -degrees if ref.upper().startswith(negative) else degrees
    else:
        match = _XMP_GPS.match(text(tags, f"Xmp.exif.GPS{name}") or "")
        if not match:
            return None
        degrees = float(match[1]) + float(match[2]) / 60 + float(match[3] or 0) / 3600
        degrees = -degrees if match[4] == negative else degrees
    limit = 90 if name == "Latitude" else 180
    return round(degrees, 7) if abs(degrees) <= limit else None


def altitude(tags: Tags) -> float | None:
    value = number(tags, "Exif.GPSInfo.GPSAltitude")
    if value is None:
        return None
    below = number(tags, "Exif.GPSInfo.GPSAltitudeRef") == 1
    return round(-value if below else value, 3)


def orientation(tags: Tags) -> int | None:
    value = number(tags, "Exif.Image.Orientation", "Xmp.tiff.Orientation")
    return int(value) if value is not None and int(value) in range(1, 9) else None


def rating(tags: Tags) -> int | None:
    value = number(tags, "Exif.Image.Rating", "Xmp.xmp.Rating")
    return None if value is None else int(round(value))


def fields(tags: Tags) -> dict[str, object]:
    """The EXIF-derived fields (not size or format) from exiv2 ``tags``."""
    make = text(tags, "Exif.Image.Make", "Xmp.tiff.Make")
    model = text(tags, "Exif.Image.Model", "Xmp.tiff.Model")
    seconds = exposure_time(tags)
    return {
        "make": make,
        "model": model,
        "camera": camera_name(make, model),
        "lens": lens(tags),
        "exposure_time": seconds,
        "exposure_time_text": exposure_text(tags, seconds),
        "f_number": f_number(tags),
        "iso": iso(tags),
        "focal_length": focal_length(tags),
        "focal_length_35mm": int(number(tags, "Exif.Photo.FocalLengthIn35mmFilm") or 0) or None,
        "datetime_original": datetime_original(tags),
        "gps_latitude": coordinate(tags, "Latitude"),
        "gps_longitude": coordinate(tags, "Longitude"),
        "gps_altitude": altitude(tags),
        "orientation": orientation(tags),
        "software": text(tags, "Exif.Image.Software", "Xmp.xmp.CreatorTool"),
        "artist": text(tags, "Exif.Image.Artist", "Xmp.dc.creator"),
        "copyright": text(tags, "Exif.Image.Copyright", "Xmp.dc.rights"),
        "rating": rating(tags),
    }
