import os
import re
from pathlib import Path

import pytest

from imganalyzer.catalog.current import LibraryView
from imganalyzer.catalog.manifests import (
    Entry,
    escape_path,
    group_shards,
    read_manifest,
    unescape_path,
    write_manifest,
)
from imganalyzer.catalog.scan import scan_library
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout


def touch(path: Path, data: bytes = b"x", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    for name in ["a.jpg", "b.JPEG", "sub/c.heic", "sub/deeper/d.CR3", "e.png", "f.dng"]:
        touch(lib / name)
    return lib


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


def test_paths_with_tabs_newlines_and_backslashes_round_trip(tmp_path: Path) -> None:
    names = ["tab\there.jpg", "new\nline.jpg", "back\\slash.jpg", "ünï cödé.jpg", "\\t.jpg"]
    for name in names:
        assert unescape_path(escape_path(name)) == name
    entries = [Entry(n, i, i * 10) for i, n in enumerate(names)]
    write_manifest(tmp_path / "m.tsv", entries)
    assert read_manifest(tmp_path / "m.tsv") == entries


def test_names_that_are_not_utf8_have_a_lossless_utf8_text_form(tmp_path: Path) -> None:
    raw = [b"caf\xe9.jpg", b"d\xfcr/\xff\xfe\\x.jpg", b"\\xe9 literal.jpg", b"\xed\xa0\x80.jpg"]
    names = [os.fsdecode(name) for name in raw] + ["lone \ud800 surrogate.jpg"]
    for name in names:
        text = escape_path(name)
        text.encode("utf-8")  # valid UTF-8
        assert unescape_path(text) == name
    assert escape_path(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert len({escape_path(n) for n in names}) == len(names)
    entries = [Entry(n, i, i) for i, n in enumerate(names)]
    write_manifest(tmp_path / "m.tsv", entries)
    (tmp_path / "m.tsv").read_bytes().decode("utf-8")
    assert read_manifest(tmp_path / "m.tsv") == entries


def test_manifests_written_with_raw_bytes_still_read(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_bytes(b"path\tsize\tmtime_ns\ncaf\xe9.jpg\t1\t2\n")
    assert read_manifest(tmp_path / "m.tsv") == [Entry(os.fsdecode(b"caf\xe9.jpg"), 1, 2)]


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


def test_state_separates_current_superseded_removed(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=100)
    touch(library / "a.jpg", b"edited", mtime_ns=2_000_000_000_000_000_000)
    (library / "e.png").unlink()
    catalog.ingest(library, shard_size=100)
    state = catalog.state(library)
    assert state.current["a.jpg"][0] == "000002-00000"
    assert [e.path for _, e in state.superseded] == ["a.jpg"]
    assert [e.path for _, e in state.removed] == ["e.png"]
    assert len(state.current) == 5 and state.uncatalogued == [] and state.outdated == []


def test_state_reports_changes_not_yet_catalogued(library: Path, tmp_path: Path) -> None:
    catalog = Catalog(Layout(tmp_path))
    catalog.ingest(library, shard_size=100)
    touch(library / "a.jpg", b"edited again", mtime_ns=3_000_000_000_000_000_000)
    touch(library / "brand_new.jpg")
    state = catalog.state(library)
    assert [e.path for _, e in state.outdated] == ["a.jpg"]
    assert state.uncatalogued == ["a.jpg", "brand_new.jpg"]


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


def test_model_jobs_group_shards_within_each_ingest_batch() -> None:
    shards = [f"000001-{i:05d}" for i in range(5)] + ["000002-00000", "000003-00000"]
    assert group_shards(shards, per_job=2) == {
        "000001-00000-00001": ["000001-00000", "000001-00001"],
        "000001-00002-00003": ["000001-00002", "000001-00003"],
        "000001-00004-00004": ["000001-00004"],
        "000002-00000-00000": ["000002-00000"],
        "000003-00000-00000": ["000003-00000"],
    }
    # a new batch leaves the jobs of earlier batches as they were
    before = group_shards(shards, per_job=2)
    after = group_shards([*shards, "000004-00000"], per_job=2)
    assert {k: v for k, v in after.items() if k in before} == before


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


def test_manifest_rows_counts_entries_unparsed_or_says_there_are_enough(tmp_path: Path) -> None:
    from imganalyzer.catalog.manifests import manifest_rows

    path = tmp_path / "shard.tsv"
    write_manifest(path, [Entry(f"a/{i}.jpg", i, i) for i in range(7)])
    assert manifest_rows(path, at_least=200) == 7
    assert manifest_rows(path, at_least=0) is None  # surely more than 0: not read
    assert manifest_rows(tmp_path / "missing.tsv", at_least=200) is None
