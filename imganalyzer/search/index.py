"""The search index: one Tantivy index of the library's current images plus their CLIP vectors.

Layout of ``results/index/``::

    tantivy/          the Tantivy index, one document per current image
    vectors.npy       float16 (n, dim) L2-normalised CLIP image embeddings, rows sorted by key_id
    vector_ids.npy    uint64 (n,) the key_id of each row (ascending: found by searchsorted)
    vector_keys.txt   the path of each row, one per line (escaped like manifest paths)
    state.json        what the index holds: a fingerprint of each shard's inputs

Updates are incremental. A shard whose result files or moved files changed has its
documents deleted (by the ``shard`` term) and re-added; a shard whose files did not change
but lost current images (edited elsewhere, deleted) only has those keys deleted. Everything
goes in one commit, which Tantivy applies atomically; the state file is written after it,
so a crash leaves the previous index searchable and the next run redoes the work. Nothing
changed: nothing is written. A module's fields are entries of :data:`MODULE_FIELDS`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import tantivy

from imganalyzer.catalog.current import CurrentView, current_shards, file_versions
from imganalyzer.catalog.manifests import escape_path, read_manifest
from imganalyzer.files import (
    atomic_directory,
    atomic_open,
    atomic_write_text,
    share_like_umask,
    temporary_file,
)
from imganalyzer.layout import IndexFiles, Layout
from imganalyzer.results import ERROR
from imganalyzer.steps.people import people_by_path

log = logging.getLogger(__name__)

INDEX_VERSION = "2"  # 2: keys and folders in the text form of paths
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
    "camera": IndexField(TEXT, boost=1.0),  # make and model
    "lens": IndexField(TEXT, boost=1.0),
    "place": IndexField(TEXT, boost=1.5),  # town, region and country from GPS
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

# Which result field of which module fills which index field: (result field, index field).
# Adding a module is one entry here (and its index fields above). When two modules fill a
# single-valued field, the first wins (metadata's displayed size before technical's).
MODULE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "metadata": (
        ("make", "camera"),
        ("model", "camera"),
        ("lens", "lens"),
        ("place", "place"),
        ("region", "place"),
        ("country", "place"),
        ("artist", "artist"),
        ("format", "format"),
        ("datetime_original", "date"),
        ("exposure_time", "exposure_time"),
        ("f_number", "f_number"),
        ("iso", "iso"),
        ("focal_length", "focal_length"),
        ("focal_length_35mm", "focal_length_35mm"),
        ("gps_latitude", "gps_latitude"),
        ("gps_longitude", "gps_longitude"),
        ("gps_altitude", "gps_altitude"),
        ("width", "width"),
        ("height", "height"),
        ("rating", "rating"),
    ),
    "technical": (
        ("sharpness", "sharpness"),
        ("exposure_mean", "exposure_mean"),
        ("clipped_highlights", "clipped_highlights"),
        ("clipped_shadows", "clipped_shadows"),
        ("noise", "noise"),
        ("colorfulness", "colorfulness"),
        ("width", "width"),
        ("height", "height"),
    ),
    "embedding": (),  # vectors go to vectors.npy; its rows give status and errors
    "aesthetic": (("aesthetic", "aesthetic"),),
    "objects": (("labels", "labels"), ("has_text", "has_text"), ("has_person", "has_person")),
    "captions": (("caption", "caption"), ("answers", "answers")),
    "ocr": (("text", "ocr_text"),),
    "cloud": (
        ("description", "description"),
        ("keywords", "labels"),
        ("objects", "labels"),
        ("text_seen", "ocr_text"),
    ),
    "faces": (("people", "people"),),  # names and aliases from people.json (shard_fields)
}

SEARCHED_FIELDS = {name: f.boost for name, f in INDEX_FIELDS.items() if f.boost > 0}
# Tantivy's indexing memory: segments are flushed when it fills.
WRITER_HEAP_BYTES = 256_000_000
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


SCHEMA_FINGERPRINT = hashlib.sha256(
    json.dumps([INDEX_VERSION, {k: asdict(v) for k, v in INDEX_FIELDS.items()}]).encode()
).hexdigest()[:16]


# ---------------------------------------------------------------- documents


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


def named_people(view: CurrentView) -> dict[str, list[str]]:
    """Current path -> names and aliases of the named people in the image (from
    ``faces/people.json`` with the user's edits; empty before the people step ran), read
    once per version of those files: every shard asks."""
    versions = tuple(_version(p) for p in (view.layout.people, view.layout.people_edits))
    if versions[0] is None:
        return {}
    return _people_names(str(view.results), versions)


def _version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _people_names(
    results: str, versions: tuple[tuple[int, int] | None, ...]
) -> dict[str, list[str]]:
    return people_by_path(results)


def shard_fields(view: CurrentView, shard: str, modules: Sequence[str]) -> Iterator[dict[str, Any]]:
    """:func:`image_fields` of every current image of ``shard``, in manifest order."""
    by_module = {module: view.rows(module, shard) for module in modules}
    people = named_people(view) if "faces" in modules else {}
    for entry in view.shards[shard].entries:
        rows = {module: rows.get(entry.path) for module, rows in by_module.items()}
        faces = rows.get("faces")
        if people.get(entry.path) and faces:
            # names live in people.json (users edit them), not in the faces rows
            rows["faces"] = {**faces, "people": people[entry.path]}
        yield image_fields(entry.path, shard, rows)


# ---------------------------------------------------------------- state and plan


@dataclass
class IndexState:
    """What the index holds: per shard, fingerprints of its result files and current paths."""

    schema: str = ""
    modules: list[str] = field(default_factory=list)
    shards: dict[str, list[str]] = field(default_factory=dict)  # shard -> [files, paths]
    vectors: str = ""
    documents: int = 0

    @classmethod
    def load(cls, index_dir: Path) -> IndexState:
        path = IndexFiles(index_dir).state
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, index_dir: Path) -> None:
        atomic_write_text(IndexFiles(index_dir).state, json.dumps(asdict(self), indent=1))


@dataclass
class UpdatePlan:
    reindex: list[str]  # shards whose documents are deleted and re-added
    drop_shards: list[str]  # shards with no current image left
    drop_keys: list[str]  # keys no longer current (their shard is otherwise unchanged)
    fingerprints: dict[str, list[str]]

    @property
    def changed(self) -> bool:
        return bool(self.reindex or self.drop_shards or self.drop_keys)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def shard_fingerprint(view: CurrentView, shard: str, modules: Sequence[str]) -> list[str]:
    """[fingerprint of the shard's result files and moved files, fingerprint of its current
    entries]. A move changes no result file but re-adds the shard's documents under their
    new keys (the documents at the old keys go with the shard's delete)."""
    files = file_versions(view.result_file(m, shard) for m in modules)
    moved = sorted(view.moved(shard).items())
    entries = [(e.path, e.size, e.mtime_ns) for e in view.shards[shard].entries]
    inputs = [list(modules), files, moved] if moved else [list(modules), files]
    if "faces" in modules:  # naming a person re-indexes only the shards with their faces
        people = named_people(view)
        names = [(e.path, people[e.path]) for e in view.shards[shard].entries if e.path in people]
        if names:
            inputs.append(names)
    return [_digest(inputs), _digest(entries)]


def plan_update(view: CurrentView, modules: Sequence[str], previous: IndexState) -> UpdatePlan:
    fingerprints = {s: shard_fingerprint(view, s, modules) for s in view.shards}
    old = previous.shards
    reindex = [s for s, fp in fingerprints.items() if s not in old or old[s][0] != fp[0]]
    drop_shards = [s for s in old if s not in fingerprints]
    reindexed = set(reindex)
    drop_keys = []
    for shard, fp in fingerprints.items():
        if shard in old and shard not in reindexed and old[shard][1] != fp[1]:
            drop_keys += _keys_gone(view, shard, reindexed)
    return UpdatePlan(reindex, drop_shards, drop_keys, fingerprints)


def _keys_gone(view: CurrentView, shard: str, reindexed: set[str]) -> list[str]:
    """Keys of ``shard``'s manifest that are no longer current there. A key now current in
    another shard is deleted only if that shard is re-added in the same commit (deletes
    apply to the documents added before them)."""
    keys = []
    for entry in read_manifest(view.layout.manifest(shard)):
        now = view.current.get(entry.path)
        if now is None or (now[0] != shard and now[0] in reindexed):
            keys.append(entry.path)
    return keys


# ---------------------------------------------------------------- update


@dataclass
class IndexReport:
    documents: int
    reindexed_shards: int
    added: int
    deleted_shards: int
    deleted_keys: int
    committed: bool
    vectors: int | None  # rows written to vectors.npy, None if left as they were
    rebuilt: bool
    seconds: float

    def summary(self) -> str:
        if not self.committed and self.vectors is None:
            return f"index: {self.documents} documents, nothing changed"
        vectors = "unchanged" if self.vectors is None else f"{self.vectors} written"
        return (
            f"index: {self.documents} documents ({'rebuilt' if self.rebuilt else 'updated'}: "
            f"{self.added} added from {self.reindexed_shards} shard(s), {self.deleted_shards} "
            f"shard(s) and {self.deleted_keys} key(s) deleted), vectors {vectors}, "
            f"{self.seconds:.1f} s"
        )


def index_dir_of(results: str | os.PathLike) -> Path:
    return Layout(results).index


def open_index(index_dir: str | os.PathLike) -> tantivy.Index:
    return tantivy.Index.open(str(IndexFiles(index_dir).tantivy))


def known_modules(modules: Iterable[str] | None) -> list[str]:
    """The modules the index reads, in :data:`MODULE_FIELDS` order (others are ignored)."""
    wanted = set(MODULE_FIELDS if modules is None else modules)
    return [m for m in MODULE_FIELDS if m in wanted]


def update_index(
    results: str | os.PathLike,
    library: str | os.PathLike,
    modules: Iterable[str] | None = None,
    rebuild: bool = False,
    threads: int = 2,
    view_file: str | os.PathLike | None = None,
) -> IndexReport:
    """Bring ``results/index/`` up to date with the library's current state.

    ``modules``: the modules whose results are indexed (default: every known module; a
    module without result files adds nothing). ``rebuild``: build from scratch in a new
    folder and swap it in. Also rebuilds when the index is missing or its schema changed.
    ``view_file``: the run's recorded library view (else the library is scanned).
    """
    started = time.perf_counter()
    view = current_shards(results, library, view_file)
    modules = known_modules(modules)
    index_dir = view.layout.index
    previous = IndexState.load(index_dir)
    missing = not IndexFiles(index_dir).tantivy.is_dir()
    if rebuild or previous.schema != SCHEMA_FINGERPRINT or missing:
        with atomic_directory(index_dir) as fresh:
            report = _apply(fresh, view, modules, IndexState(), threads)
    else:
        report = _apply(index_dir, view, modules, previous, threads)
    report.rebuilt = report.rebuilt or rebuild
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report


def _apply(
    index_dir: Path, view: CurrentView, modules: list[str], previous: IndexState, threads: int
) -> IndexReport:
    fresh = not previous.schema
    plan = plan_update(view, modules, previous)
    added = 0
    if plan.changed or fresh:
        added = _commit(IndexFiles(index_dir).tantivy, view, modules, plan, threads)
    vectors_fp = _digest(
        [[s, fp[1], _vector_files(view, s)] for s, fp in plan.fingerprints.items()]
    )
    vectors = None
    if vectors_fp != previous.vectors or fresh:
        vectors = write_vectors(index_dir, view)
    share_like_umask(IndexFiles(index_dir).tantivy)  # readable by others as the umask says
    documents = open_index(index_dir).searcher().num_docs
    if plan.changed or fresh or vectors is not None:
        IndexState(SCHEMA_FINGERPRINT, modules, plan.fingerprints, vectors_fp, documents).save(
            index_dir
        )
    return IndexReport(
        documents=documents,
        reindexed_shards=len(plan.reindex),
        added=added,
        deleted_shards=len(plan.drop_shards),
        deleted_keys=len(plan.drop_keys),
        committed=plan.changed or fresh,
        vectors=vectors,
        rebuilt=fresh,
        seconds=0.0,
    )


def _vector_files(view: CurrentView, shard: str) -> list[tuple[str, int, int] | None]:
    suffixes = (".npy", ".jsonl")
    return file_versions(view.result_file("embedding", shard, s) for s in suffixes)


def _commit(
    tantivy_dir: Path, view: CurrentView, modules: list[str], plan: UpdatePlan, threads: int
) -> int:
    """Apply the plan in one commit. Returns the number of documents added."""
    tantivy_dir.mkdir(parents=True, exist_ok=True)
    index = tantivy.Index(build_schema(), path=str(tantivy_dir), reuse=True)
    writer = index.writer(WRITER_HEAP_BYTES, max(1, threads))
    added = 0
    try:
        for shard in plan.drop_shards + plan.reindex:
            writer.delete_documents_by_term("shard", shard)
        for key in plan.drop_keys:
            writer.delete_documents_by_term("key", escape_path(key))
        for shard in plan.reindex:
            for fields in shard_fields(view, shard, modules):
                writer.add_document(to_document(fields))
                added += 1
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.wait_merging_threads()  # also releases the index's writer lock
    return added


# ---------------------------------------------------------------- vectors


def write_vectors(out_dir: Path, view: CurrentView) -> int:
    """Gather the embeddings of every current image into ``out_dir/vectors.npy`` with
    ``vector_ids.npy`` and ``vector_keys.txt``. Returns the number of rows; with no
    embeddings at all the three files are removed."""
    files = IndexFiles(out_dir)
    gathered = gather_vectors(view, files.vectors)
    if gathered is None:
        for path in files.vector_files:
            path.unlink(missing_ok=True)
        return 0
    keys, ids = gathered
    with atomic_open(files.vector_ids, "wb") as handle:
        np.save(handle, ids)
    with atomic_open(
        files.vector_keys, "w", encoding="utf-8", errors="surrogateescape", newline="\n"
    ) as handle:
        handle.writelines(f"{escape_path(key)}\n" for key in keys)
    return len(keys)


def gather_vectors(view: CurrentView, matrix_path: Path) -> tuple[list[str], np.ndarray] | None:
    """Write the embeddings of every current image to ``matrix_path`` (float16 (n, dim),
    L2-normalised, rows sorted by key_id), atomically. Returns (the path of each row, the
    uint64 key_id of each row), or None (nothing written) when no image has an embedding.

    Streams shard by shard into a memory-mapped file: memory stays small at any size.
    """
    parts = [(shard, found) for shard in view.shards if (found := view.vectors(shard))]
    keys = [path for _, (paths, _) in parts for path in paths]
    if not keys:
        return None
    ids = np.fromiter((key_id(k) for k in keys), dtype=np.uint64, count=len(keys))
    order = np.argsort(ids, kind="stable")
    if np.any(np.diff(ids[order]) == 0):
        raise ValueError("two current paths share a 64-bit key id (a hash collision)")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    dim = np.load(view.result_file("embedding", parts[0][0], ".npy"), mmap_mode="r").shape[1]
    matrix_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_file(matrix_path)  # umask permissions, not mkstemp's 0600
    try:
        matrix = np.lib.format.open_memmap(tmp, "w+", np.float16, (len(keys), dim))
        offset = 0
        for shard, (paths, rows) in parts:
            source = np.load(view.result_file("embedding", shard, ".npy"), mmap_mode="r")
            if source.shape[1] != dim:
                raise ValueError(f"embedding/{shard}.npy: {source.shape[1]}-d vectors, not {dim}")
            matrix[position[offset : offset + len(paths)]] = source[rows]
            offset += len(paths)
        matrix.flush()
        del matrix
        os.replace(tmp, matrix_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return [keys[i] for i in order], ids[order]
