"""The library view: one scan per workflow run, recorded in ``run/library.tsv`` and read by
the global steps. Written and read back exactly (hostile names too); the plan's view is the
state the catalog has once the plan is written; the steps read it instead of scanning."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imganalyzer.catalog.current import (
    LibraryView,
    current_shards,
    file_digest_of_view,
    stage_view,
    text_digest,
)
from imganalyzer.catalog.manifests import Entry, Move
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from tests.unit.catalog.test_moves import MTIME, decode, move, put

HOSTILE = [
    "tab\there.jpg",
    "new\nline.jpg",
    "carriage\rreturn.jpg",
    "back\\slash\\t.jpg",
    "caf\udce9 latin-1.jpg",  # the byte 0xE9, not UTF-8 (os.fsdecode's surrogate)
    "emoji 📷/ü.jpg",
    "  spaces  .jpg",
]


def test_a_view_reads_back_exactly_whatever_the_names(tmp_path: Path) -> None:
    current = {
        name: ("000001-00000", Entry(name, i + 1, MTIME + i)) for i, name in enumerate(HOSTILE)
    }
    moved_to = "moved\t/\udcff.jpg"
    source = Entry("old\nplace.jpg", 5, MTIME)
    current[moved_to] = ("000002-00003", source)
    moved = {moved_to: Move(Entry(moved_to, 5, MTIME + 99), source)}
    view = LibraryView(current, moved)
    view.write(tmp_path / "library.tsv")

    back = LibraryView.read(tmp_path / "library.tsv")

    assert back == view
    assert list(back.current) == list(view.current)  # manifest order kept
    raw = (tmp_path / "library.tsv").read_bytes()
    raw.decode("utf-8")  # valid UTF-8 whatever the names hold
    assert raw.count(b"\n") == len(current) + 1  # one line per file, and the header
    assert file_digest_of_view(tmp_path / "library.tsv") == view.digest()


def test_another_file_is_not_read_as_a_view(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_text("path\tsize\tmtime_ns\n")
    with pytest.raises(ValueError, match="not a library view"):
        LibraryView.read(tmp_path / "x.tsv")
    assert file_digest_of_view(tmp_path / "missing.tsv") is None


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Layout]:
    library, layout = tmp_path / "lib", Layout(tmp_path / "results")
    for i, name in enumerate(HOSTILE[:3] + ["trip/a.jpg", "trip/b.jpg"]):
        put(library / name, f"photo {i} ".encode() * (i + 1), MTIME + i)
    Catalog(layout).ingest(library, shard_size=2)
    decode(layout.root, library)
    return library, layout


def planned_and_written(library: Path, layout: Layout) -> tuple[str, str]:
    """(the plan's view, the view of the state once the plan is written)."""
    catalog = Catalog(layout)
    plan = catalog.plan(library, shard_size=2, exclude=[layout.root])
    planned = LibraryView.of(plan.library_state()).text()
    catalog.ingest(library, shard_size=2, exclude=[layout.root])
    return planned, LibraryView.of(catalog.state(library, exclude=[layout.root])).text()


def test_the_plans_view_is_the_state_once_it_is_written(library: tuple[Path, Layout]) -> None:
    lib, layout = library
    put(lib / "new/c.jpg", b"a new photo")  # a new shard
    put(lib / "trip/a.jpg", b"edited", MTIME + 50)  # a new version
    (lib / "trip/b.jpg").unlink()  # removed
    move(lib, HOSTILE[0], "albums/renamed.jpg")  # moved: its results carried on

    planned, written = planned_and_written(lib, layout)

    assert planned == written
    layout.library_view.parent.mkdir(parents=True)
    layout.library_view.write_text(planned, encoding="utf-8")
    view = LibraryView.read(layout.library_view)
    assert view.moved["albums/renamed.jpg"].source.path == HOSTILE[0]
    assert "trip/b.jpg" not in view.current and "new/c.jpg" in view.current


def test_an_unchanged_library_plans_the_same_view(library: tuple[Path, Layout]) -> None:
    lib, layout = library
    first, _ = planned_and_written(lib, layout)
    again, _ = planned_and_written(lib, layout)
    assert text_digest(first) == text_digest(again)


def test_a_step_given_the_view_does_not_scan(library: tuple[Path, Layout]) -> None:
    lib, layout = library
    LibraryView.of(Catalog(layout).state(lib)).write(layout.library_view)
    shutil.rmtree(lib)  # the library is gone: only the view can answer

    view = current_shards(layout, lib, layout.library_view)

    names = sorted(e.path for s in view.shards.values() for e in s.entries)
    assert names == sorted(HOSTILE[:3] + ["trip/a.jpg", "trip/b.jpg"])


def test_an_unmounted_library_is_seen_as_the_last_run_saw_it(
    library: tuple[Path, Layout],
) -> None:
    lib, layout = library
    (lib / "trip/b.jpg").unlink()  # removed since the catalog was written
    LibraryView.of(Catalog(layout).state(lib)).write(layout.library_view)
    os.rename(lib, lib.with_name("unmounted"))

    view = current_shards(layout, lib)

    assert "trip/b.jpg" not in view.current  # the catalog alone would still list it
    assert "trip/a.jpg" in view.current


def test_staging_writes_a_changed_view_and_links_an_unchanged_one(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    view = LibraryView({"a.jpg": ("000001-00000", Entry("a.jpg", 1, MTIME))}, {})
    text = view.text()

    staged = stage_view(layout, text, text_digest(text))
    assert staged == layout.staged_library_view and staged.read_text() == text
    os.replace(staged, layout.library_view)  # what the library_view job does

    stage_view(layout, text, text_digest(text))
    assert os.path.samefile(layout.staged_library_view, layout.library_view)

    changed = LibraryView({}, {}).text()
    stage_view(layout, changed, text_digest(changed))
    assert layout.staged_library_view.read_text() == changed
    assert layout.library_view.read_text() == text  # placed only by the job
