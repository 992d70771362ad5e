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
from typing import Any, Protocol

from imganalyzer.files import atomic_open
from imganalyzer.formats import FORMATS_VERSION

OK = "ok"
ERROR = "error"


class FileVersion(Protocol):
    """What a row needs of the file it describes: a catalog ``Entry`` (catalog imports this
    module, so the type is described here rather than imported)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...


def ok_row(entry: FileVersion, fields: dict[str, Any]) -> dict[str, Any]:
    """A result row for an analysed image; ``entry`` is a catalog ``Entry``."""
    return {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "status": OK,
        **fields,
    }


# Kinds of error rows (``error_kind``): what a user can do about the file differs by kind.
UNSUPPORTED_FORMAT = "unsupported_format"  # no decoder of this version reads the content
ERROR_KINDS = frozenset(
    {"empty", "truncated", "corrupt", "unsupported_codec", "unsupported_format"}
    | {"no_image_data", "too_large", "unreadable", "vanished"}
)


def error_row(entry: FileVersion, reason: str, error_kind: str | None = None) -> dict[str, Any]:
    """A result row for an image that could not be analysed, with a one-line reason and,
    where known, its ``error_kind`` (one of :data:`ERROR_KINDS`); an unsupported format's
    row also names the ``formats_version`` that could not read it."""
    reason = " ".join(str(reason).split()) or "unknown error"
    row: dict[str, Any] = {
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
    if error_kind == UNSUPPORTED_FORMAT:  # a later version that reads it retries the file
        row["formats_version"] = FORMATS_VERSION
    return row


def write_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines, atomically. Returns the number of rows written."""
    count = 0
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=True, allow_nan=False))
            handle.write("\n")
            count += 1
    return count


def read_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    with open(Path(path), encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
