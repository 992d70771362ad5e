"""An image's values the way photographers read them: "1/250 s · f/5.6 · 50 mm · ISO 400",
the capture time on the camera's clock with its UTC offset, sizes in megapixels."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from imganalyzer.search.browse import NO_OFFSET

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The technical values shown, with how each is written.
TECHNICAL = (
    ("sharpness", "sharpness", "{:.0f}"),
    ("noise", "noise", "{:.2f}"),
    ("exposure_mean", "mean brightness", "{:.0%}"),
    ("clipped_highlights", "clipped highlights", "{:.1%}"),
    ("clipped_shadows", "clipped shadows", "{:.1%}"),
    ("colorfulness", "colourfulness", "{:.0f}"),
)


def exposure_line(metadata: dict[str, Any]) -> str | None:
    """ "1/250 s · f/5.6 · 50 mm · ISO 400" from the values there are."""
    parts = []
    shutter = metadata.get("exposure_time_text") or _shutter(metadata.get("exposure_time"))
    if shutter:
        parts.append(f"{shutter} s")
    if _number(metadata.get("f_number")):
        parts.append(f"f/{_trim(metadata['f_number'])}")
    focal = _number(metadata.get("focal_length"))
    if focal:
        equivalent = _number(metadata.get("focal_length_35mm"))
        other = "" if equivalent is None or abs(equivalent - focal) < 0.5 else _trim(equivalent)
        parts.append(f"{_trim(focal)} mm" + (f" ({other} mm equiv.)" if other else ""))
    if _number(metadata.get("iso")):
        parts.append(f"ISO {int(metadata['iso'])}")
    return " · ".join(parts) or None


def _shutter(seconds: Any) -> str | None:
    value = _number(seconds)
    if value is None:
        return None
    # a quarter second is 1/4 (round(0.25, 1) would make it "0.2")
    return f"1/{round(1 / value)}" if value <= 0.25 else _trim(round(value, 1))


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _trim(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def capture_time(wall: datetime, offset_minutes: int, file_time: bool) -> dict[str, str]:
    """The date and time on the camera's clock, its UTC offset, and where it came from."""
    text = (
        f"{WEEKDAYS[wall.weekday()]} {wall.day} {MONTHS[wall.month - 1]} {wall.year}, "
        f"{wall:%H:%M:%S}"
    )
    zone = ""
    if offset_minutes != NO_OFFSET:
        sign = "+" if offset_minutes >= 0 else "−"
        hours, minutes = divmod(abs(offset_minutes), 60)
        zone = f"UTC{sign}{hours:02d}:{minutes:02d}"
    source = (
        "the file's modification time: no capture date in the metadata"
        if file_time
        else "capture time (EXIF)"
    )
    return {"text": text, "zone": zone, "source": source, "iso": _iso(wall, offset_minutes)}


def _iso(wall: datetime, offset_minutes: int) -> str:
    if offset_minutes == NO_OFFSET:
        return wall.isoformat()
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{wall.isoformat()}{sign}{hours:02d}:{minutes:02d}"


def technical_lines(technical: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key, label, form in TECHNICAL:
        value = technical.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            found.append((label, form.format(value)))
    return found


def size_line(width: Any, height: Any, size_bytes: Any) -> str | None:
    parts = []
    if isinstance(width, int) and isinstance(height, int) and width and height:
        parts.append(f"{width} × {height} ({width * height / 1e6:.1f} MP)")
    if isinstance(size_bytes, int) and size_bytes > 0:
        parts.append(f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 1e5 else f"{size_bytes} B")
    return " · ".join(parts) or None
