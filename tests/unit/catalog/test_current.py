"""CurrentView: the current images of each shard, moved files included (their results:
tests/unit/test_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imganalyzer.catalog.current import current_shards
from imganalyzer.catalog.store import Catalog
from tests.support.results_library import ResultsLibrary, sample_photos

SHARD = "000001-00000"
OLD, NEW = "2021/paris/IMG_0002.jpg", "albums/louvre.jpg"
MTIME = 2 * 10**18


@pytest.fixture
def lib(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    lib.add_fingerprints(lib.add_shard(sample_photos()))
    return lib


def test_current_entries_hold_the_new_path_and_its_version_on_disk(lib: ResultsLibrary) -> None:
    before = current_shards(lib.layout, lib.library).shards[SHARD].entries
    lib.move(OLD, NEW, MTIME)
    entries = current_shards(lib.layout, lib.library).shards[SHARD].entries
    position = [e.path for e in before].index(OLD)
    assert [e.path for e in entries] == [NEW if e.path == OLD else e.path for e in before]
    assert entries[position].version == (before[position].size, MTIME)


def test_a_moved_file_is_current_through_its_catalogued_version(lib: ResultsLibrary) -> None:
    lib.move(OLD, NEW, MTIME)
    current = current_shards(lib.layout, lib.library).shards[SHARD]
    assert current.moved() == {NEW: OLD}
    catalogued = {key: now for key, now in current.catalogued.items() if key[0] == OLD}
    assert list(catalogued.values()) == [NEW]
    assert all(key[0] == now for key, now in current.catalogued.items() if now != NEW)


def test_a_deleted_moved_file_is_no_longer_current(lib: ResultsLibrary) -> None:
    lib.move(OLD, NEW, MTIME)
    (lib.library / NEW).unlink()
    view = current_shards(lib.layout, lib.library)
    assert NEW not in {e.path for e in view.shards[SHARD].entries}
    assert OLD not in view.current and NEW not in view.current
    state = Catalog(lib.layout).state(lib.library)
    assert [e.path for _, e in state.removed] == [OLD]
