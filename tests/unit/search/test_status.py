"""`imganalyzer status`: errors grouped by kind, only configured modules, all errors on ask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.cli.main import main
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.search.status import error_kind, library_status
from tests.support.results_library import Photo, ResultsLibrary

HOSTILE = os.fsdecode(b"old/caf\xe9.jpg")
REASONS = [
    "truncated or corrupt image: image file is truncated (3 bytes not processed)",
    "truncated or corrupt image: broken data stream when reading image file",
    "truncated or corrupt image: image file is truncated",
    "truncated or corrupt image: cannot find loader for this WEBP file",
    "truncated or corrupt image: x",
    "file not found",
    "image has 300000000 pixels, over the max_pixels limit of 200000000",
]


@pytest.fixture
def library(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    photos = [Photo(f"img/{i:02d}.jpg") for i in range(9)] + [Photo(HOSTILE)]
    shard = lib.add_shard(photos)
    entries = read_manifest(lib.catalog.manifest_path(shard))
    rows = [error_row(e, r) for e, r in zip(entries, REASONS, strict=False)]
    rows.append({**error_row(entries[7], "EXIF block cut short"), "error_kind": "exif corrupt"})
    rows.append(ok_row(entries[8], {"sharpness": 1.0}))
    rows.append(error_row(entries[9], "not an image (cannot identify image file)"))
    write_rows(lib.results / "technical" / f"{shard}.jsonl", rows)
    (lib.results / "config.yaml").write_text(
        f"library: {lib.library}\nresults: {lib.results}\nmodules: [metadata, technical, objects]\n"
    )
    return lib


def test_errors_are_grouped_by_kind_with_counts_and_examples(library: ResultsLibrary) -> None:
    report = library_status(library.layout, library.library, ["metadata", "technical", "objects"])
    assert list(report.modules) == ["metadata", "technical", "objects"]  # captions: not asked
    groups = {(g.module, g.kind): g for g in report.error_groups()}
    truncated = groups["technical", "truncated or corrupt"]
    assert truncated.count == 5 and len(truncated.examples) == 3
    assert groups["technical", "file missing"].count == 1
    assert groups["technical", "too many pixels"].count == 1
    assert groups["technical", "exif corrupt"].count == 1  # the row's own error_kind
    text = report.as_text()
    assert "technical: truncated or corrupt: 5" in text and "and 2 more" in text
    assert "--errors lists them all" in text
    objects = next(line for line in text.splitlines() if line.startswith("objects "))
    assert objects.endswith("(not run yet)")
    assert "e.g. old/caf\\xe9.jpg" in text  # a name that is not UTF-8, in its text form
    text.encode("utf-8")
    every = report.as_text(all_errors=True)
    assert all(reason in every for reason in REASONS)
    data = report.as_dict()
    json.dumps(data).encode("utf-8")
    assert data["modules"]["technical"] == {"done": 1, "errors": 9, "pending": 0}
    assert data["error_groups"][0] == {
        "module": "technical",
        "kind": "truncated or corrupt",
        "count": 5,
        "examples": ["img/00.jpg", "img/01.jpg", "img/02.jpg"],
    }


def test_error_kind_reads_known_reasons_and_falls_back_to_the_first_clause() -> None:
    assert error_kind({"error": "empty file (0 bytes)"}) == "empty file"
    assert error_kind({"error": "not an image (cannot identify image file)"}) == "not an image"
    assert error_kind({"error": "objects: CUDA out of memory"}) == "device or memory"
    assert error_kind({"error": "Weird failure: details 42"}) == "Weird failure"
    assert error_kind({"error": "", "error_kind": "decode"}) == "decode"
    assert error_kind({}) == "unknown error"


def test_cli_status_groups_lists_all_and_prints_hostile_names(
    library: ResultsLibrary, capsys: pytest.CaptureFixture
) -> None:
    config = str(library.results / "config.yaml")
    assert main(["status", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "pending" in out and "captions" not in out
    assert "objects" in out and "(not run yet)" in out
    assert main(["status", "--errors", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "errors (9):" in out and "img/04.jpg" in out
    assert main(["status", "--json", "--config", config]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {g["kind"] for g in data["error_groups"]} >= {"truncated or corrupt", "exif corrupt"}
