"""ExifTool as the last resort for files exiv2 refuses (Sigma X3F, some damaged files) or whose
maker notes it cannot decode (Kodak, FLIR, Phase One, some old compacts).

ExifTool (Debian's ``libimage-exiftool-perl``) is optional: without it, :func:`exiftool_fields`
returns None and the caller falls back to exifread. One ExifTool process per Python process is
started on first use and kept (``-stay_open``), so a file costs a few milliseconds, not the
0.2 s of Perl's start-up; it is closed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import shutil
import subprocess
import threading
import time

from imganalyzer.decode import exif_fields

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30
READY = b"{ready}\n"
_LOCK = threading.Lock()
_PROCESS: _StayOpen | None = None
# Pentax maker notes store ISO as an index, which ExifTool's -n output keeps.
_PENTAX_ISO_CODES = dict(
    zip(
        range(3, 28),
        (50, 64, 80, 100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000, 1250, 1600)
        + (2000, 2500, 3200, 4000, 5000, 6400, 8000, 10000, 12800),
        strict=True,
    )
)
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
    global _PROCESS
    with _LOCK:
        if _PROCESS is None:
            _PROCESS = _StayOpen.start()
        if _PROCESS is None:
            return None
        try:
            # An absolute path never reads as an option ("--" would end -execute too).
            output = _PROCESS.ask(["-json", "-n", "-fast", os.path.abspath(path)])
        except (OSError, ValueError, TimeoutError) as error:
            log.info("%s: ExifTool failed (%s); restarting it", path, error)
            _PROCESS.close()
            _PROCESS = None
            return None
    try:
        reading = json.loads(output.decode("utf-8", "replace") or "[]")
    except ValueError:
        return None
    if not reading or not isinstance(reading[0], dict):
        return None
    return exif_fields.fields(as_exiv2_tags(reading[0]))


class _StayOpen:
    """One ``exiftool -stay_open True -@ -`` process: arguments in, JSON out, per request."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("ExifTool's stdin and stdout must be pipes")
        self.process = process
        self.stdin, self.stdout = process.stdin, process.stdout
        self.buffer = b""

    @classmethod
    def start(cls) -> _StayOpen | None:
        executable = shutil.which("exiftool")
        if executable is None:
            return None
        try:
            process = subprocess.Popen(
                [executable, "-stay_open", "True", "-@", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as error:
            log.info("cannot start ExifTool: %s", error)
            return None
        instance = cls(process)
        atexit.register(instance.close)
        return instance

    def ask(self, arguments: list[str | os.PathLike]) -> bytes:
        lines = [os.fsencode(argument).replace(b"\n", b" ") for argument in arguments]
        request = b"\n".join(lines + [b"-execute", b""])
        self.stdin.write(request)
        self.stdin.flush()
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while READY not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from ExifTool")
            if not select.select([self.stdout], [], [], 1.0)[0]:
                continue
            chunk = os.read(self.stdout.fileno(), 1 << 16)
            if not chunk:
                raise OSError("ExifTool exited")
            self.buffer += chunk
        output, self.buffer = self.buffer.split(READY, 1)
        return output

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.stdin.write(b"-stay_open\nFalse\n")
                self.stdin.flush()
                self.process.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def _is_pentax(reading: dict[str, object]) -> bool:
    return str(reading.get("Make", "")).upper().startswith(("PENTAX", "ASAHI", "RICOH IMAGING"))


def as_exiv2_tags(reading: dict[str, object]) -> dict[str, object]:
    """ExifTool's ``-n`` JSON object -> exiv2-style tags that :mod:`exif_fields` reads."""
    tags: dict[str, object] = {}
    for name, key in _EXIV2_KEYS.items():
        if reading.get(name) is not None:
            tags[key] = str(reading[name])
    iso = reading.get("ISO")
    if isinstance(iso, int) and iso in _PENTAX_ISO_CODES and _is_pentax(reading):
        tags["Exif.Photo.ISOSpeedRatings"] = str(_PENTAX_ISO_CODES[iso])  # -n keeps the code
    for name, negative in (("Latitude", "S"), ("Longitude", "W")):
        value = reading.get(f"GPS{name}")
        if isinstance(value, int | float):
            tags[f"Exif.GPSInfo.GPS{name}"] = str(abs(value))
            tags[f"Exif.GPSInfo.GPS{name}Ref"] = (
                negative if value < 0 else "NE"[name == "Longitude"]
            )
    return tags
