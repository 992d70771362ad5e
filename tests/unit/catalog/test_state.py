"""The library state: current, superseded and removed versions, and changes not yet
catalogued."""

from __future__ import annotations

from pathlib import Path

from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from tests.unit.catalog.conftest import touch


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
