import json
from pathlib import Path

from imganalyzer.catalog.manifests import Entry
from imganalyzer.formats import FORMATS_VERSION
from imganalyzer.results import error_row, ok_row, read_rows, write_rows


def test_rows_round_trip_with_unusual_paths(tmp_path: Path) -> None:
    entries = [Entry("ünï/tab\t.jpg", 1, 2), Entry("bad\udcff.jpg", 3, 4)]
    rows = [ok_row(entries[0], {"sharpness": 1.5}), error_row(entries[1], "broken\nfile")]
    assert write_rows(tmp_path / "r.jsonl", rows) == 2
    back = list(read_rows(tmp_path / "r.jsonl"))
    assert back == [
        {"path": "ünï/tab\t.jpg", "size": 1, "mtime_ns": 2, "status": "ok", "sharpness": 1.5},
        {
            "path": "bad\udcff.jpg",
            "size": 3,
            "mtime_ns": 4,
            "status": "error",
            "error": "broken file",
        },
    ]
    for line in (tmp_path / "r.jsonl").read_text().splitlines():
        json.loads(line)


def test_an_unsupported_format_row_names_the_formats_version_that_refused_it() -> None:
    entry = Entry("clip.jxl", 1, 2)
    refused = error_row(entry, "not an image", "unsupported_format")
    assert refused["formats_version"] == FORMATS_VERSION
    assert "formats_version" not in error_row(entry, "cut", "truncated")
    assert "formats_version" not in error_row(entry, "no kind known")
