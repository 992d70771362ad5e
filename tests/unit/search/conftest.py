"""The sample photos in one shard, indexed (with their browse table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imganalyzer.search.browse import BrowseTable
from imganalyzer.search.index import update_index
from tests.support.results_library import ResultsLibrary, sample_photos


@pytest.fixture
def indexed(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path)
    lib.add_shard(sample_photos())
    update_index(lib.layout, lib.library)
    return lib


def table_of(lib: ResultsLibrary) -> BrowseTable:
    """The browse table of ``lib``'s index as it is now."""
    return BrowseTable(lib.layout.index_files.browse)
