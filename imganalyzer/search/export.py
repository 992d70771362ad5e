"""`imganalyzer export`: the current state of the results as tables for pandas and DuckDB.

Writes into the output folder:

* ``<module>.parquet`` (or ``.csv``): one row per current image with that module's result
  row (``path``, ``size``, ``mtime_ns``, ``status``, ``error``, the module's fields) and
  its ``shard``;
* ``images.parquet``: one row per current image, the fields of its index document (the
  modules joined: ``camera``, ``date``, ``caption``, ``aesthetic``, ...), ``key`` renamed
  ``path``;
* ``embeddings.npy``: float16 (n, dim) CLIP vectors, and ``embedding_keys.parquet``:
  ``row``, ``path``, ``key_id`` of each of its rows.

Paths (the ``path`` and ``folder`` columns) are in their text form: valid UTF-8 with a
backslash escape for each byte of a name that is not UTF-8 (``caf\\xe9.jpg``), a tab or
newline and a backslash itself; ``imganalyzer.catalog.manifests.unescape_path`` gives the file name
back. Nested values (lists, dicts) stay nested in Parquet except dicts, whose keys vary from row
to row (``captions.answers``), which are JSON text, as every nested value is in CSV.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imganalyzer.catalog.current import CurrentView, current_shards
from imganalyzer.catalog.manifests import escape_path
from imganalyzer.files import atomic_open
from imganalyzer.layout import Layout
from imganalyzer.search.documents import named_people, shard_fields, valid_text
from imganalyzer.search.index import known_modules
from imganalyzer.search.vectors import gather_vectors
from imganalyzer.store import ResultsStore

FORMATS = ("parquet", "csv")
PATH_COLUMNS = ("path", "key", "folder")


def export_tables(
    layout: Layout,
    library: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str = "parquet",
    modules: Iterable[str] | None = None,
) -> list[Path]:
    """Write the tables of the library's current images into ``out``; returns the files."""
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    view = current_shards(layout, library)
    store = ResultsStore(layout)
    modules = known_modules(modules)
    written = []
    for module in modules:
        table = module_table(store, view, module)
        if table is not None:
            written.append(_write(table, out / f"{module}.{fmt}", fmt))
    written.append(_write(summary_table(store, view, modules), out / f"images.{fmt}", fmt))
    gathered = gather_vectors(store, view, out / "embeddings.npy")
    if gathered is not None:
        keys, ids = gathered
        paths = [escape_path(key) for key in keys]
        index = pd.DataFrame({"row": range(len(keys)), "path": paths, "key_id": ids})
        written += [out / "embeddings.npy", _write(index, out / f"embedding_keys.{fmt}", fmt)]
    return written


def module_table(store: ResultsStore, view: CurrentView, module: str) -> pd.DataFrame | None:
    """One row per current image with a result row of ``module`` (None: no results)."""
    frames = []
    for shard, current in view.shards.items():
        rows = [text_row(row) for row in store.current_rows(module, current).values()]
        if rows:
            frames.append(pd.DataFrame(rows).assign(shard=shard))
    return pd.concat(frames, ignore_index=True) if frames else None


def summary_table(store: ResultsStore, view: CurrentView, modules: list[str]) -> pd.DataFrame:
    """One row per current image: the modules joined, as the index sees them."""
    people = named_people(store.layout) if "faces" in modules else {}
    rows = [
        text_row(fields)
        for current in view.shards.values()
        for fields in shard_fields(store.shard_results(current, modules), people)
    ]
    table = pd.DataFrame(rows).rename(columns={"key": "path"})
    return table.drop(columns=["path_text"], errors="ignore")


def _write(table: pd.DataFrame, path: Path, fmt: str) -> Path:
    table = _flatten_nested(table, as_json_lists=fmt == "csv")
    if fmt == "parquet":
        with atomic_open(path, "wb") as handle:
            table.to_parquet(handle, index=False)
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            table.to_csv(handle, index=False)
    return path


def _flatten_nested(table: pd.DataFrame, as_json_lists: bool) -> pd.DataFrame:
    """Object columns: missing values as None, dicts (and for CSV lists) as JSON text."""
    table = table.copy()
    for column in [c for c, dtype in table.dtypes.items() if dtype == np.dtype(object)]:
        table[column] = [_cell(v, as_json_lists) for v in table[column]]
    return table


def text_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row whose text is valid UTF-8 (pandas and Parquet need it), paths in text form."""
    return {
        k: escape_path(v) if k in PATH_COLUMNS and isinstance(v, str) else _valid(v)
        for k, v in row.items()
    }


def _valid(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [_valid(v) for v in value]
    if isinstance(value, dict):
        return {_valid(k): _valid(v) for k, v in value.items()}
    return value


def _cell(value: Any, as_json_lists: bool) -> Any:
    if isinstance(value, dict) or (as_json_lists and isinstance(value, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value != value:  # NaN where a row lacks the field
        return None
    return value
