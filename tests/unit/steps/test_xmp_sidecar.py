"""One XMP sidecar, read back by ExifTool: every field, merging with the sidecars of other
tools (their fields and the user's edits kept), updates and idempotence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imganalyzer.steps import xmp_sidecar
from imganalyzer.steps.xmp import NamedFace, XmpSettings, image_record
from imganalyzer.steps.xmp_sidecar import XmpRecord, write_sidecar
from tests.support.xmp_samples import (
    FACES,
    ROWS,
    SIZE,
    THRESHOLDS,
    as_list,
    exiftool,
    exiftool_write,
    expected_area,
    needs_exiftool,
    regions,
)


@needs_exiftool
def test_new_sidecar_holds_every_field(tmp_path: Path) -> None:
    settings = XmpSettings.defaults(rating_from_aesthetic=THRESHOLDS)
    record = image_record(ROWS, FACES, settings)
    path = tmp_path / "é" / "IMG_0001.CR2.xmp"
    assert write_sidecar(path, record)
    tags = exiftool(path)
    assert tags["XMP-dc:Description"] == ROWS["captions"]["caption"]
    assert as_list(tags["XMP-dc:Subject"]) == ["person", "cup", "café", "friends"]
    assert as_list(tags["XMP-iptcExt:PersonInImage"]) == ["Zoë", "Bob"]
    assert tags["XMP-xmp:Rating"] == 4  # 5.25 reaches 2, 3, 4 and 5
    info = tags["XMP-mwg-rs:RegionInfo"]
    assert info["AppliedToDimensions"] == {"W": SIZE[0], "H": SIZE[1], "Unit": "pixel"}
    assert [r["Name"] for r in info["RegionList"]] == ["Zoë", "Bob"]
    for region, face in zip(info["RegionList"], FACES, strict=True):
        assert region["Type"] == "Face" and region["Area"]["Unit"] == "normalized"
        for key, value in expected_area(face).items():
            assert region["Area"][key] == pytest.approx(value, abs=1e-6)
    assert tags["XMP-imganalyzer:Generator"] == "imganalyzer"
    assert str(tags["XMP-imganalyzer:Version"]) == xmp_sidecar.FORMAT_VERSION
    assert tags["XMP-imganalyzer:Caption"] == ROWS["captions"]["caption"]
    assert tags["XMP-imganalyzer:OCRText"] == ROWS["ocr"]["text"]
    assert tags["XMP-imganalyzer:AestheticScore"] == ROWS["aesthetic"]["aesthetic"]
    assert tags["XMP-imganalyzer:Sharpness"] == ROWS["technical"]["sharpness"]
    assert as_list(tags["XMP-imganalyzer:Answers"]) == ["Is it indoors?: yes"]
    assert tags["XMP-imganalyzer:CloudDescription"] == "two friends"


@needs_exiftool
def test_no_rating_unless_mapped(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    write_sidecar(path, image_record(ROWS, ()))
    tags = exiftool(path)
    assert "XMP-xmp:Rating" not in tags and "XMP-mwg-rs:RegionInfo" not in tags


@needs_exiftool
def test_foreign_sidecar_keeps_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0002.NEF.xmp"
    exiftool_write(
        path,
        "-XMP-dc:Creator=Ann Other",
        "-XMP-xmp:Label=Red",
        "-XMP-xmp:Rating=2",
        "-XMP-dc:Description=Written by hand",
        "-XMP-dc:Subject=holiday",
        "-XMP-dc:Subject=Person",
        "-XMP-iptcExt:PersonInImage=Carol",
        "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=4000,H=3000,Unit=pixel},"
        "RegionList=[{Name=Carol,Type=Face,Area={X=0.8,Y=0.8,W=0.1,H=0.1,Unit=normalized}}]}",
    )
    before = exiftool(path)
    record = image_record(ROWS, FACES[:1], XmpSettings.defaults(rating_from_aesthetic=THRESHOLDS))
    assert write_sidecar(path, record)
    tags = exiftool(path)
    for tag in ("XMP-dc:Creator", "XMP-xmp:Label", "XMP-xmp:Rating", "XMP-dc:Description"):
        assert tags[tag] == before[tag]  # the user's: never replaced
    # union: theirs first, then ours that they lack ("person" ~ their "Person")
    assert as_list(tags["XMP-dc:Subject"]) == ["holiday", "Person", "cup", "café", "friends"]
    assert as_list(tags["XMP-imganalyzer:AddedKeywords"]) == ["cup", "café", "friends"]
    assert as_list(tags["XMP-iptcExt:PersonInImage"]) == ["Carol", "Zoë"]
    assert [r["Name"] for r in regions(tags)] == ["Carol", "Zoë"]
    assert regions(tags)[0] == regions(before)[0]
    assert "XMP-imganalyzer:AddedDescription" not in tags
    assert "XMP-imganalyzer:AddedRating" not in tags


@needs_exiftool
def test_update_replaces_our_values_and_keeps_the_users(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0003.JPG.xmp"
    settings = XmpSettings.defaults(rating_from_aesthetic=THRESHOLDS)
    write_sidecar(path, image_record(ROWS, FACES, settings))
    # the user adds a keyword, a label and a face of their own after our first run
    exiftool_write(
        path,
        "-XMP-dc:Subject+=holiday",
        "-XMP-xmp:Label=Green",
        "-XMP-mwg-rs:RegionList+={Name=Dan,Type=Face,Area={X=0.1,Y=0.9,W=0.05,H=0.05,"
        "Unit=normalized}}",
    )
    rows = {
        "captions": {"status": "ok", "caption": "An empty room"},
        "objects": {"status": "ok", "labels": ["chair"]},
        "aesthetic": {"status": "ok", "aesthetic": 2.5},
    }
    assert write_sidecar(path, image_record(rows, FACES[1:], settings))
    tags = exiftool(path)
    assert tags["XMP-dc:Description"] == "An empty room"
    assert as_list(tags["XMP-dc:Subject"]) == ["holiday", "chair"]
    assert as_list(tags["XMP-iptcExt:PersonInImage"]) == ["Bob"]
    assert [r["Name"] for r in regions(tags)] == ["Dan", "Bob"]
    assert tags["XMP-xmp:Rating"] == 1
    assert tags["XMP-xmp:Label"] == "Green"
    assert "XMP-imganalyzer:OCRText" not in tags and "XMP-imganalyzer:Answers" not in tags
    # nothing left to say: our values go, the user's stay
    assert write_sidecar(path, XmpRecord())
    tags = exiftool(path)
    assert as_list(tags["XMP-dc:Subject"]) == ["holiday"]
    assert [r["Name"] for r in regions(tags)] == ["Dan"]
    for tag in ("XMP-dc:Description", "XMP-xmp:Rating", "XMP-iptcExt:PersonInImage"):
        assert tag not in tags


@needs_exiftool
def test_description_and_rating_the_user_changed_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    settings = XmpSettings.defaults(rating_from_aesthetic=THRESHOLDS)
    write_sidecar(path, image_record(ROWS, (), settings))
    exiftool_write(path, "-XMP-dc:Description=My own words", "-XMP-xmp:Rating=5")
    rows = {**ROWS, "captions": {"caption": "something else"}, "aesthetic": {"aesthetic": 1.0}}
    assert write_sidecar(path, image_record(rows, (), settings))
    tags = exiftool(path)
    assert tags["XMP-dc:Description"] == "My own words"
    assert tags["XMP-xmp:Rating"] == 5
    assert tags["XMP-imganalyzer:Caption"] == "something else"


def test_unchanged_record_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    record = image_record(ROWS, FACES)
    assert write_sidecar(path, record)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    content = path.read_bytes()
    assert not write_sidecar(path, image_record(ROWS, FACES))
    assert path.stat().st_mtime_ns == 1_000_000_000 and path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg.xmp"]  # no temporaries left


def test_unreadable_sidecar_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    path.write_bytes(b"\x00\x01 not xmp at all")
    with pytest.raises(ValueError, match="a.jpg.xmp"):
        write_sidecar(path, image_record(ROWS, ()))
    assert path.read_bytes() == b"\x00\x01 not xmp at all"


def test_empty_record_adds_nothing_to_a_foreign_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    write_sidecar(path, image_record(ROWS, ()))
    foreign = path.read_bytes().replace(b"imganalyzer", b"othertool")
    path.write_bytes(foreign)
    assert not write_sidecar(path, XmpRecord())
    assert path.read_bytes() == foreign


@needs_exiftool
def test_text_xml_cannot_hold_is_replaced(tmp_path: Path) -> None:
    rows = {"ocr": {"text": "TOTAL\x0042\x07 EUR\nthanks \ud800"}, "captions": {"caption": "a < b"}}
    path = tmp_path / "a.jpg.xmp"
    assert write_sidecar(path, image_record(rows, [NamedFace("Ann\x00e", (0, 0, 1, 1), (2, 2))]))
    tags = exiftool(path)
    assert tags["XMP-imganalyzer:OCRText"] == "TOTAL 42  EUR\nthanks"
    assert tags["XMP-dc:Description"] == "a < b"
    assert as_list(tags["XMP-iptcExt:PersonInImage"]) == ["Ann e"]


DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="1"
   darktable:history_end="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="00ff"/>
     <rdf:li darktable:operation="colorin" darktable:enabled="0" darktable:params="gz02"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@needs_exiftool
def test_darktable_edit_history_survives(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0004.CR2.xmp"
    path.write_text(DARKTABLE_SIDECAR, encoding="utf-8")
    before = exiftool(path)
    assert write_sidecar(path, image_record(ROWS, FACES))
    tags = exiftool(path)
    assert tags["XMP-darktable:History"] == before["XMP-darktable:History"]
    assert tags["XMP-darktable:History_end"] == before["XMP-darktable:History_end"] == 2
    assert tags["XMP-xmp:Rating"] == 1
    assert tags["XMP-dc:Description"] == ROWS["captions"]["caption"]
