"""The display names of a camera and a place, on make/model pairs and places real files hold."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from imganalyzer.decode.names import camera_name, display_names, place_name
from tests.support.corpus_compare import CORPUS

# (make, model) as cameras and phones write them: taken from the corpus's files (ExifTool's
# reading), and the Nikon Z 6II of the report.
KODAK = "KODAK DX6490 ZOOM DIGITAL CAMERA"
CAMERAS = [
    ("Canon", "Canon EOS 5D Mark III", "Canon EOS 5D Mark III"),
    ("Canon", "Canon PowerShot SX60 HS", "Canon PowerShot SX60 HS"),
    ("NIKON CORPORATION", "NIKON D5300", "NIKON D5300"),
    ("NIKON CORPORATION", "NIKON Z 6_2", "NIKON Z 6_2"),
    ("NIKON", "COOLPIX P7000", "NIKON COOLPIX P7000"),
    ("FUJIFILM", "X-T3", "FUJIFILM X-T3"),
    ("Apple", "iPhone 13 Pro", "Apple iPhone 13 Pro"),
    ("Apple", "Apple Vision Pro", "Apple Vision Pro"),
    ("SONY", "ILCE-7SM3", "SONY ILCE-7SM3"),
    ("Google", "Pixel 8 Pro", "Google Pixel 8 Pro"),
    ("samsung", "SM-G900F", "samsung SM-G900F"),
    ("OLYMPUS OPTICAL CO.,LTD", "C4040Z", "OLYMPUS C4040Z"),
    ("OLYMPUS IMAGING CORP.", "E-M5", "OLYMPUS E-M5"),
    ("PENTAX Corporation", "PENTAX K10D", "PENTAX K10D"),
    ("CASIO COMPUTER CO.,LTD", "EX-Z750", "CASIO EX-Z750"),
    (
        "EASTMAN KODAK COMPANY",
        "KODAK DX6490 ZOOM DIGITAL CAMERA",
        "KODAK DX6490 ZOOM DIGITAL CAMERA",
    ),
    ("Eastman Kodak Company", "DC210 Zoom (V05.00)", "Eastman Kodak DC210 Zoom (V05.00)"),
    ("Konica Minolta Camera, Inc.", "DiMAGE A2", "Konica Minolta DiMAGE A2"),
    ("SANYO Electric Co.,Ltd.", "SR6", "SANYO SR6"),
    ("Panasonic", "DMC-FZ30", "Panasonic DMC-FZ30"),
    ("HTC", "HTC Desire", "HTC Desire"),
    (" Canon ", "Canon EOS 6D ", "Canon EOS 6D"),
    (None, "D30CC", "D30CC"),
    ("Leaf", None, "Leaf"),
    (None, None, None),
]


@pytest.mark.parametrize(("make", "model", "camera"), CAMERAS)
def test_camera_name_names_the_brand_once(make, model, camera) -> None:
    assert camera_name(make, model) == camera


@pytest.mark.parametrize(
    ("place", "region", "country", "name"),
    [
        ("Lisbon", "Lisbon", "Portugal", "Lisbon, Portugal"),
        ("Paris", "Île-de-France", "France", "Paris, Île-de-France, France"),
        ("Singapore", None, "Singapore", "Singapore"),
        ("New York City", "New York", "United States", "New York City, New York, United States"),
        ("Monaco", "monaco", "Monaco", "Monaco"),
        (None, None, "Iceland", "Iceland"),
        (None, None, None, None),
    ],
)
def test_place_name_names_each_part_once(place, region, country, name) -> None:
    assert place_name(place, region, country) == name


def test_display_names_read_a_metadata_row() -> None:
    row = {"make": "Canon", "model": "Canon EOS R5", "place": "Lisbon", "region": "Lisbon"}
    row |= {"country": "Portugal", "width": 10}
    assert display_names(row) == {"camera": "Canon EOS R5", "place": "Lisbon, Portugal"}
    assert display_names({"make": 12336}) == {"camera": None, "place": None}  # not text


@pytest.mark.skipif(not (CORPUS / "exiftool.json").is_file(), reason=f"no corpus at {CORPUS}")
def test_no_camera_of_the_corpus_repeats_a_word_of_its_brand() -> None:
    readings = json.loads((CORPUS / "exiftool.json").read_text(encoding="utf-8"))
    pairs = {(r.get("Make"), r.get("Model")) for r in readings}
    named = 0
    for make, model in pairs:
        if not isinstance(make, str) or not isinstance(model, str):
            continue
        name = camera_name(make, model)
        assert name is not None
        in_name = Counter(word.casefold() for word in name.split())
        in_model = Counter(word.casefold() for word in model.split())
        assert all(n <= max(1, in_model[word]) for word, n in in_name.items()), (make, model)
        named += 1
    assert named >= 50
