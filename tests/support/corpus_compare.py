"""Compare imganalyzer's metadata rows with ExifTool's reading of the real-file corpus.

The corpus (``../shared/corpus`` from the project root, or the folder ``IMGANALYZER_CORPUS``
names: a git worktree elsewhere) holds real files and ``exiftool.json``
(``exiftool -json -n``). ExifTool's ``-n`` values are compared with judgement:

* raw maker codes are decoded: Nikon's ISO "0 200" means 200, Pentax's ISO index 6 means 100;
* a stored 0 (f-number, focal length, ISO, exposure) and an orientation outside 1-8 mean
  "unknown": ExifTool prints them, nothing is expected;
* ExifTool writes "?" for bytes it cannot print; those are dropped before text is compared;
* exposure time, f-number and ISO agree within 1/6 stop: ExifTool computes some of them from
  APEX values (CRW, Kodak maker notes: 1/57.8 s where EXIF says the nominal 1/60 s);
* dates are compared to the second; lens names only where ExifTool reports a ``LensModel``
  (its ``-n`` ``LensID`` is a lens-table code).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

CORPUS = Path(
    os.environ.get("IMGANALYZER_CORPUS")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
)
COMPARED_FIELDS = (
    "make",
    "model",
    "lens",
    "exposure_time",
    "f_number",
    "iso",
    "focal_length",
    "datetime_original",
    "gps_latitude",
    "gps_longitude",
    "orientation",
)


def corpus_files() -> tuple[Path, dict[str, dict]]:
    """(files folder, ExifTool's reading by path under it)."""
    readings = json.loads((CORPUS / "exiftool.json").read_text(encoding="utf-8"))
    return CORPUS / "files", {r["SourceFile"]: r for r in readings}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        numbers = re.findall(r"-?\d+(?:\.\d+)?", value)
        return float(numbers[-1]) if numbers else None  # Nikon's ISO "0 200" is 200
    return None


# Pentax maker-note ISO index -> ISO (ExifTool's -n output keeps the index).
PENTAX_ISO_CODES = dict(
    zip(
        range(3, 28),
        (50, 64, 80, 100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000)
        + (1250, 1600, 2000, 2500, 3200, 4000, 5000, 6400, 8000, 10000, 12800),
        strict=True,
    )
)
ONE_SIXTH_STOP = 2 ** (1 / 6)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable() and ch not in "?\ufffd")
    text = " ".join(text.split())
    return text or None


def _nonzero(value: object) -> float | None:
    number = _number(value)
    return number if number else None


def _date(value: object) -> str | None:
    text = _text(value)
    if not text or text.startswith("0000"):
        return None
    digits = re.sub(r"\D", "", text)[:14]
    return digits if len(digits) == 14 else None


def expected_value(field: str, reading: Mapping[str, object]) -> object:
    """ExifTool's answer for ``field`` in our terms; None where it has none."""
    if field == "make":
        return _text(reading.get("Make"))
    if field == "model":
        return _text(reading.get("Model"))
    if field == "lens":
        return _text(reading.get("LensModel"))
    if field == "exposure_time":
        return _nonzero(reading.get("ExposureTime"))
    if field == "f_number":
        return _nonzero(reading.get("FNumber"))
    if field == "iso":
        iso = _nonzero(reading.get("ISO"))
        make = str(reading.get("Make", "")).upper()
        if iso is not None and make.startswith(("PENTAX", "ASAHI")) and iso < 30:
            return PENTAX_ISO_CODES.get(int(iso), iso)
        return iso
    if field == "focal_length":
        return _nonzero(reading.get("FocalLength"))
    if field == "datetime_original":
        return _date(reading.get("DateTimeOriginal"))
    if field in ("gps_latitude", "gps_longitude"):
        return _number(reading.get("GPSLatitude" if field == "gps_latitude" else "GPSLongitude"))
    if field == "orientation":
        orientation = reading.get("Orientation")
        return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None
    raise KeyError(field)


def _within(ours: object, expected: float, ratio: float) -> bool:
    if not isinstance(ours, int | float) or ours <= 0 or expected <= 0:
        return False
    return max(ours, expected) / min(ours, expected) <= ratio + 1e-9


def agrees(field: str, ours: object, expected: object) -> bool:
    if field in ("make", "model", "lens"):
        return isinstance(ours, str) and (_text(ours) or "").casefold() == str(expected).casefold()
    if field == "datetime_original":
        return _date(ours) == expected
    if field in ("exposure_time", "iso"):
        return _within(ours, expected, ONE_SIXTH_STOP)
    if field == "f_number":  # f-numbers grow by sqrt(2) per stop
        return _within(ours, expected, ONE_SIXTH_STOP**0.5)
    if field == "focal_length":
        return _within(ours, expected, 1.01)
    if field in ("gps_latitude", "gps_longitude"):
        return isinstance(ours, int | float) and abs(ours - expected) < 1e-5
    if field == "orientation":
        return ours == expected
    raise KeyError(field)


def compare(
    readings: Mapping[str, Mapping[str, object]], rows: Mapping[str, Mapping[str, object]]
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Per field (agreeing, expected) over files where ExifTool has a value, and the misses."""
    counts: dict[str, list[int]] = {field: [0, 0] for field in COMPARED_FIELDS}
    misses: list[str] = []
    for path, reading in sorted(readings.items()):
        row = rows.get(path, {})
        for field in COMPARED_FIELDS:
            expected = expected_value(field, reading)
            if expected is None:
                continue
            ours = row.get(field) if row.get("status", "ok") == "ok" else None
            counts[field][1] += 1
            if agrees(field, ours, expected):
                counts[field][0] += 1
            else:
                reason = row.get("error", "") if row.get("status") == "error" else ""
                misses.append(f"{path}: {field} ours={ours!r} exiftool={expected!r} {reason}")
    return {field: (a, n) for field, (a, n) in counts.items()}, misses


def report(counts: Mapping[str, tuple[int, int]], misses: list[str], out: Callable = print):
    for field, (agreeing, expected) in counts.items():
        share = agreeing / expected if expected else 1.0
        out(f"{field:20s} {agreeing:4d}/{expected:<4d} {share:7.2%}")
    total_agree = sum(a for a, _ in counts.values())
    total = sum(n for _, n in counts.values())
    out(f"{'all fields':20s} {total_agree:4d}/{total:<4d} {total_agree / max(total, 1):7.2%}")
    for miss in misses:
        out("  miss: " + miss)
