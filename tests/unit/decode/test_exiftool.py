"""The ExifTool fallback: its readings mapped to the fields exiv2 gives, one process kept
open across files, and no ExifTool at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.decode import exif_fields, exiftool
from imganalyzer.decode.exiftool import as_exiv2_tags, exiftool_fields
from imganalyzer.example.writers import ExifInfo, write_jpeg


def test_exiftool_readings_map_to_the_same_fields() -> None:
    reading = {"Make": "NIKON CORPORATION", "Model": "NIKON D70", "ISO": "0 200"}
    reading |= {"GPSLatitude": -33.8568, "GPSLongitude": 151.2153, "ExposureTime": 0.004}
    fields = exif_fields.fields(as_exiv2_tags(reading))
    assert (fields["camera"], fields["iso"], fields["exposure_time_text"]) == (
        "NIKON D70",
        200,
        "1/250",
    )
    assert (fields["gps_latitude"], fields["gps_longitude"]) == (-33.8568, 151.2153)


def test_exiftool_pentax_iso_index_is_turned_into_iso() -> None:
    reading = {"Make": "PENTAX Corporation", "Model": "PENTAX *ist DL", "ISO": 9}
    assert exif_fields.fields(as_exiv2_tags(reading))["iso"] == 200
    assert exif_fields.fields(as_exiv2_tags({"Make": "Canon", "ISO": 9}))["iso"] == 9


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="ExifTool is not installed")
def test_exiftool_fallback_reads_what_exiv2_reads(tmp_path: Path) -> None:
    info = ExifInfo(make="FUJIFILM", model="X-T4", iso=400, f_number=5.6, gps=(48.8, 2.3, None))
    path = write_jpeg(tmp_path / "a b.jpg", np.zeros((16, 16, 3), np.uint8), info)
    ours = exif_fields.fields(exif_fields.read_tags(path))
    theirs = exiftool_fields(path)
    assert theirs is not None
    for field in ("make", "model", "camera", "iso", "f_number", "gps_latitude", "gps_longitude"):
        assert theirs[field] == ours[field], field


needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="no ExifTool")


@needs_exiftool
def test_one_process_reads_many_files_including_awkward_names(tmp_path: Path) -> None:
    names = ["-starts-with-dash.jpg", "ünï cödé.jpg", "new\nline.jpg", "plain.jpg"]
    for iso, name in enumerate(names, start=1):
        info = ExifInfo(make="Canon", model="Canon EOS R5", iso=100 * iso)
        write_jpeg(tmp_path / name, np.zeros((8, 8, 3), np.uint8), info)
    readings = [exiftool_fields(tmp_path / name) for name in names]
    process = exiftool._PROCESS
    assert process is not None and process.process.poll() is None  # kept open
    # ExifTool takes one argument a line: a name with a newline cannot be passed, so it gets
    # None (the caller falls back to exifread) and the requests after it are answered.
    assert [reading and reading["iso"] for reading in readings] == [100, 200, None, 400]
    assert exiftool_fields(tmp_path / "plain.jpg") == readings[3]
    assert exiftool._PROCESS is process  # the same process served every request


@needs_exiftool
def test_a_file_exiftool_cannot_read_gives_none_and_the_process_goes_on(tmp_path: Path) -> None:
    assert exiftool_fields(tmp_path / "missing.jpg") is None
    (tmp_path / "text.jpg").write_text("not an image")
    reading = exiftool_fields(tmp_path / "text.jpg")
    assert reading is None or reading.get("camera") is None
    good = write_jpeg(tmp_path / "good.jpg", np.zeros((8, 8, 3), np.uint8), ExifInfo(iso=800))
    assert (exiftool_fields(good) or {}).get("iso") == 800


def test_without_exiftool_the_fallback_answers_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exiftool, "_PROCESS", None)
    monkeypatch.setattr(exiftool.shutil, "which", lambda name: None)
    path = write_jpeg(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8), ExifInfo(iso=100))
    assert exiftool_fields(path) is None
