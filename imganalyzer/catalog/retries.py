"""Files that a newer decoder reads are catalogued again, so that only they are analysed again.

When the decoder learns a format (:data:`imganalyzer.formats.FORMATS_VERSION` grows: JPEG XL
and libheif's "mini" HEIF in version 2), the files an older version refused keep their error
rows: their version (path, size, mtime_ns) is catalogued, so no job runs for them again, and
bumping the decode version would re-decode the whole library. Instead the catalog plan takes
such a file as if it had changed: its current version goes into the new ingest batch, whose
decode, metadata and model jobs run for it alone. Manifests stay immutable: the older entry
of the same version is superseded, as the newest shard holding a version is the one that
counts (:func:`imganalyzer.catalog.state.derive_state`).

A file is retried when the current entry's technical or metadata row says
``unsupported_format`` with a ``formats_version`` (absent: 1) older than the one its content
needs (:func:`imganalyzer.formats.readable_since` of its first bytes), which this decoder
has. A row written by this decoder carries its version, so a file is retried once per
version whatever its new row says.

Finding them reads every technical and metadata row file of the catalog (a byte search
first: a file without ``unsupported_format`` in it is not parsed). So it is done only until
a plan finds nothing to retry; a real run then records the version in
``Layout.formats_checked``, and later plans read that one small file instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from imganalyzer.catalog.manifests import Entry, Move, version_key
from imganalyzer.catalog.state import Records
from imganalyzer.files import atomic_write_text
from imganalyzer.formats import FORMATS_VERSION, readable_since
from imganalyzer.layout import Layout
from imganalyzer.results import UNSUPPORTED_FORMAT

log = logging.getLogger(__name__)

# The row files that hold a reader's verdict on the file itself.
READERS = ("technical", "metadata")
_MARK = b'"' + UNSUPPORTED_FORMAT.encode() + b'"'
_HEAD_BYTES = 32  # enough for formats.readable_since


def formats_checked(layout: Layout) -> int:
    """The formats version whose retries the catalog has made (0: never checked)."""
    try:
        return int(layout.formats_checked.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


def record_formats_checked(layout: Layout, version: int = FORMATS_VERSION) -> None:
    atomic_write_text(layout.formats_checked, f"{version}\n")


def files_to_retry(
    records: Records,
    on_disk: dict[str, tuple[int, int]],
    moved: dict[str, Move],
    layout: Layout,
    library: Path,
) -> list[Entry]:
    """The current files, in path order, whose current entry's reader rows say an older
    formats version could not read them, and whose content this version reads: each as its
    version on disk (``on_disk``: the scan; ``moved``: current path -> move, as
    ``Records.resolve`` gives them)."""
    current = _current_paths(records, on_disk, moved)
    refused: dict[str, int] = {}  # current path -> the oldest version that refused it
    for shard, row in _unsupported_rows(records, layout):
        key = (row["path"], row["size"], row["mtime_ns"])
        path = current.get(key) if records.shard_of.get(key) == shard else None
        if path is not None:
            version = row.get("formats_version", 1)
            refused[path] = min(version, refused.get(path, version))
    retries = []
    for path, version in sorted(refused.items()):
        if version >= FORMATS_VERSION:
            continue
        try:
            with open(library / path, "rb") as handle:
                head = handle.read(_HEAD_BYTES)
        except OSError as error:
            log.warning("catalog: cannot read %s: %s", path, error)
            continue
        if version < readable_since(head) <= FORMATS_VERSION:
            retries.append(Entry(path, *on_disk[path]))
    return retries


def _current_paths(
    records: Records, on_disk: dict[str, tuple[int, int]], moved: dict[str, Move]
) -> dict[tuple[str, int, int], str]:
    """Catalogued version -> the current path of its file, for every current file."""
    current = {(path, *version): path for path, version in on_disk.items()}
    current = {key: path for key, path in current.items() if key in records.shard_of}
    for path, move in moved.items():
        current[version_key(move.source)] = path
    return current


def _unsupported_rows(records: Records, layout: Layout) -> Iterator[tuple[str, dict]]:
    """(shard, row) of every reader row of kind ``unsupported_format``, in the shards that
    hold the newest entry of some version."""
    for shard in sorted(set(records.shard_of.values())):
        for module in READERS:
            try:
                data = layout.rows(module, shard).read_bytes()
            except FileNotFoundError:
                continue
            if _MARK not in data:
                continue
            for line in data.splitlines():
                if _MARK in line:
                    row = json.loads(line)
                    if row.get("error_kind") == UNSUPPORTED_FORMAT:
                        yield shard, row
