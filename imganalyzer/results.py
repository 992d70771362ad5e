"""Per-shard module results: one JSON object per image, in manifest order.

Every row carries the file version it describes (``path``, ``size``, ``mtime_ns``),
a ``status`` (``"ok"`` or ``"error"``), an ``error`` reason when it failed, and the
module's own fields at top level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imganalyzer.files import atomic_open

if TYPE_CHECKING:  # the catalog reads rows with this module: no import at run time
    from imganalyzer.catalog.manifests import Entry

OK = "ok"
ERROR = "error"


def ok_row(entry: Entry, fields: dict[str, Any]) -> dict[str, Any]:
    """A result row for an analysed image."""
    return {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "status": OK,
        **fields,
    }


# Kinds of error rows (``error_kind``): what a user can do about the file differs by kind.
ERROR_KINDS = frozenset(
    {"empty", "truncated", "corrupt", "unsupported_codec", "unsupported_format"}
    | {"no_image_data", "too_large", "unreadable", "vanished"}
)


def error_row(entry: Entry, reason: str, error_kind: str | None = None) -> dict[str, Any]:
    """A result row for an image that could not be analysed, with a one-line reason and,
    where known, its ``error_kind`` (one of :data:`ERROR_KINDS`)."""
    reason = " ".join(str(reason).split()) or "unknown error"
    row = {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "status": ERROR,
        "error": reason,
    }
    if error_kind is not None:
        if error_kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {error_kind!r}")
        row["error_kind"] = error_kind
    return row


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines, atomically. Returns the number of rows written."""
    count = 0
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=True, allow_nan=False))
            handle.write("\n")
            count += 1
    return count


def read_rows(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    with open(Path(path), encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
