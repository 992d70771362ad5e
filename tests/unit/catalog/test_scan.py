"""Listing a library: which files are images, what is passed over, hidden files, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imganalyzer.catalog.scan import scan_library
from imganalyzer.layout import Layout
from tests.unit.catalog.conftest import touch


def test_scan_finds_images_by_extension_case_insensitively(library: Path) -> None:
    touch(library / "notes.txt")
    touch(library / "movie.mp4")
    found = scan_library(library)
    assert sorted(found) == ["a.jpg", "b.JPEG", "e.png", "f.dng", "sub/c.heic", "sub/deeper/d.CR3"]


@pytest.mark.parametrize(
    "name",
    ["a.HIF", "b.avif", "c.bmp", "d.gif", "e.crw", "f.kdc", "g.x3f", "h.mrw", "i.iiq", "j.gpr"]
    + ["k.pef", "l.srw", "m.dcr", "n.3fr", "o.erf", "p.nrw", "q.sr2", "r.srf", "s.mos"]
    + ["t.rwl", "u.raw", "v.jxl"],
)
def test_scan_catalogues_every_camera_format(tmp_path: Path, name: str) -> None:
    touch(tmp_path / name)
    assert list(scan_library(tmp_path)) == [name]


def test_scan_counts_the_files_it_passes_over_by_extension(library: Path) -> None:
    from collections import Counter

    for name in ["notes.txt", "movie.MP4", "clip.mp4", "sub/README"]:
        touch(library / name)
    passed_over: Counter = Counter()
    scan_library(library, passed_over=passed_over)
    assert passed_over == {".mp4": 2, ".txt": 1, "(no extension)": 1}


def test_status_reports_the_files_passed_over(library: Path, tmp_path: Path) -> None:
    from imganalyzer.search.status import library_status

    touch(library / "movie.mp4")
    touch(library / "notes.txt")
    report = library_status(Layout(tmp_path / "results"), library, [])
    assert report.passed_over == {".mp4": 1, ".txt": 1}
    assert "passed over:  2 files of other types (.mp4 1, .txt 1)" in report.as_text()


def test_scan_records_size_and_mtime_ns(tmp_path: Path) -> None:
    touch(tmp_path / "x.jpg", b"12345", mtime_ns=1_600_000_000_123_456_789)
    assert scan_library(tmp_path) == {"x.jpg": (5, 1_600_000_000_123_456_789)}


def test_scan_skips_hidden_files_and_folders(library: Path) -> None:
    touch(library / ".hidden/x.jpg")
    touch(library / "._a.jpg")
    assert not any(p.startswith(".") or "/." in p for p in scan_library(library))


def test_scan_skips_excluded_results_folder(library: Path) -> None:
    touch(library / "results/thumbnails/0.jpg")
    assert "results/thumbnails/0.jpg" not in scan_library(library, exclude=[library / "results"])


def test_scan_follows_symlinks_inside_but_not_outside_the_library(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    touch(lib / "real/a.jpg")
    touch(tmp_path / "outside/secret.jpg")
    (lib / "inner_link").symlink_to(lib / "real")
    (lib / "out_link").symlink_to(tmp_path / "outside")
    (lib / "file_out.jpg").symlink_to(tmp_path / "outside/secret.jpg")
    found = scan_library(lib)
    assert "real/a.jpg" in found
    assert not any("secret" in p or p.startswith("out_link") for p in found)
    # the same folder reached twice (real + link) is listed once
    assert sum(p.endswith("a.jpg") for p in found) == 1


def test_scan_survives_symlink_loops_and_dangling_links(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert scan_library(tmp_path) == {"a.jpg": (1, os.stat(tmp_path / "a.jpg").st_mtime_ns)}


def test_scan_of_missing_library_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        scan_library(tmp_path / "nope")
