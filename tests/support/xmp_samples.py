"""Rows of every module for one image, faces, and ExifTool's reading and writing of sidecars,
for the XMP tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imganalyzer.steps.xmp import NamedFace

needs_exiftool = pytest.mark.skipif(
    shutil.which("exiftool") is None,
    reason="ExifTool reads the sidecars back: apt-get install libimage-exiftool-perl",
)

ROWS: dict[str, dict[str, Any]] = {
    "captions": {
        "status": "ok",
        "caption": "Zoë and Bob at the café",
        "answers": {"Is it indoors?": "yes"},
        "model": "blip2-test",
    },
    "objects": {"status": "ok", "labels": ["person", "cup", "Person"]},
    "ocr": {"status": "ok", "text": "Café Crème 4.50"},
    "aesthetic": {"status": "ok", "aesthetic": 5.25, "model": "aesthetic-test"},
    "technical": {"status": "ok", "sharpness": 87.5, "width": 4000, "height": 3000},
    "cloud": {"status": "ok", "description": "two friends", "keywords": ["café", "friends"]},
}
SIZE = (4000, 3000)
FACES = [
    NamedFace("Zoë", (1000.0, 600.0, 1400.0, 1200.0), SIZE),
    NamedFace("Bob", (3000.0, 0.0, 4200.0, 900.0), SIZE),  # runs off the right edge
]
THRESHOLDS = (2.0, 3.0, 4.0, 5.0, 6.0)


def exiftool(path: Path) -> dict[str, Any]:
    """ExifTool's reading of a sidecar, group-qualified, structures as JSON objects."""
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", str(path)], check=True, capture_output=True
    )
    return json.loads(out.stdout)[0]


def exiftool_write(path: Path, *assignments: str) -> None:
    """Edit (or create) a sidecar the way another tool would."""
    target = ["-overwrite_original", str(path)] if path.exists() else ["-o", str(path)]
    subprocess.run(["exiftool", "-q", *assignments, *target], check=True)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def expected_area(face: NamedFace) -> dict[str, float]:
    """MWG area: centre and size, normalised to the image, clipped to it."""
    w, h = face.image_size
    x0, y0 = max(face.box[0], 0) / w, max(face.box[1], 0) / h
    x1, y1 = min(face.box[2], w) / w, min(face.box[3], h) / h
    return {"X": (x0 + x1) / 2, "Y": (y0 + y1) / 2, "W": x1 - x0, "H": y1 - y0}


def regions(tags: dict[str, Any]) -> list[dict[str, Any]]:
    return tags.get("XMP-mwg-rs:RegionInfo", {}).get("RegionList", [])
