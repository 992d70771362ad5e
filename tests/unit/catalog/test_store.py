"""The Catalog: ingest batches cut into shards, plans that write nothing until a run does,
shard ids, deletions."""

from __future__ import annotations

import os
import re
from pathlib import Path

from imganalyzer.catalog.current import LibraryView
from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from tests.unit.catalog.conftest import touch


def test_ingest_cuts_new_files_into_shards_in_path_order(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    report = catalog.ingest(library, shard_size=4)
    assert report.new_shards == ["000001-00000", "000001-00001"]
    first = read_manifest(catalog.manifest_path("000001-00000"))
    assert [e.path for e in first] == ["a.jpg", "b.JPEG", "e.png", "f.dng"]
    assert len(read_manifest(catalog.manifest_path("000001-00001"))) == 2


def test_ingest_without_changes_writes_nothing(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=4)
    before = {p: p.stat().st_mtime_ns for p in catalog.shards_dir.iterdir()}
    report = catalog.ingest(library, shard_size=4)
    assert report.new_shards == [] and report.new_entries == 0
    assert {p: p.stat().st_mtime_ns for p in catalog.shards_dir.iterdir()} == before


def test_ingest_reads_no_file_content(library: Path, tmp_path: Path) -> None:
    for path in library.rglob("*.*"):
        path.chmod(0)  # stat works, open would fail for a non-root user
    catalog = Catalog(Layout(tmp_path))
    assert catalog.ingest(library, shard_size=100).new_entries == 6


def test_new_and_edited_files_form_one_new_batch(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=4)
    touch(library / "new.jpg")
    touch(library / "a.jpg", b"edited", mtime_ns=2_000_000_000_000_000_000)
    report = catalog.ingest(library, shard_size=4)
    assert report.new_shards == ["000002-00000"]
    assert [e.path for e in read_manifest(catalog.manifest_path("000002-00000"))] == [
        "a.jpg",
        "new.jpg",
    ]


def test_moving_the_whole_library_reanalyses_nothing(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=100)
    moved = tmp_path / "mounted" / "elsewhere"
    moved.parent.mkdir()
    os.rename(library, moved)  # rename keeps mtimes
    assert catalog.ingest(moved, shard_size=100).new_entries == 0


def test_shard_ids_ignore_temporary_and_foreign_files(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=100)
    touch(catalog.shards_dir / ".000002-00000.tsv.abc.tmp")
    touch(catalog.shards_dir / "README")
    assert catalog.shard_ids() == ["000001-00000"]


def view_digest(catalog: Catalog, library: Path) -> str:
    """The digest of the library view a run would plan (the global steps' input)."""
    return LibraryView.of(catalog.plan(library, shard_size=100).library_state()).digest()


def test_deletions_add_no_shard_but_change_the_library_view(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=100)
    first = view_digest(catalog, library)
    assert view_digest(catalog, library) == first
    (library / "a.jpg").unlink()
    gone_a = catalog.ingest(library, shard_size=100)
    assert gone_a.new_shards == [] and gone_a.removed == 1
    without_a = view_digest(catalog, library)
    (library / "e.png").unlink()
    assert view_digest(catalog, library) not in (first, without_a)


def test_a_plan_writes_nothing_until_a_run_writes_it(library: Path, tmp_path: Path) -> None:
    """A dry-run or lint plans the batch a real run writes, and writes nothing."""
    catalog = Catalog(Layout(tmp_path / "results"))
    plan = catalog.plan(library, shard_size=100)
    assert not (tmp_path / "results").exists()
    assert plan.report.new_entries > 0 and list(plan.shards) == plan.report.new_shards
    assert all(re.fullmatch(plan.shard_pattern, shard) for shard in plan.shards)
    assert not re.fullmatch(plan.shard_pattern, "000002-00000")
    plan.stage()
    assert catalog.shard_ids() == []  # staged, not yet placed
    catalog.shards_dir.mkdir()  # as Snakemake does for the catalog_shard jobs' outputs
    for shard in plan.shards:
        os.replace(catalog.staged_dir / f"{shard}.tsv", catalog.manifest_path(shard))
    assert catalog.shard_ids() == list(plan.shards)
    assert not plan.is_current()  # the batch is taken: a plan made before cannot be written
    assert catalog.plan(library, shard_size=100).report.new_entries == 0
