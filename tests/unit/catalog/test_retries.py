"""Files an older decoder refused ("unsupported_format") and this one reads are catalogued
again in the next batch, alone; once a plan finds none, the formats version is recorded and
no later plan reads the rows again."""

from __future__ import annotations

from pathlib import Path

import pytest

from imganalyzer.catalog import retries
from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.formats import FORMATS_VERSION
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, write_rows
from tests.unit.catalog.conftest import touch

JPEG = b"\xff\xd8\xff\xe0" + bytes(28)
JXL = b"\xff\x0a" + bytes(30)  # a bare JPEG XL codestream
MINI_HEIC = b"\x00\x00\x00\x10ftypmif3heic" + bytes(16)  # libheif's compact form
TIFF_RAW = b"II*\x00" + bytes(28)  # e.g. a GoPro .gpr LibRaw cannot read
TEXT = b"a text file with an image extension\n"
OLD_REASONS = {  # what the version-1 decoder wrote
    "clip.jxl": "JPEG XL: no JPEG XL decoder is installed",
    "phone/mini.heic": "not an image (cannot identify image file)",
    "raw/clip.gpr": "RAW format LibRaw cannot read: Unsupported file format",
    "notes.jpg": "not an image (cannot identify image file)",
}
READABLE_NOW = {"clip.jxl", "phone/mini.heic"}


@pytest.fixture
def refused(tmp_path: Path) -> tuple[Catalog, Path]:
    """A library catalogued and read by a decoder of formats version 1: its JPEG XL and mini
    HEIF files, a RAW it cannot read and a text file got unsupported_format rows."""
    library = tmp_path / "lib"
    for name, data in [
        ("a.jpg", JPEG),
        ("clip.jxl", JXL),
        ("phone/mini.heic", MINI_HEIC),
        ("raw/clip.gpr", TIFF_RAW),
        ("notes.jpg", TEXT),
    ]:
        touch(library / name, data, mtime_ns=1_700_000_000_000_000_000)
    catalog = Catalog(Layout(tmp_path / "results"))
    catalog.ingest(library, shard_size=100)
    catalog.layout.formats_checked.unlink()  # version 1 recorded nothing
    write_reader_rows(catalog, "000001-00000", version=1)
    return catalog, library


def write_reader_rows(catalog: Catalog, shard: str, version: int | None) -> None:
    """The technical and metadata rows of ``shard`` as a decoder of formats ``version``
    wrote them (None: this decoder, which reads JPEG XL and mini HEIF)."""
    rows = []
    for entry in catalog.read(shard):
        if entry.path not in OLD_REASONS or (version is None and entry.path in READABLE_NOW):
            rows.append(ok_row(entry, {}))
            continue
        row = error_row(entry, OLD_REASONS[entry.path], "unsupported_format")  # this version's
        if version == 1:
            del row["formats_version"]  # version 1 wrote no such field
        rows.append(row)
    write_rows(catalog.layout.technical(shard), rows)
    write_rows(catalog.layout.rows("metadata", shard), rows)


def test_only_the_files_this_version_reads_are_planned_again(refused) -> None:
    catalog, library = refused
    plan = catalog.plan(library, shard_size=100)
    assert plan.report.retried == 2 and plan.report.new_entries == 0
    assert plan.formats_checked is None  # files await their retry: not recorded
    (shard,) = plan.shards
    assert [e.path for e in plan.shards[shard]] == ["clip.jxl", "phone/mini.heic"]
    assert "2 in newly supported formats" in plan.report.summary()
    # the planned entries supersede the refused ones (same version, newer shard)
    state = plan.library_state()
    assert state.current["clip.jxl"][0] == shard and state.current["a.jpg"][0] != shard
    assert sorted(e.path for _, e in state.superseded) == ["clip.jxl", "phone/mini.heic"]
    assert not catalog.layout.formats_checked.exists()  # a plan writes nothing


def test_once_retried_the_version_is_recorded_and_rows_are_not_read_again(
    refused, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, library = refused
    report = catalog.ingest(library, shard_size=100)
    assert report.new_shards == ["000002-00000"]
    manifest = read_manifest(catalog.manifest_path("000002-00000"))
    assert [e.path for e in manifest] == ["clip.jxl", "phone/mini.heic"]
    assert not catalog.layout.formats_checked.exists()
    write_reader_rows(catalog, "000002-00000", version=None)  # this decoder reads them
    report = catalog.ingest(library, shard_size=100)
    assert report.new_shards == [] and report.retried == 0
    assert retries.formats_checked(catalog.layout) == FORMATS_VERSION

    def no_sweep(*args: object) -> list[Entry]:
        raise AssertionError("read the rows again")

    monkeypatch.setattr("imganalyzer.catalog.store.files_to_retry", no_sweep)
    assert catalog.plan(library, shard_size=100).report.retried == 0


def test_a_row_this_version_wrote_is_not_retried(refused) -> None:
    catalog, library = refused
    write_reader_rows(catalog, "000001-00000", version=FORMATS_VERSION)
    plan = catalog.plan(library, shard_size=100)
    assert plan.shards == {} and plan.formats_checked == FORMATS_VERSION


def test_a_changed_file_is_planned_once_as_changed(refused) -> None:
    catalog, library = refused
    touch(library / "clip.jxl", JXL + b"edited", mtime_ns=1_800_000_000_000_000_000)
    plan = catalog.plan(library, shard_size=100)
    planned = [e.path for entries in plan.shards.values() for e in entries]
    assert planned == ["clip.jxl", "phone/mini.heic"]
    assert (plan.report.new_entries, plan.report.retried) == (1, 1)


def test_a_file_that_is_gone_or_unreadable_is_not_retried(refused) -> None:
    catalog, library = refused
    (library / "phone" / "mini.heic").unlink()
    plan = catalog.plan(library, shard_size=100)
    assert [e.path for entries in plan.shards.values() for e in entries] == ["clip.jxl"]
