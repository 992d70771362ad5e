"""The index's schema and documents: its fields (:data:`INDEX_FIELDS`), which result field
of which module fills each (:data:`MODULE_FIELDS`: the CPU modules' here, the model
modules' from their registry entries), and the fields and Tantivy document of one image."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tantivy

from imganalyzer.catalog.manifests import escape_path
from imganalyzer.decode.names import display_names
from imganalyzer.layout import Layout
from imganalyzer.results import ERROR, FileVersion
from imganalyzer.runtime.registry import MODELS
from imganalyzer.steps.people import people_by_path
from imganalyzer.store import ShardResults

TEXT, KEYWORD, FLOAT, INT, BOOL, DATE, FACET, UNSIGNED = (
    "text",
    "keyword",
    "float",
    "int",
    "bool",
    "date",
    "facet",
    "unsigned",
)


@dataclass(frozen=True)
class IndexField:
    """A field of the index. ``boost``: weight in free-text queries (0: not searched)."""

    kind: str
    boost: float = 0.0


# Every field of the index. Text fields with a boost are what a free-text query searches:
# what the image shows (caption, OCR text) counts more than labels and names, which count
# more than the camera or the folder it lies in.
INDEX_FIELDS: dict[str, IndexField] = {
    "key": IndexField(KEYWORD),  # the path relative to the library root (its text form)
    "key_id": IndexField(UNSIGNED),  # 64-bit hash of the key: the row of vectors.npy
    "shard": IndexField(KEYWORD),
    "folder": IndexField(FACET),
    "path_text": IndexField(TEXT, boost=0.5),  # folder and file names as words
    "status": IndexField(KEYWORD),  # "error" when any module failed on the image
    "errors": IndexField(TEXT),
    "caption": IndexField(TEXT, boost=3.0),
    "description": IndexField(TEXT, boost=2.5),  # the cloud model's description
    "ocr_text": IndexField(TEXT, boost=3.0),
    "answers": IndexField(TEXT, boost=2.0),
    "labels": IndexField(TEXT, boost=2.0),
    "people": IndexField(TEXT, boost=2.0),
    "camera": IndexField(TEXT, boost=1.0),  # make and model, as names.camera_name joins them
    "lens": IndexField(TEXT, boost=1.0),
    "place": IndexField(TEXT, boost=1.5),  # town, region and country from GPS (names.place_name)
    "artist": IndexField(TEXT, boost=1.0),
    "format": IndexField(KEYWORD),
    "date": IndexField(DATE),  # capture time, wall clock of the camera (no time zone)
    "exposure_time": IndexField(FLOAT),
    "f_number": IndexField(FLOAT),
    "iso": IndexField(FLOAT),
    "focal_length": IndexField(FLOAT),
    "focal_length_35mm": IndexField(FLOAT),
    "gps_latitude": IndexField(FLOAT),
    "gps_longitude": IndexField(FLOAT),
    "gps_altitude": IndexField(FLOAT),
    "width": IndexField(INT),
    "height": IndexField(INT),
    "rating": IndexField(INT),
    "sharpness": IndexField(FLOAT),
    "exposure_mean": IndexField(FLOAT),
    "clipped_highlights": IndexField(FLOAT),
    "clipped_shadows": IndexField(FLOAT),
    "noise": IndexField(FLOAT),
    "colorfulness": IndexField(FLOAT),
    "aesthetic": IndexField(FLOAT),
    "has_text": IndexField(BOOL),
    "has_person": IndexField(BOOL),
}

# Which result field of which module fills which index field: (result field, index field); a
# model module's, and the index fields it adds, come from its entry (``ModelSpec.index``).
# When two modules fill a single-valued field, the first wins (metadata's size first).
MODULE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "metadata": (
        ("camera", "camera"), ("lens", "lens"), ("place", "place"),  # see DISPLAYED_FIELDS
        ("artist", "artist"), ("format", "format"),
        ("datetime_original", "date"), ("exposure_time", "exposure_time"),
        ("f_number", "f_number"), ("iso", "iso"), ("focal_length", "focal_length"),
        ("focal_length_35mm", "focal_length_35mm"), ("gps_latitude", "gps_latitude"),
        ("gps_longitude", "gps_longitude"), ("gps_altitude", "gps_altitude"),
        ("width", "width"), ("height", "height"), ("rating", "rating"),
    ),
    "technical": (
        ("sharpness", "sharpness"), ("exposure_mean", "exposure_mean"),
        ("clipped_highlights", "clipped_highlights"), ("clipped_shadows", "clipped_shadows"),
        ("noise", "noise"), ("colorfulness", "colorfulness"), ("width", "width"),
        ("height", "height"),
    ),
    **{m: tuple((f.field, f.into or f.field) for f in spec.index) for m, spec in MODELS.items()},
}  # fmt: skip
for _field in (f for spec in MODELS.values() for f in spec.index):
    INDEX_FIELDS.setdefault(_field.into or _field.field, IndexField(_field.kind, _field.boost))

# Fields a module's row is given before MODULE_FIELDS maps it: the display names of the camera
# and the place ("Canon EOS R5", "Lisbon, Portugal"), made by the one function that makes them.
DISPLAYED_FIELDS: dict[str, Callable[[dict[str, Any]], dict[str, str | None]]] = {
    "metadata": display_names,
}

SEARCHED_FIELDS = {name: f.boost for name, f in INDEX_FIELDS.items() if f.boost > 0}
_SURROGATE = re.compile("[\udc80-\udcff]")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")


def key_id(path: str) -> int:
    """The 64-bit id of a path (blake2b): links a document to its row of vectors.npy."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for name, spec in INDEX_FIELDS.items():
        if spec.kind == TEXT:
            builder.add_text_field(name, stored=True)
        elif spec.kind == KEYWORD:
            builder.add_text_field(name, stored=True, tokenizer_name="raw", fast=True)
        elif spec.kind == FACET:
            builder.add_facet_field(name)
        elif spec.kind == FLOAT:
            builder.add_float_field(name, stored=True, indexed=True, fast=True)
        elif spec.kind == INT:
            builder.add_integer_field(name, stored=True, indexed=True, fast=True)
        elif spec.kind == UNSIGNED:
            builder.add_unsigned_field(name, stored=True, indexed=True, fast=True)
        elif spec.kind == BOOL:
            builder.add_boolean_field(name, stored=True, indexed=True, fast=True)
        elif spec.kind == DATE:
            builder.add_date_field(name, stored=True, indexed=True, fast=True)
    return builder.build()


def image_fields(path: str, shard: str, rows: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The index fields of one image from its result rows (``{module: row or None}``).

    Plain values: text as str (list items one per line), ``date`` a naive datetime, numbers,
    bools. Also the rows of the joined export table.
    """
    folder, _, name = path.rpartition("/")
    fields: dict[str, Any] = {
        "key": path,
        "key_id": key_id(path),
        "shard": shard,
        "folder": "/" + folder,
        "path_text": readable_name(f"{folder} {os.path.splitext(name)[0]}"),
        "status": "ok",
    }
    errors = []
    for module, row in rows.items():
        if row is None:
            continue
        if row.get("status") == ERROR:
            errors.append(f"{module}: {row.get('error', 'error')}")
            continue
        if module in DISPLAYED_FIELDS:
            row = {**row, **DISPLAYED_FIELDS[module](row)}
        for source, target in MODULE_FIELDS.get(module, ()):
            value = _field_value(INDEX_FIELDS[target].kind, row.get(source))
            if value is None:
                continue
            if INDEX_FIELDS[target].kind == TEXT and target in fields:
                fields[target] = f"{fields[target]} {value}"
            else:
                fields.setdefault(target, value)
    if fields.get("ocr_text"):
        fields["has_text"] = True
    if errors:
        fields["status"], fields["errors"] = "error", "\n".join(errors)
    return fields


def readable_name(path: str) -> str:
    """A path as words: a byte that is not UTF-8 is read as Windows-1252 (the usual origin
    of such names, e.g. an old Samba share), so that ``café`` finds ``caf\\xe9.jpg``."""
    return _SURROGATE.sub(lambda m: _cp1252(ord(m.group()) - 0xDC00), path)


def _cp1252(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return chr(byte)


def valid_text(text: str) -> str:
    """``text`` with any lone surrogate (a path's undecodable byte in an error message)
    spelt as an escape: Tantivy accepts only valid Unicode."""
    if _ANY_SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def folder_facet(folder: str) -> tantivy.Facet:
    """The facet of a folder (a path relative to the library root, "" for the root)."""
    text = escape_path(folder.strip("/")).replace("\\", "\\\\")  # facets escape with \
    return tantivy.Facet.from_string("/" + text)


def _field_value(kind: str, value: Any) -> Any:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if kind == TEXT:
        return _as_text(value)
    if kind == DATE:
        return _parse_date(value)
    if kind == FLOAT:
        return float(value)
    if kind == INT:
        return int(value)
    if kind == BOOL:
        return bool(value)
    return str(value)


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # e.g. captions.answers: {question: answer}
        return "\n".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "\n".join(_as_text(v) for v in value)
    return str(value)


def _parse_date(value: str) -> datetime | None:
    """EXIF capture time as the camera's wall clock: any UTC offset is dropped, so that
    ``--after 2021-06-01`` means the local date the photo was taken."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except (TypeError, ValueError):
        return None


def to_document(fields: dict[str, Any]) -> tantivy.Document:
    doc = tantivy.Document()
    for name, value in fields.items():
        kind = INDEX_FIELDS[name].kind
        if name == "key":
            doc.add_text(name, escape_path(value))
        elif kind in (TEXT, KEYWORD):
            doc.add_text(name, valid_text(value))
        elif kind == FACET:
            doc.add_facet(name, folder_facet(value))
        elif kind == FLOAT:
            doc.add_float(name, value)
        elif kind == INT:
            doc.add_integer(name, value)
        elif kind == UNSIGNED:
            doc.add_unsigned(name, value)
        elif kind == BOOL:
            doc.add_boolean(name, value)
        elif kind == DATE:
            doc.add_date(name, value)
    return doc


def named_people(layout: Layout) -> dict[str, list[str]]:
    """Current path -> names and aliases of the named people in the image (from
    ``faces/people.json`` with the user's edits; empty before the people step ran), read
    once per version of those files."""
    versions = tuple(_version(p) for p in (layout.people, layout.people_edits))
    if versions[0] is None:
        return {}
    return _people_names(layout, versions)


def _version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _people_names(
    layout: Layout, versions: tuple[tuple[int, int] | None, ...]
) -> dict[str, list[str]]:
    return people_by_path(layout)


@dataclass(frozen=True)
class ShardImage:
    """A current image of a shard: its entry, its manifest row and ``{module: row or None}``."""

    entry: FileVersion
    row: int
    rows: dict[str, dict[str, Any] | None]


def shard_images(results: ShardResults, people: dict[str, list[str]]) -> Iterator[ShardImage]:
    """Every current image of a shard with its rows (``results``) and the named people in it
    (``people``: named_people), in manifest order."""
    by_module = {module: results.rows(module) for module in results.numbered}
    manifest_rows = {row["path"]: n for found in results.numbered.values() for n, row in found}
    for entry in results.shard.entries:
        rows = {module: rows.get(entry.path) for module, rows in by_module.items()}
        faces = rows.get("faces")
        if people.get(entry.path) and faces:
            # names live in people.json (users edit them), not in the faces rows
            rows["faces"] = {**faces, "people": people[entry.path]}
        yield ShardImage(entry, manifest_rows.get(entry.path, -1), rows)


def shard_fields(results: ShardResults, people: dict[str, list[str]]) -> Iterator[dict[str, Any]]:
    """:func:`image_fields` of every current image of a shard, in manifest order."""
    for image in shard_images(results, people):
        yield image_fields(image.entry.path, results.shard.id, image.rows)
