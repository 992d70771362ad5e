"""Shard jobs: error rows carry an error kind, misnamed files are noted, decoder chatter is
logged, not printed."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.jobs import (
    _CURRENT_FILE,
    decoder_output_to_log,
    run_decode_shard,
    run_metadata_shard,
)
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows
from tests.unit.catalog.conftest import touch


@contextlib.contextmanager
def _current(path: str):
    _CURRENT_FILE.path = path
    try:
        yield
    finally:
        _CURRENT_FILE.path = None


def _library(tmp_path: Path) -> tuple[Path, Path]:
    library = tmp_path / "library"
    library.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    Image.fromarray(pixels).save(library / "export.nef", "JPEG")
    (library / "empty.jpg").write_bytes(b"")
    (library / "notes.jpg").write_bytes(b"shopping list\n" * 20)
    entries = []
    for name in sorted(os.listdir(library)):
        stat = os.stat(library / name)
        entries.append(Entry(name, stat.st_size, stat.st_mtime_ns))
    entries.append(Entry("gone.jpg", 10, 1))
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest, entries)
    return library, manifest


def test_decode_rows_have_error_kinds_and_notes(tmp_path: Path) -> None:
    library, manifest = _library(tmp_path)
    technical = tmp_path / "technical.jsonl"
    run_decode_shard(
        manifest, library, tmp_path / "t.zarr", technical, tmp_path / "th", {"small": 64}
    )
    rows = {row["path"]: row for row in read_rows(technical)}
    assert rows["export.nef"]["status"] == "ok"
    assert rows["export.nef"]["note"] == "content is JPEG, not .nef"
    assert rows["empty.jpg"]["error_kind"] == "empty"
    assert rows["notes.jpg"]["error_kind"] == "unsupported_format"
    assert rows["gone.jpg"]["error_kind"] == "vanished"


def test_metadata_rows_have_error_kinds(tmp_path: Path) -> None:
    library, manifest = _library(tmp_path)
    output = tmp_path / "metadata.jsonl"
    run_metadata_shard(manifest, library, output)
    rows = {row["path"]: row for row in read_rows(output)}
    assert rows["export.nef"]["status"] == "ok"
    assert rows["export.nef"]["format"] == "jpeg"
    assert rows["empty.jpg"]["error_kind"] == "empty"
    assert rows["notes.jpg"]["error_kind"] == "unsupported_format"
    assert rows["gone.jpg"]["error_kind"] == "vanished"


def test_native_decoder_output_goes_to_the_log(caplog, capfd) -> None:
    with caplog.at_level(logging.INFO), decoder_output_to_log():
        os.write(2, b"/photos/a.crw: Unexpected end of file\n")
    assert "decoder output: /photos/a.crw: Unexpected end of file" in caplog.text
    assert "Unexpected end of file" not in capfd.readouterr().err


def test_python_warnings_are_logged_with_the_file_being_read(caplog, capfd) -> None:
    with caplog.at_level(logging.INFO), decoder_output_to_log(), _current("2024/cut.tif"):
        warnings.warn("Truncated File Read", UserWarning, stacklevel=1)
    assert "2024/cut.tif: " in caplog.text and "Truncated File Read" in caplog.text
    assert "Truncated File Read" not in capfd.readouterr().err


def test_decode_records_each_images_content_fingerprint(tmp_path: Path) -> None:
    from skimage import data

    from imganalyzer.catalog.scan import content_fingerprint
    from imganalyzer.decode.jobs import run_decode_shard
    from imganalyzer.example.writers import write_jpeg
    from imganalyzer.results import read_rows

    library = tmp_path / "lib"
    write_jpeg(library / "cat.jpg", data.chelsea())
    touch(library / "broken.jpg", b"not an image")
    catalog = Catalog(Layout(tmp_path / "results"))
    (shard,) = catalog.ingest(library, shard_size=10).new_shards
    out = tmp_path / "results"
    run_decode_shard(
        catalog.manifest_path(shard),
        library,
        out / "tiers.zarr",
        out / "technical.jsonl",
        out / "thumbs.zip",
        tiers={"clip": 64},
    )
    rows = {row["path"]: row for row in read_rows(out / "technical.jsonl")}
    assert rows["cat.jpg"]["fingerprint"] == content_fingerprint(library / "cat.jpg")
    assert rows["broken.jpg"]["status"] == "error" and "fingerprint" not in rows["broken.jpg"]
