"""The metadata and decode jobs over real files from public projects (``../shared/corpus``, or
``IMGANALYZER_CORPUS``).

Prints per-field agreement with ExifTool and every miss; the metadata job must agree on at
least 99% of the values ExifTool reports for each compared field, and both jobs must give every
file a row. Skipped with its reason where the corpus folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode import metadata
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.decode.readers import DecodeError, decode_image
from imganalyzer.formats import HEIF_EXTENSIONS, RAW_EXTENSIONS
from imganalyzer.results import ERROR_KINDS, read_rows
from tests.support.corpus_compare import COMPARED_FIELDS, CORPUS, compare, corpus_files, report

pytestmark = pytest.mark.skipif(
    not (CORPUS / "exiftool.json").is_file(),
    reason=f"real-file corpus not found at {CORPUS} (only present in the development setup)",
)
REQUIRED_AGREEMENT = 0.99


@pytest.fixture(scope="module")
def corpus() -> tuple[Path, dict[str, dict]]:
    return corpus_files()


def _manifest(tmp_path: Path, files: Path, paths: list[str]) -> Path:
    entries = []
    for path in sorted(paths):
        stat = os.stat(files / path)
        entries.append(Entry(path, stat.st_size, stat.st_mtime_ns))
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest, entries)
    return manifest


def test_metadata_agrees_with_exiftool(
    tmp_path: Path, corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, readings = corpus
    asked_exiftool = []
    real_exiftool = metadata.exiftool_fields
    monkeypatch.setattr(
        metadata, "exiftool_fields", lambda p: asked_exiftool.append(p) or real_exiftool(p)
    )
    output = tmp_path / "metadata.jsonl"
    run_metadata_shard(_manifest(tmp_path, files, list(readings)), files, output, threads=2)
    rows = {row["path"]: row for row in read_rows(output)}

    assert set(rows) == set(readings)  # every file gets a row
    counts, misses = compare(readings, rows)
    report(counts, misses)
    errors = [f"{p}: {r['error']}" for p, r in rows.items() if r["status"] != "ok"]
    print(f"{len(errors)} error rows; ExifTool asked for {len(asked_exiftool)} files:")
    print("\n".join(f"  error: {error}" for error in errors))
    for field in COMPARED_FIELDS:
        agreeing, expected = counts[field]
        assert expected > 0
        assert agreeing / expected >= REQUIRED_AGREEMENT, (field, agreeing, expected)
    assert all("internal error" not in error for error in errors)


@pytest.fixture(scope="module")
def decode_rows(tmp_path_factory: pytest.TempPathFactory, corpus) -> dict[str, dict]:
    """The decode job's technical rows over the corpus, by path."""
    files, readings = corpus
    folder = tmp_path_factory.mktemp("decode")
    technical = folder / "technical.jsonl"
    run_decode_shard(
        _manifest(folder, files, list(readings)),
        files,
        folder / "tiers.zarr",
        technical,
        folder / "thumbnails",
        tiers={"small": 256},
        threads=2,
    )
    return {row["path"]: row for row in read_rows(technical)}


@pytest.mark.slow
def test_decode_job_gives_every_file_a_row(decode_rows: dict[str, dict], corpus) -> None:
    _, readings = corpus
    rows = decode_rows
    assert set(rows) == set(readings)
    errors = {path: row for path, row in rows.items() if row["status"] != "ok"}
    print(f"{len(rows) - len(errors)} decoded, {len(errors)} error rows:")
    for path, row in sorted(errors.items()):
        print(f"  {row.get('error_kind')}: {path}: {row['error']}")
    for row in errors.values():
        assert "internal error" not in row["error"] and "Traceback" not in row["error"]
        assert "\n" not in row["error"]
        assert row["error_kind"] in ERROR_KINDS
    notes = {path: row["note"] for path, row in rows.items() if row.get("note")}
    print("notes:", notes)
    assert notes["metadata-extractor-images/nef/Issue_247-2.nef"] == "content is JPEG, not .nef"
    for path in (p for p in readings if p.lower().endswith(".jxl")):  # JPEG XL is decoded
        assert rows[path]["status"] == "ok" and rows[path]["decoder"] == "jpegxl", path
        reading = readings[path]
        assert (rows[path]["width"], rows[path]["height"]) == (
            reading["ImageWidth"], reading["ImageHeight"]
        )  # fmt: skip


@pytest.mark.slow
def test_a_file_both_jobs_fail_has_one_error_kind(
    tmp_path: Path, decode_rows: dict[str, dict], corpus
) -> None:
    files, readings = corpus
    output = tmp_path / "metadata.jsonl"
    run_metadata_shard(_manifest(tmp_path, files, list(readings)), files, output, threads=2)
    both_failed = 0
    for row in read_rows(output):
        decoded = decode_rows[row["path"]]
        if row["status"] != "ok" and decoded["status"] != "ok":
            assert row["error_kind"] == decoded["error_kind"], (row, decoded)
            both_failed += 1
    print(f"{both_failed} files fail in both jobs, each with one error kind")
    assert both_failed >= 10


@pytest.mark.slow
def test_odd_files_decode_deterministically_and_never_black(corpus) -> None:
    """Same file, same pixels (a re-run after a crash must be byte-identical); and a RAW or
    HEIF file whose image data was stripped is refused, never a black image."""
    files, readings = corpus
    checked = 0
    for path in sorted(readings):
        suffix = Path(path).suffix.lower()
        if suffix not in RAW_EXTENSIONS | HEIF_EXTENSIONS:
            continue
        try:
            first = decode_image(files / path, 256, 200_000_000)
        except DecodeError:
            continue
        second = decode_image(files / path, 256, 200_000_000)
        assert np.array_equal(first.rgb, second.rgb), path
        assert int(first.rgb.max()) > 8, f"{path} decodes to black ({first.method})"
        checked += 1
    print(f"{checked} RAW/HEIF files decoded twice, identically")
    assert checked >= 20
