"""The XMP step: records from the module rows, sidecar paths (mirror and beside, darktable
and Lightroom names), the library's sidecars written and redone only where changed, and
face regions in the stored image's coordinates. One sidecar: test_xmp_sidecar.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from imganalyzer.config import validate_config
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows, write_rows
from imganalyzer.steps import xmp
from imganalyzer.steps.xmp import (
    XmpSettings,
    image_record,
    sidecar_path,
    sidecar_paths,
    write_sidecars,
)
from tests.support.results_library import ResultsLibrary, sample_photos
from tests.support.xmp_samples import FACES, ROWS, THRESHOLDS

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
