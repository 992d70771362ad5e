"""XMP sidecars, read back by ExifTool: fields, merging with sidecars of other tools, updates,
idempotence, paths (mirror and beside, darktable and Lightroom names)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imganalyzer.config import validate_config
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows, write_rows
from imganalyzer.steps import xmp, xmp_sidecar
from imganalyzer.steps.xmp import (
    NamedFace,
    XmpSettings,
    image_record,
    sidecar_path,
    sidecar_paths,
    write_sidecars,
)
from imganalyzer.steps.xmp_sidecar import XmpRecord, write_sidecar
from tests.support.results_library import ResultsLibrary, sample_photos

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


# ----------------------------------------------------------------- records (pure)


def test_record_takes_each_field_from_its_module() -> None:
    record = image_record(ROWS, FACES, XmpSettings.defaults())
    assert record.description == ROWS["captions"]["caption"]
    # labels (distinct, case-insensitively) then cloud keywords; no OCR words unless asked
    assert record.keywords == ("person", "cup", "café", "friends")
    assert record.people == ("Zoë", "Bob")
    assert record.rating is None
    fields = dict(record.fields)
    assert fields["OCRText"] == ROWS["ocr"]["text"]
    assert fields["Answers"] == ("Is it indoors?: yes",)
    assert float(fields["AestheticScore"]) == ROWS["aesthetic"]["aesthetic"]
    assert float(fields["Sharpness"]) == ROWS["technical"]["sharpness"]
    assert fields["Models"] == ("aesthetic: aesthetic-test", "captions: blip2-test")


def test_record_options_and_fallbacks() -> None:
    ocr_words = image_record(ROWS, (), XmpSettings.defaults(ocr_keywords=True)).keywords
    # words of 3+ characters with a letter: "Café" is already there (as "café"), no "50"
    assert ocr_words == ("person", "cup", "café", "friends", "Crème")
    no_caption = {**ROWS, "captions": {"status": "error", "error": "out of memory"}}
    record = image_record(no_caption, ())
    assert record.description == ROWS["cloud"]["description"]
    assert "Caption" not in dict(record.fields) and "Answers" not in dict(record.fields)
    assert image_record({}, ()).is_empty()
    listed = {"captions": {"answers": [{"question": "Who?", "answer": "Ann"}]}}
    assert dict(image_record(listed).fields)["Answers"] == ("Who?: Ann",)
    assert image_record({"objects": {"labels": [{"label": "dog", "score": 0.9}]}}).keywords == (
        "dog",
    )


@pytest.mark.parametrize("score", [1.0, 2.0, 3.5, 5.99, 6.0, 9.0])
def test_rating_counts_the_thresholds_reached(score: float) -> None:
    rows = {"aesthetic": {"aesthetic": score}}
    assert image_record(rows, ()).rating is None  # not mapped: no rating
    stars = image_record(rows, (), XmpSettings.defaults(rating_from_aesthetic=THRESHOLDS)).rating
    assert stars == len([t for t in THRESHOLDS if score >= t])


def test_settings_from_the_config_section() -> None:
    # bad values are rejected by the schema: tests/unit/test_config.py
    xmp = {"mode": "beside", "rating_from_aesthetic": [1, 2, 3, 4, 5]}
    settings = XmpSettings.from_config(validate_config({"library": ".", "xmp": xmp}, False))
    assert settings.mode == "beside" and settings.rating_from_aesthetic == (1.0, 2.0, 3.0, 4.0, 5.0)


# ----------------------------------------------------------------- one sidecar


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


# ----------------------------------------------------------------- paths


def test_sidecar_paths_by_mode_and_naming(tmp_path: Path) -> None:
    library, mirror = tmp_path / "photos", tmp_path / "sidecars"
    beside = XmpSettings.defaults(mode="beside")
    assert sidecar_path(library, "2021/IMG_0001.CR2", beside) == library / "2021/IMG_0001.CR2.xmp"
    lightroom = XmpSettings.defaults(mode="beside", naming="lightroom")
    assert sidecar_path(library, "2021/IMG_0001.CR2", lightroom) == library / "2021/IMG_0001.xmp"
    mirrored = XmpSettings.defaults(mode="mirror", dir=str(mirror))
    assert sidecar_path(library, "été/à.jpg", mirrored) == mirror / "été/à.jpg.xmp"
    with pytest.raises(ValueError, match="inside the library"):
        sidecar_path(library, "a.jpg", XmpSettings.defaults(dir=str(library / "xmp")))
    # by default the mirror lies in the results folder, which may lie in the library
    results = library / "results"
    assert sidecar_path(library, "a.jpg", XmpSettings.defaults(), Layout(results)) == (
        results / "xmp/sidecars/a.jpg.xmp"
    )


def test_lightroom_names_shared_by_several_files_go_to_one(tmp_path: Path) -> None:
    paths = ["d/IMG_0001.JPG", "d/IMG_0001.CR2", "d/IMG_0002.jpg", "d/img_0002.png", "e/x.tif"]
    settings = XmpSettings.defaults(mode="mirror", dir=str(tmp_path / "m"), naming="lightroom")
    names = {
        p: str(s.relative_to(tmp_path / "m"))
        for p, s in sidecar_paths(tmp_path / "lib", paths, settings).items()
    }
    assert names == {
        "d/IMG_0001.CR2": "d/IMG_0001.xmp",  # the raw file: Lightroom's own sidecar
        "d/IMG_0001.JPG": "d/IMG_0001.JPG.xmp",
        "d/IMG_0002.jpg": "d/IMG_0002.xmp",  # first by name (names differing in case clash)
        "d/img_0002.png": "d/img_0002.png.xmp",
        "e/x.tif": "e/x.xmp",
    }
    assert len(set(names.values())) == len(names)


# ----------------------------------------------------------------- the library


def tree_digest(root: Path) -> str:
    """Names, sizes, mtimes and contents of every file and folder under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.stat()
        digest.update(f"{path.relative_to(root)} {st.st_mtime_ns} {st.st_size}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture()
def lib(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path / "work")
    lib.add_shard(sample_photos())
    return lib


MODULES = ["metadata", "technical", "aesthetic", "captions", "ocr", "faces"]


def test_mirror_leaves_the_library_untouched(
    lib: ResultsLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_digest(lib.library)
    faces = {"scans/old.jpg": [("Ådne", (10, 10, 50, 60))]}
    assert (
        write_sidecars(lib.layout, lib.library, XmpSettings.defaults(), MODULES, faces).written == 0
    )
    assert not (lib.results / "xmp").exists()  # not enabled: nothing at all
    settings = XmpSettings.defaults(enabled=True)
    report = write_sidecars(lib.layout, lib.library, settings, MODULES, faces)
    assert tree_digest(lib.library) == before
    root = lib.results / "xmp" / "sidecars"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*.xmp"))
    assert written == sorted(f"{p.path}.xmp" for p in sample_photos())
    assert (report.written, report.unchanged, report.failed) == (5, 0, [])
    sidecar = (root / "scans/old.jpg.xmp").read_bytes()
    assert "Ådne".encode() in sidecar and b"a black and white family portrait" in sidecar
    # a re-run reads no sidecar at all (the state file knows them) and writes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.xmp")}
    monkeypatch.setattr(xmp, "write_sidecar", lambda *a: pytest.fail("sidecar read"))
    report = write_sidecars(lib.layout, lib.library, settings, MODULES, faces)
    assert (report.written, report.unchanged) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.xmp")} == mtimes


def test_beside_writes_next_to_the_originals_and_redoes_only_changes(lib: ResultsLibrary) -> None:
    settings = XmpSettings.defaults(enabled=True, mode="beside", naming="lightroom")
    assert write_sidecars(lib.layout, lib.library, settings, MODULES).written == 5
    sidecar = lib.library / "2022/home/cat.xmp"
    assert b"a red car parked at night" in sidecar.read_bytes()
    # one caption changes: only its sidecar is rewritten
    captions = next((lib.results / "captions").glob("*.jsonl"))
    rows = list(read_rows(captions))
    for row in rows:
        if row["path"] == "2022/home/cat.jpg":
            row["caption"] = "a cat asleep on a sofa"
    write_rows(captions, rows)
    report = write_sidecars(lib.layout, lib.library, settings, MODULES)
    assert (report.written, report.unchanged) == (1, 4)
    assert b"a cat asleep on a sofa" in sidecar.read_bytes()


def test_one_bad_sidecar_does_not_stop_the_others(lib: ResultsLibrary) -> None:
    bad = lib.library / "2021/paris/IMG_0001.jpg.xmp"
    bad.write_bytes(b"garbage")
    report = write_sidecars(
        lib.layout, lib.library, XmpSettings.defaults(enabled=True, mode="beside"), MODULES
    )
    assert [path for path, _ in report.failed] == ["2021/paris/IMG_0001.jpg"]
    assert report.written == 4 and bad.read_bytes() == b"garbage"


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


def test_face_regions_are_stored_relative_to_the_unrotated_image() -> None:
    from imganalyzer.steps.xmp import _with_image_size, stored_box

    # displayed 300 x 400 (portrait) of a stored 400 x 300 image with orientation 6
    # (stored rotated 90 degrees clockwise for display): the displayed top-left corner is
    # the stored bottom-left one
    assert stored_box((0, 0, 30, 40), (300, 400), 6) == (0, 270, 40, 300)
    assert stored_box((0, 0, 30, 40), (300, 400), 8) == (360, 0, 400, 30)
    assert stored_box((10, 20, 30, 40), (300, 400), 3) == (270, 360, 290, 380)
    assert stored_box((10, 20, 30, 40), (300, 400), 1) == (10, 20, 30, 40)
    technical = {"width": 300, "height": 400}
    (face,) = _with_image_size([("Ann", (0, 0, 30, 40))], technical, {"orientation": 6})
    assert face.image_size == (400, 300) and face.box == (0, 270, 40, 300)
    (named_only,) = _with_image_size([("Ann", (0, 0, 30, 40))], {}, None)
    assert named_only.image_size is None


def test_every_orientation_maps_the_displayed_image_onto_the_stored_one() -> None:
    import numpy as np
    from PIL import Image, ImageOps

    from imganalyzer.steps.xmp import stored_box

    stored = np.zeros((30, 40), np.uint8)  # 40 wide, 30 high
    stored[5:9, 20:31] = 255  # a bright box at x 20..31, y 5..9
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        image.getexif()[0x0112] = orientation  # what Pillow's exif_transpose reads
        displayed = np.asarray(ImageOps.exif_transpose(image))  # an independent mapping
        ys, xs = np.nonzero(displayed)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        size = (displayed.shape[1], displayed.shape[0])
        assert stored_box(box, size, orientation) == (20, 5, 31, 9), orientation
