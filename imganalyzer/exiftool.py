"""ExifTool as the last resort for files exiv2 refuses (Sigma X3F, some damaged files).

ExifTool (Debian's ``libimage-exiftool-perl``) is optional: without it, :func:`exiftool_fields`
returns None and the caller falls back to exifread. It is started once per refused file, which
costs about 0.2 s; exiv2 reads all common formats, so this is rare.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess

from imganalyzer import exif_fields

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30
# ExifTool's tag name -> the exiv2 key exif_fields reads it from.
_EXIV2_KEYS = {
    "Make": "Exif.Image.Make",
    "Model": "Exif.Image.Model",
    "LensModel": "Exif.Photo.LensModel",
    "ExposureTime": "Exif.Photo.ExposureTime",
    "FNumber": "Exif.Photo.FNumber",
    "ISO": "Exif.Photo.ISOSpeedRatings",
    "FocalLength": "Exif.Photo.FocalLength",
    "FocalLengthIn35mmFormat": "Exif.Photo.FocalLengthIn35mmFilm",
    "DateTimeOriginal": "Exif.Photo.DateTimeOriginal",
    "OffsetTimeOriginal": "Exif.Photo.OffsetTimeOriginal",
    "GPSAltitude": "Exif.GPSInfo.GPSAltitude",
    "GPSAltitudeRef": "Exif.GPSInfo.GPSAltitudeRef",
    "Orientation": "Exif.Image.Orientation",
    "Software": "Exif.Image.Software",
    "Artist": "Exif.Image.Artist",
    "Copyright": "Exif.Image.Copyright",
    "Rating": "Exif.Image.Rating",
}


def exiftool_fields(path: str | os.PathLike) -> dict[str, object] | None:
    """The EXIF-derived fields of ``path`` as ExifTool reads them; None without ExifTool."""
    executable = shutil.which("exiftool")
    if executable is None:
        return None
    command = [executable, "-json", "-n", "-fast", "-charset", "filename=utf8", "--", path]
    try:
        done = subprocess.run(
            [os.fspath(part) for part in command],
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        reading = json.loads(done.stdout.decode("utf-8", "replace") or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        log.debug("%s: ExifTool failed: %s", path, error)
        return None
    if not reading or not isinstance(reading[0], dict):
        return None
    return exif_fields.fields(as_exiv2_tags(reading[0]))


def as_exiv2_tags(reading: dict[str, object]) -> dict[str, object]:
    """ExifTool's ``-n`` JSON object -> exiv2-style tags that :mod:`exif_fields` reads."""
    tags: dict[str, object] = {}
    for name, key in _EXIV2_KEYS.items():
        if reading.get(name) is not None:
            tags[key] = str(reading[name])
    for name, negative in (("Latitude", "S"), ("Longitude", "W")):
        value = reading.get(f"GPS{name}")
        if isinstance(value, int | float):
            tags[f"Exif.GPSInfo.GPS{name}"] = str(abs(value))
            tags[f"Exif.GPSInfo.GPS{name}Ref"] = (
                negative if value < 0 else "NE"[name == "Longitude"]
            )
    return tags
