"""The browse table, written by the index step beside the Tantivy index: every current image
in timeline order (newest first) with what the timeline, explore and map pages and the
search's column filters read, as arrays in ``index/browse.npz``. A page of the timeline is
then a binary search and a slice, at any depth of a million images (no offset scan).

Each shard's rows are kept in ``index/browse/<shard>.json``, written while the shard is
indexed (from the rows the index reads anyway); the table is merged from those after every
update. A part whose shard changed in a way the index did not re-read (a file deleted, a
thumbnail file rewritten) is made again from the shard's rows, so an index written before
the table existed gets one on its next update.

The date is the camera's wall clock (EXIF ``DateTimeOriginal``) with its UTC offset where
known; an image without one is placed by its file's modification time (local time of the
machine that indexed it) and flagged, so that pages can say so.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.decode.names import display_names
from imganalyzer.files import atomic_open, atomic_write_text
from imganalyzer.layout import IndexFiles, Layout
from imganalyzer.results import ERROR
from imganalyzer.search.documents import ShardImage, image_fields, valid_text

log = logging.getLogger(__name__)

BROWSE_VERSION = 1
EPOCH = datetime(1970, 1, 1)
NO_OFFSET = -32768  # minutes: the image's UTC offset is not known
# flags
FILE_TIME = 1  # dated by the file's modification time (no EXIF capture time)
FAILED = 2  # some module failed on the image
NO_THUMBNAIL = 4  # no stored thumbnail (the image could not be decoded)

# Columns whose values repeat: stored as codes into a table of distinct strings.
CODED = (
    "shard", "camera", "lens", "town", "country", "error", "folder",
    "camera_text", "lens_text", "place_text", "people_text",
)  # fmt: skip
NUMBERS = ("lat", "lon", "aesthetic", "sharpness")
# The fields of a record (image_record), as stored in the parts.
RECORD_FIELDS = (
    "key", "key_id", "row", "date", "offset", "flags", "aspect", "camera", "lens", "town",
    "country", "error", "labels", "lat", "lon", "aesthetic", "sharpness", "has_text",
    "search_date", "folder", "camera_text", "lens_text", "place_text", "people_text",
)  # fmt: skip


def image_record(image: ShardImage, fields: dict[str, Any], thumbs: set[int] | None) -> dict:
    """One image's row of the browse table (plain JSON values)."""
    rows = image.rows
    metadata = _ok(rows.get("metadata"))
    date, offset = _exif_date(metadata.get("datetime_original"))
    file_time = date is None
    if date is None:
        date, offset = _file_date(image.entry.mtime_ns)
    width = _positive(metadata.get("width")) or _positive(_ok(rows.get("technical")).get("width"))
    height = _positive(metadata.get("height")) or _positive(
        _ok(rows.get("technical")).get("height")
    )
    errors = [row for row in rows.values() if row is not None and row.get("status") == ERROR]
    flags = (FILE_TIME if file_time else 0) | (FAILED if errors else 0)
    if thumbs is None or image.row not in thumbs:
        flags |= NO_THUMBNAIL
    labels = _ok(rows.get("objects")).get("labels") or []
    return {
        "key": image.entry.path,
        "key_id": fields["key_id"],
        "row": image.row,
        "date": date,
        "offset": offset,
        "flags": flags,
        "aspect": round(width / height, 4) if width and height else 0.0,
        "camera": display_names(metadata)["camera"],
        "lens": metadata.get("lens"),
        "town": metadata.get("place"),
        "country": metadata.get("country"),
        "error": _error_kind(errors) if errors else None,
        "labels": sorted({str(label) for label in labels}),
        "lat": fields.get("gps_latitude"),
        "lon": fields.get("gps_longitude"),
        "aesthetic": fields.get("aesthetic"),
        "sharpness": fields.get("sharpness"),
        "has_text": bool(fields.get("has_text")),
        "search_date": None if file_time else date,
        # the index's own text of the fields the search filters by words (same tokens)
        "folder": fields["folder"],
        "camera_text": _text(fields.get("camera")),
        "lens_text": _text(fields.get("lens")),
        "place_text": _text(fields.get("place")),
        "people_text": _text(fields.get("people")),
    }


def _ok(row: dict[str, Any] | None) -> dict[str, Any]:
    return row if row is not None and row.get("status") != ERROR else {}


def _text(value: Any) -> str | None:
    return valid_text(value) if isinstance(value, str) else None


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _error_kind(errors: list[dict[str, Any]]) -> str:
    """The kind of the first failure that names one (a decode failure says most)."""
    for row in errors:
        if row.get("error_kind"):
            return str(row["error_kind"])
    return "error"


def _exif_date(value: Any) -> tuple[int | None, int]:
    """(wall-clock seconds since 1970 as if UTC, UTC offset in minutes or NO_OFFSET)."""
    if not isinstance(value, str):
        return None, NO_OFFSET
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, NO_OFFSET
    offset = parsed.utcoffset()
    minutes = NO_OFFSET if offset is None else int(offset.total_seconds() // 60)
    return int((parsed.replace(tzinfo=None) - EPOCH).total_seconds()), minutes


def _file_date(mtime_ns: int) -> tuple[int, int]:
    """The file time as the wall clock of this machine's time zone, with its offset."""
    local = datetime.fromtimestamp(mtime_ns / 1e9, UTC).astimezone()
    offset = local.utcoffset()
    minutes = NO_OFFSET if offset is None else int(offset.total_seconds() // 60)
    return int((local.replace(tzinfo=None) - EPOCH).total_seconds()), minutes


def thumbnail_rows(zipped: Path) -> set[int] | None:
    """The manifest rows with a stored thumbnail (None without a thumbnail file)."""
    try:
        with zipfile.ZipFile(zipped) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    return {int(name.removesuffix(".jpg")) for name in names if name[:-4].isdigit()}


def _thumbnail_version(layout: Layout, shard: str) -> list[int] | None:
    try:
        stat = layout.thumbnails(shard).stat()
    except FileNotFoundError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


class PartWriter:
    """Collects one shard's records while the index reads the shard, then saves them."""

    def __init__(self, index_dir: Path, layout: Layout, shard: str, stamp: list) -> None:
        self.path = IndexFiles(index_dir).browse_part(shard)
        self.shard, self.stamp = shard, stamp
        self.thumbs = thumbnail_rows(layout.thumbnails(shard))
        self.records: list[dict] = []

    def add(self, image: ShardImage, fields: dict[str, Any]) -> None:
        self.records.append(image_record(image, fields, self.thumbs))

    def save(self) -> None:
        part = {"version": BROWSE_VERSION, "stamp": self.stamp, "records": self.records}
        atomic_write_text(self.path, json.dumps(part, allow_nan=False))


def part_stamp(layout: Layout, shard: str, fingerprint: Sequence[str]) -> list:
    """What a part was made from: the shard's index fingerprint and its thumbnail file."""
    return [BROWSE_VERSION, *fingerprint, _thumbnail_version(layout, shard)]


def _load_part(path: Path, stamp: list) -> list[dict] | None:
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return part["records"] if part.get("stamp") == stamp else None


def write_browse(
    index_dir: Path,
    layout: Layout,
    images: Callable[[str], Iterable[ShardImage]],
    fingerprints: dict[str, list[str]],
) -> int:
    """Merge the parts of the current shards (making missing or outdated ones from
    ``images(shard)``, the shard's current images) into ``browse.npz``; remove the parts of
    shards that are gone. Returns the image count."""
    files = IndexFiles(index_dir)
    columns: dict[str, list] = {name: [] for name in (*RECORD_FIELDS, "shard")}
    for shard, fingerprint in fingerprints.items():
        stamp = part_stamp(layout, shard, fingerprint)
        found = _load_part(files.browse_part(shard), stamp)
        if found is None:
            writer = PartWriter(index_dir, layout, shard, stamp)
            for image in images(shard):
                writer.add(image, image_fields(image.entry.path, shard, image.rows))
            writer.save()
            found = writer.records
        for name in RECORD_FIELDS:  # by column: a million small dicts would not fit
            columns[name].extend(record[name] for record in found)
        columns["shard"].extend([shard] * len(found))
    parts = files.browse_part("x").parent
    if parts.is_dir():
        for stale in parts.glob("*.json"):
            if stale.stem not in fingerprints:
                stale.unlink()
    arrays = table_arrays(columns)
    with atomic_open(files.browse, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return len(columns["key"])


def table_arrays(columns: dict[str, list]) -> dict[str, np.ndarray]:
    """The columns of the records as the arrays of ``browse.npz``, in timeline order."""
    date = np.array(columns["date"], np.int64)
    key_id = np.array(columns["key_id"], np.uint64)
    order = np.lexsort((key_id, -date))  # newest first; ties by key id

    def sorted_list(name: str) -> list:
        values = columns[name]
        return [values[i] for i in order.tolist()]

    def array(name: str, dtype: Any) -> np.ndarray:
        return np.array(columns[name], dtype)[order]

    no_date = np.iinfo(np.int64).min
    arrays: dict[str, np.ndarray] = {
        "version": np.array([BROWSE_VERSION]),
        "date": date[order],
        "key_id": key_id[order],
        "row": array("row", np.int32),
        "offset": array("offset", np.int16),
        "flags": array("flags", np.uint8),
        "aspect": array("aspect", np.float32),
        "has_text": array("has_text", bool),
        "search_date": np.array(
            [no_date if d is None else d for d in columns["search_date"]], np.int64
        )[order],
    }
    for name in NUMBERS:
        arrays[name] = np.array([math.nan if v is None else v for v in columns[name]], np.float64)[
            order
        ]
    arrays.update(strings("key", sorted_list("key")))
    for name in CODED:
        codes, table = _coded(columns[name])
        arrays[f"{name}_code"] = codes[order]
        arrays.update(strings(name, table))
    arrays.update(_labels(sorted_list("labels")))
    return arrays


def strings(name: str, values: Iterable[str]) -> dict[str, np.ndarray]:
    """A list of strings as one UTF-8 blob and the offsets of each (``name``_blob/_at)."""
    encoded = [v.encode("utf-8", "surrogateescape") for v in values]
    at = np.zeros(len(encoded) + 1, np.int64)
    if encoded:
        at[1:] = np.cumsum([len(e) for e in encoded])
    return {f"{name}_blob": np.frombuffer(b"".join(encoded), np.uint8), f"{name}_at": at}


def _coded(values: Iterable[str | None]) -> tuple[np.ndarray, list[str]]:
    """Codes (-1: none) into a table of the distinct values, in first-seen order."""
    table: dict[str, int] = {}
    codes = [-1 if v is None else table.setdefault(v, len(table)) for v in values]
    return np.array(codes, np.int32), list(table)


def _labels(labels: list[list[str]]) -> dict[str, np.ndarray]:
    """Object labels: per label (a table) the sorted rows that have it (CSR)."""
    rows_of: dict[str, list[int]] = {}
    for position, own in enumerate(labels):
        for label in own:
            rows_of.setdefault(label, []).append(position)
    names = sorted(rows_of)
    start = np.zeros(len(names) + 1, np.int64)
    start[1:] = np.cumsum([len(rows_of[name]) for name in names])
    rows = [row for name in names for row in rows_of[name]]
    return {
        **strings("label", names),
        "label_start": start,
        "label_rows": np.array(rows, np.int32),
    }
