"""The browse table the index step writes: its parts per shard and their upkeep."""

from __future__ import annotations

import json

from imganalyzer.layout import Layout
from imganalyzer.search.browse_write import BROWSE_VERSION
from imganalyzer.search.index import update_index
from tests.support.results_library import ResultsLibrary

from .conftest import table_of


def test_an_index_without_a_table_gets_one_on_its_next_update(indexed: ResultsLibrary) -> None:
    lib = indexed
    files = Layout(lib.results).index_files
    files.browse.unlink()
    for part in files.browse_part("x").parent.glob("*.json"):
        part.unlink()
    state = json.loads(files.state.read_text())
    del state["browse"]  # a state file written before the browse table existed
    files.state.write_text(json.dumps(state))
    report = update_index(lib.layout, lib.library)
    assert not report.committed  # Tantivy untouched: the table is made from the rows
    assert table_of(lib).n == 5 and int(table_of(lib).column("version")[0]) == BROWSE_VERSION
