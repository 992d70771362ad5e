"""Moved and renamed files keep their results: the catalog matches them by fingerprint."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import tantivy

import imganalyzer.catalog.scan as scan_module
from imganalyzer.catalog.current import LibraryView
from imganalyzer.catalog.manifests import Entry, read_manifest, read_moves, write_manifest
from imganalyzer.catalog.scan import FINGERPRINT_BYTES, content_fingerprint
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.search.index import open_index, update_index
from imganalyzer.store import ResultsStore
from tests.support.results_library import ResultsLibrary, sample_photos

MTIME = 1_600_000_000 * 10**9


def put(path: Path, data: bytes, mtime_ns: int = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def move(library: Path, old: str, new: str) -> None:
    (library / new).parent.mkdir(parents=True, exist_ok=True)
    os.rename(library / old, library / new)  # keeps the mtime, as mv does


def decode(results: Path, library: Path, fingerprints: bool = True) -> None:
    """What the decode jobs record: a technical row per entry, with its fingerprint."""
    catalog = Catalog(Layout(results))
    for shard in catalog.shard_ids():
        out = results / "technical" / f"{shard}.jsonl"
        if out.exists():
            continue
        rows = []
        for entry in catalog.read(shard):
            fields = {"sharpness": 1.0}
            if fingerprints:
                fields["fingerprint"] = content_fingerprint(library / entry.path)
            rows.append(ok_row(entry, fields))
        write_rows(out, rows)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Catalog]:
    library, results = tmp_path / "lib", tmp_path / "results"
    for i in range(5):
        put(library / f"trip/{i}.jpg", f"photo {i} ".encode() * (i + 1), MTIME + i)
    put(library / "other.jpg", b"another photo")
    catalog = Catalog(Layout(results))
    catalog.ingest(library, shard_size=100)
    decode(results, library)
    return library, results, catalog


# ------------------------------------------------------------------ fingerprints


def test_fingerprint_of_a_small_file_hashes_all_of_it(tmp_path: Path) -> None:
    data = os.urandom(3000)
    path = put(tmp_path / "a.jpg", data)
    expected = hashlib.blake2b(len(data).to_bytes(8, "little") + data, digest_size=16)
    assert content_fingerprint(path) == expected.hexdigest()
    put(path, data[:-1] + bytes([data[-1] ^ 1]))
    assert content_fingerprint(path) != expected.hexdigest()


def test_fingerprint_of_a_large_file_hashes_its_first_and_last_mib(tmp_path: Path) -> None:
    data = bytearray(os.urandom(3 * FINGERPRINT_BYTES + 17))
    path = put(tmp_path / "a.jpg", bytes(data))
    head, tail = data[:FINGERPRINT_BYTES], data[-FINGERPRINT_BYTES:]
    expected = hashlib.blake2b(len(data).to_bytes(8, "little") + head + tail, digest_size=16)
    assert content_fingerprint(path, len(data)) == expected.hexdigest()
    # the accepted weakness: an edit in the middle that keeps the size goes unseen
    data[len(data) // 2] ^= 1
    put(path, bytes(data))
    assert content_fingerprint(path) == expected.hexdigest()
    for position in (0, FINGERPRINT_BYTES - 1, len(data) - FINGERPRINT_BYTES, len(data) - 1):
        changed = bytearray(data)
        changed[position] ^= 1
        put(path, bytes(changed))
        assert content_fingerprint(path) != expected.hexdigest(), position


def test_fingerprint_covers_the_size(tmp_path: Path) -> None:
    a = put(tmp_path / "a.jpg", b"x" * 10)
    b = put(tmp_path / "b.jpg", b"x" * 10)
    assert content_fingerprint(a) == content_fingerprint(b)
    put(b, b"x" * 11)
    assert content_fingerprint(a) != content_fingerprint(b)


# ------------------------------------------------------------------ moves


def test_moved_folder_is_recorded_as_moves_not_new_shards(setup) -> None:
    library, _, catalog = setup
    before = catalog.state(library).current
    shutil.move(library / "trip", library / "2024/trip")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 5 and report.new_shards == [] and report.new_entries == 0
    assert "5 moved" in report.summary()
    assert catalog.shard_ids() == ["000001-00000"]
    moves = read_moves(catalog.moves_dir / "000002.tsv")
    assert [(m.entry.path, m.source.path) for m in moves] == [
        (f"2024/trip/{i}.jpg", f"trip/{i}.jpg") for i in range(5)
    ]
    state = catalog.state(library)
    assert sorted(state.current) == sorted(["other.jpg"] + [f"2024/trip/{i}.jpg" for i in range(5)])
    for i in range(5):
        assert state.current[f"2024/trip/{i}.jpg"] == before[f"trip/{i}.jpg"]
    assert state.removed == [] and state.uncatalogued == [] and state.superseded == []
    # nothing to do on the next scan
    again = catalog.ingest(library, shard_size=100)
    assert again.moved == 0 and again.new_shards == [] and again.removed == 0


def view_digest(catalog: Catalog, library: Path) -> str:
    """Ingest, then the digest of the library view a run would plan (the global steps'
    input: a move adds no shard, the view tells them)."""
    report = catalog.ingest(library, shard_size=100)
    assert report.new_shards == []
    return LibraryView.of(catalog.plan(library, shard_size=100).library_state()).digest()


def test_a_move_changes_the_library_view(setup) -> None:
    library, _, catalog = setup
    first = view_digest(catalog, library)
    move(library, "trip/0.jpg", "a/0.jpg")
    moved = view_digest(catalog, library)
    move(library, "a/0.jpg", "b/0.jpg")
    moved_again = view_digest(catalog, library)
    assert len({first, moved, moved_again}) == 3
    (library / "b/0.jpg").unlink()
    gone = catalog.ingest(library, shard_size=100)
    assert gone.removed == 1 and gone.new_shards == []
    assert [e.path for _, e in catalog.state(library).removed] == ["trip/0.jpg"]


def test_a_file_moved_twice_keeps_its_original_entry(setup) -> None:
    library, _, catalog = setup
    move(library, "trip/1.jpg", "x/1.jpg")
    catalog.ingest(library, shard_size=100)
    move(library, "x/1.jpg", "y/renamed.jpg")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 1 and report.new_shards == []
    state = catalog.state(library)
    assert state.current["y/renamed.jpg"][1].path == "trip/1.jpg"
    assert state.moved["y/renamed.jpg"].source.path == "trip/1.jpg"
    assert "x/1.jpg" not in state.current and state.removed == []


def test_moved_back_file_is_current_by_its_own_entry(setup) -> None:
    library, _, catalog = setup
    move(library, "trip/1.jpg", "x/1.jpg")
    catalog.ingest(library, shard_size=100)
    move(library, "x/1.jpg", "trip/1.jpg")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 0 and report.new_shards == []
    state = catalog.state(library)
    assert "trip/1.jpg" not in state.moved and state.current["trip/1.jpg"][1].path == "trip/1.jpg"


def test_moved_and_edited_file_is_new(setup) -> None:
    library, _, catalog = setup
    data = (library / "trip/2.jpg").read_bytes()
    (library / "trip/2.jpg").unlink()
    put(library / "new/2.jpg", data[:-1] + b"!", MTIME + 2)  # same size and mtime
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 0 and report.new_shards == ["000002-00000"]
    assert [e.path for e in catalog.read("000002-00000")] == ["new/2.jpg"]
    assert [e.path for _, e in catalog.state(library).removed] == ["trip/2.jpg"]


def test_a_move_that_changes_the_mtime_is_still_a_move(setup) -> None:
    library, _, catalog = setup
    data = (library / "trip/3.jpg").read_bytes()
    (library / "trip/3.jpg").unlink()
    put(library / "copied/3.jpg", data, MTIME + 999)  # copied without keeping the mtime
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 1
    state = catalog.state(library)
    assert state.moved["copied/3.jpg"].entry == Entry("copied/3.jpg", len(data), MTIME + 999)


def test_a_copy_is_a_new_file(setup) -> None:
    library, _, catalog = setup
    shutil.copy2(library / "trip/0.jpg", library / "copy.jpg")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 0 and report.new_entries == 1


def test_identical_files_pair_one_to_one_by_name(setup) -> None:
    library, _, catalog = setup
    twins = [
        put(library / f"twins/{n}.jpg", b"same bytes", MTIME + 50 + i) for i, n in enumerate("ab")
    ]
    catalog.ingest(library, shard_size=100)
    decode(library.parent / "results", library)
    for twin in twins:
        twin.unlink()
    put(library / "moved/b.jpg", b"same bytes", MTIME + 51)
    put(library / "moved/a.jpg", b"same bytes", MTIME + 50)
    put(library / "moved/third.jpg", b"same bytes", MTIME + 52)  # a third copy: new
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 2 and report.new_entries == 1
    state = catalog.state(library)
    assert state.moved["moved/a.jpg"].source.path == "twins/a.jpg"
    assert state.moved["moved/b.jpg"].source.path == "twins/b.jpg"
    assert state.current["moved/third.jpg"][0] == "000003-00000"


def test_files_never_decoded_are_processed_as_new(tmp_path: Path) -> None:
    library, results = tmp_path / "lib", tmp_path / "results"
    put(library / "a/1.jpg", b"one")
    catalog = Catalog(Layout(results))
    catalog.ingest(library, shard_size=100)
    decode(results, library, fingerprints=False)  # e.g. a metadata-only run
    move(library, "a/1.jpg", "b/1.jpg")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 0 and report.new_entries == 1


def test_undecodable_images_are_not_matched(tmp_path: Path) -> None:
    library, results = tmp_path / "lib", tmp_path / "results"
    put(library / "a/1.jpg", b"broken")
    catalog = Catalog(Layout(results))
    catalog.ingest(library, shard_size=100)
    entry = catalog.read("000001-00000")[0]
    row = error_row(entry, "cannot identify image file") | {"fingerprint": "x"}
    write_rows(results / "technical/000001-00000.jsonl", [row])
    move(library, "a/1.jpg", "b/1.jpg")
    assert catalog.ingest(library, shard_size=100).moved == 0


def test_only_new_files_of_a_vanished_size_are_read(setup, monkeypatch) -> None:
    library, _, catalog = setup
    opened: list[str] = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(Path(path).relative_to(library)) if library in Path(path).parents else "")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(scan_module, "open", spy, raising=False)
    put(library / "brand_new.jpg", b"a new photo of another size")
    catalog.ingest(library, shard_size=100)
    assert [p for p in opened if p] == []  # nothing vanished: no file read

    size = (library / "trip/4.jpg").stat().st_size
    move(library, "trip/4.jpg", "moved/4.jpg")
    put(library / "same_size.jpg", b"z" * size)
    put(library / "other_size.jpg", b"z" * (size + 1))
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 1 and report.new_entries == 2
    assert sorted(p for p in opened if p) == ["moved/4.jpg", "same_size.jpg"]


def test_swapped_files_are_two_moves(setup) -> None:
    library, _, catalog = setup
    move(library, "trip/0.jpg", "tmp.jpg")
    move(library, "trip/1.jpg", "trip/0.jpg")
    move(library, "tmp.jpg", "trip/1.jpg")
    report = catalog.ingest(library, shard_size=100)
    assert report.moved == 2 and report.new_entries == 0
    state = catalog.state(library)
    assert state.current["trip/0.jpg"][1].path == "trip/1.jpg"
    assert state.current["trip/1.jpg"][1].path == "trip/0.jpg"


def test_batches_after_moves_get_new_numbers(setup) -> None:
    library, _, catalog = setup
    move(library, "trip/0.jpg", "a.jpg")
    catalog.ingest(library, shard_size=100)  # batch 2: moves only
    put(library / "new.jpg", b"new")
    assert catalog.ingest(library, shard_size=100).new_shards == ["000003-00000"]
    assert catalog.reserve_batch(1, 100) == ["000004-00000"]


def test_moves_survive_compaction_of_their_source_shard(setup) -> None:
    """Compaction copies current entries (a moved file's catalogued entry) into a new batch
    and retires the old manifests: the move, keyed by that version, still applies."""
    library, results, catalog = setup
    shutil.move(library / "trip", library / "2024/trip")
    catalog.ingest(library, shard_size=100)
    state = catalog.state(library)
    with catalog.locked():
        (new_shard,) = catalog.reserve_batch(len(state.current), 100)
        write_manifest(catalog.manifest_path(new_shard), [e for _, e in state.current.values()])
    retired = catalog.root / "compacted"
    retired.mkdir()
    os.replace(catalog.manifest_path("000001-00000"), retired / "000001-00000.tsv")
    after = catalog.state(library)
    assert sorted(after.current) == sorted(state.current)
    assert {s for s, _ in after.current.values()} == {new_shard}
    assert after.moved == state.moved and after.removed == [] and after.uncatalogued == []
    assert catalog.ingest(library, shard_size=100).new_entries == 0


# ------------------------------------------------------------------ the index


def test_index_follows_moves_in_one_update(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    photos = sample_photos()
    first = lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    decode_rows = read_rows(lib.results / "technical" / f"{first}.jsonl")
    rows = [r | {"fingerprint": content_fingerprint(lib.library / r["path"])} for r in decode_rows]
    write_rows(lib.results / "technical" / f"{first}.jsonl", rows)
    update_index(lib.layout, lib.library)
    move(lib.library, "2021/paris/IMG_0001.jpg", "travel/france/eiffel.jpg")
    report = lib.catalog.ingest(lib.library, shard_size=100)
    assert report.moved == 1

    updated = update_index(lib.layout, lib.library)
    assert updated.documents == 5 and updated.reindexed_shards == 1 and updated.vectors == 4
    index = open_index(lib.layout.index)
    searcher = index.searcher()
    keys = [
        searcher.doc(a)["key"][0] for _, a in searcher.search(tantivy.Query.all_query(), 10).hits
    ]
    assert "travel/france/eiffel.jpg" in keys and "2021/paris/IMG_0001.jpg" not in keys
    hits = searcher.search(index.parse_query("eiffel", ["caption"]), 10).hits
    assert [searcher.doc(a)["key"][0] for _, a in hits] == ["travel/france/eiffel.jpg"]
    vector_keys = (lib.layout.index / "vector_keys.txt").read_text().split("\n")
    assert (
        "travel/france/eiffel.jpg" in vector_keys and "2021/paris/IMG_0001.jpg" not in vector_keys
    )
    assert not update_index(lib.layout, lib.library).committed
    assert read_manifest(lib.catalog.manifest_path(first))[0].path == "2021/paris/IMG_0001.jpg"


def test_moves_survive_a_real_compaction(tmp_path: Path) -> None:
    from skimage import data

    from imganalyzer.catalog.current import current_shards
    from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
    from imganalyzer.example.writers import write_jpeg
    from imganalyzer.steps.compact import compact

    library, results = tmp_path / "lib", tmp_path / "results"
    config = {
        "results": str(results),
        "library": str(library),
        "modules": ["metadata", "technical"],
        "shard_size": 100,
        "shards_per_model_job": 4,
        "tiers": {"clip": 32},
        "tier_compression": "jpeg",
        "jpeg_quality": 90,
    }
    catalog = Catalog(Layout(results))

    def workflow_run() -> int:
        report = catalog.ingest(library, shard_size=100, exclude=[results])
        for shard in report.new_shards:
            manifest = catalog.manifest_path(shard)
            run_decode_shard(
                manifest,
                library,
                results / "tiers" / f"{shard}.zarr",
                results / "technical" / f"{shard}.jsonl",
                results / "thumbnails" / f"{shard}.zip",
                tiers=config["tiers"],
            )
            run_metadata_shard(manifest, library, results / "metadata" / f"{shard}.jsonl")
        return report.moved

    for index, photo in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        write_jpeg(library / f"a/{index}.jpg", photo[::8, ::8])
    workflow_run()
    write_jpeg(library / "b/new.jpg", data.rocket()[::8, ::8])
    workflow_run()  # a second small batch
    shutil.move(library / "a", library / "c")
    assert workflow_run() == 3

    def current_rows() -> dict[str, dict]:
        layout = Layout(results)
        store, view = ResultsStore(layout), current_shards(layout, library)
        return {
            p: r
            for s in view.shards.values()
            for p, r in store.current_rows("technical", s).items()
        }

    before = current_rows()
    assert sorted(before) == ["b/new.jpg", "c/0.jpg", "c/1.jpg", "c/2.jpg"]
    assert compact(Layout(results), config).new_shards == ["000004-00000"]
    assert catalog.shard_ids() == ["000004-00000"]
    assert current_rows() == before
    state = catalog.state(library, exclude=[results])
    assert sorted(state.moved) == ["c/0.jpg", "c/1.jpg", "c/2.jpg"]
    again = catalog.ingest(library, shard_size=100, exclude=[results])
    assert (again.new_entries, again.moved) == (0, 0)
    # and a file moved again after compaction still matches its fingerprint
    move(library, "c/0.jpg", "d/0.jpg")
    assert workflow_run() == 1
    assert current_rows()["d/0.jpg"]["catalog_path"] == "a/0.jpg"
