"""Fields from exiv2's tags: maker-note ISO and lens, XMP dates and GPS, the camera name; a
RAW whose pixel data LibRaw cannot read keeps its metadata. The ExifTool fallback:
test_exiftool.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imganalyzer.decode import exif_fields
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.example.writers import ExifInfo, write_tiff16


@pytest.mark.parametrize(
    ("tags", "iso"),
    [
        ({"Exif.Photo.ISOSpeedRatings": "400"}, 400),
        ({"Exif.Nikon3.ISOSpeed": "0 200"}, 200),  # Nikon D1/D70: "0 200" means 200
        ({"Exif.Nikon1.ISOSpeed": "0 100"}, 100),
        ({"Exif.NikonIi.ISO": "68"}, 159),  # ExifTool: 100 * 2 ** (68 / 12 - 5)
        ({"Exif.CanonCs.ISOSpeed": "17"}, 100),  # Canon CameraISO code
        ({"Exif.CanonCs.ISOSpeed": str(0x4000 | 1600)}, 1600),  # a number flagged 0x4000
        ({"Exif.CanonCs.ISOSpeed": "15", "Exif.CanonSi.ISOSpeed": "128"}, 50),  # auto: base
        ({"Exif.PanasonicRaw.ISOSpeed": "800"}, 800),
        ({"Exif.Casio.ISO": "6"}, 100),
        ({"Exif.Photo.ExposureIndex": "80/1"}, 80),  # Kodak
        ({"Exif.Photo.ISOSpeedRatings": "65535", "Exif.Photo.ISOSpeed": "51200"}, 51200),
        ({"Exif.CanonSi.ISOSpeed": "99999"}, None),  # not a plausible code: no overflow
        ({}, None),
    ],
)
def test_iso_from_exif_or_maker_notes(tags: dict, iso: int | None) -> None:
    assert exif_fields.iso(tags) == iso


def test_xmp_date_with_offset_gps_and_lens() -> None:
    tags = {
        "Xmp.exif.DateTimeOriginal": "2023-07-14T18:03:22.50+02:00",
        "Xmp.exif.GPSLatitude": "48,51.498N",
        "Xmp.exif.GPSLongitude": "2,17.67W",
        "Xmp.aux.Lens": "XF16-80mmF4 R OIS WR",
        "Exif.Canon.FocalLength": "2 227 286 215",
        "Exif.CanonCs.Lens": "682 227 32",
    }
    fields = exif_fields.fields(tags)
    assert fields["datetime_original"] == "2023-07-14T18:03:22+02:00"
    assert fields["gps_latitude"] == pytest.approx(48.8583, abs=1e-4)
    assert fields["gps_longitude"] == pytest.approx(-2.2945, abs=1e-4)
    assert fields["lens"] == "XF16-80mmF4 R OIS WR"
    assert fields["focal_length"] == pytest.approx(227 / 32)  # Canon CRW maker note


def test_exif_date_takes_its_offset_and_utc_xmp_dates_say_so() -> None:
    exif = {"Exif.Photo.DateTimeOriginal": "2021:02:13 11:03:31"}
    assert exif_fields.datetime_original(exif) == "2021-02-13T11:03:31"
    exif["Exif.Photo.OffsetTimeOriginal"] = "-06:00"
    assert exif_fields.datetime_original(exif) == "2021-02-13T11:03:31-06:00"
    xmp = {"Xmp.photoshop.DateCreated": "2015-07-16T15:38:54Z"}
    assert exif_fields.datetime_original(xmp) == "2015-07-16T15:38:54+00:00"


def test_a_date_only_in_xmp_is_read_from_a_real_file(tmp_path: Path) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        b'exif:DateTimeOriginal="2023-07-14T18:03:22+02:00"/></rdf:RDF></x:xmpmeta>'
    )
    path = tmp_path / "xmp_only.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, "JPEG", xmp=xmp)
    assert read_metadata(path)["datetime_original"] == "2023-07-14T18:03:22+02:00"


def test_raw_whose_pixel_data_libraw_cannot_read_keeps_its_metadata(tmp_path: Path) -> None:
    info = ExifInfo(make="Canon", model="Canon EOS 5D", iso=200, exposure_time=1 / 60)
    path = write_tiff16(tmp_path / "IMG_0001.CR2", np.zeros((8, 8, 3), np.uint16), info)
    data = bytearray(path.read_bytes())
    data[8:10] = b"CR"  # a CR2 signature on a file without CR2 image data
    path.write_bytes(bytes(data))
    metadata = read_metadata(path)
    assert (metadata["camera"], metadata["iso"], metadata["format"]) == (
        "Canon EOS 5D",
        200,
        "cr2",
    )
