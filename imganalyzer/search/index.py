"""The search index: one Tantivy index of the library's current images plus their CLIP vectors.

Layout of ``results/index/``::

    tantivy/          the Tantivy index, one document per current image
    vectors.npy       float16 (n, dim) L2-normalised CLIP image embeddings, rows sorted by key_id
    vector_ids.npy    uint64 (n,) the key_id of each row (ascending: found by searchsorted)
    vector_keys.txt   the path of each row, one per line (escaped like manifest paths)
    vector_codes.npy  int8 (n, dim) codes of the rows, vector_bounds.npy float32 (n, 3) their
                      error bounds: the exact ranking's first pass (search/vector_scan.py)
    state.json        what the index holds: a fingerprint of each shard's inputs

Updates are incremental. A shard whose result files or moved files changed has its
documents deleted (by the ``shard`` term) and re-added; a shard whose files did not change
but lost current images (edited elsewhere, deleted) only has those keys deleted. Everything
goes in one commit, which Tantivy applies atomically; the state file is written after it,
so a crash leaves the previous index searchable and the next run redoes the work. Nothing
changed: nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tantivy

from imganalyzer.catalog.current import CurrentShard, CurrentView, current_shards
from imganalyzer.catalog.manifests import escape_path, read_manifest
from imganalyzer.files import atomic_directory, atomic_write_text, share_like_umask
from imganalyzer.layout import IndexFiles, Layout
from imganalyzer.search.browse_write import PartWriter, part_stamp, write_browse
from imganalyzer.search.documents import (
    INDEX_FIELDS,
    MODULE_FIELDS,
    ShardImage,
    build_schema,
    image_fields,
    named_people,
    shard_images,
    to_document,
)
from imganalyzer.search.vectors import Known, write_vectors
from imganalyzer.store import EMBEDDING, ResultsStore
from imganalyzer.versions import INDEX_VERSION

log = logging.getLogger(__name__)

# Bumped when the vector files change form (2: int8 codes and bounds beside the matrix): the
# next update rewrites them, and leaves the documents as they are.
VECTORS_VERSION = 2
# Tantivy's indexing memory: segments are flushed when it fills.
WRITER_HEAP_BYTES = 256_000_000

SCHEMA_FINGERPRINT = hashlib.sha256(
    json.dumps([INDEX_VERSION, {k: asdict(v) for k, v in INDEX_FIELDS.items()}]).encode()
).hexdigest()[:16]

# ---------------------------------------------------------------- state and plan


@dataclass
class IndexState:
    """What the index holds: per shard, fingerprints of its result files and current paths."""

    schema: str = ""
    modules: list[str] = field(default_factory=list)
    shards: dict[str, list[str]] = field(default_factory=dict)  # shard -> [files, paths]
    vectors: str = ""
    documents: int = 0
    browse: str = ""  # what the browse table was merged from

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


def open_index(index_dir: str | os.PathLike) -> tantivy.Index:
    return tantivy.Index.open(str(IndexFiles(index_dir).tantivy))


def known_modules(modules: Iterable[str] | None) -> list[str]:
    """The modules the index reads, in :data:`MODULE_FIELDS` order (others are ignored)."""
    wanted = set(MODULE_FIELDS if modules is None else modules)
    return [m for m in MODULE_FIELDS if m in wanted]


def update_index(
    layout: Layout,
    library: str | os.PathLike,
    modules: Iterable[str] | None = None,
    rebuild: bool = False,
    threads: int = 2,
    view_file: str | os.PathLike | None = None,
) -> IndexReport:
    """Bring the results folder's index (``layout.index``) up to date with the library's
    current state.

    ``modules``: the modules whose results are indexed (default: every known module; a
    module without result files adds nothing). ``rebuild``: build from scratch in a new
    folder and swap it in. Also rebuilds when the index is missing or its schema changed.
    ``view_file``: the run's recorded library view (else the library is scanned).
    """
    started = time.perf_counter()
    modules = known_modules(modules)
    people = named_people(layout) if "faces" in modules else {}
    update = _Update(
        current_shards(layout, library, view_file), ResultsStore(layout), modules, people
    )
    previous = IndexState.load(layout.index)
    missing = not layout.index_files.tantivy.is_dir()
    if rebuild or previous.schema != SCHEMA_FINGERPRINT or missing:
        with atomic_directory(layout.index) as fresh:
            report = _apply(fresh, update, IndexState(), threads)
    else:
        report = _apply(layout.index, update, previous, threads)
    report.rebuilt = report.rebuilt or rebuild
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report


def _apply(index_dir: Path, update: _Update, previous: IndexState, threads: int) -> IndexReport:
    fresh = not previous.schema
    plan = update.plan(previous)
    added = 0
    if plan.changed or fresh:
        added = update.commit(index_dir, plan, threads)
    embeddings = update.store.embedding_versions
    vectors_fp = _digest(
        [VECTORS_VERSION, [[s, fp[1], embeddings(s)] for s, fp in plan.fingerprints.items()]]
    )
    vectors = None
    if vectors_fp != previous.vectors or fresh:
        vectors = write_vectors(index_dir, update.store, update.view, update.vectors)
    layout = update.store.layout
    browse_fp = _digest([part_stamp(layout, s, fp) for s, fp in plan.fingerprints.items()])
    if browse_fp != previous.browse or fresh or not IndexFiles(index_dir).browse.is_file():
        write_browse(index_dir, layout, update.images, plan.fingerprints)
    share_like_umask(IndexFiles(index_dir).tantivy)  # readable by others as the umask says
    documents = open_index(index_dir).searcher().num_docs
    if plan.changed or fresh or vectors is not None or browse_fp != previous.browse:
        state = IndexState(SCHEMA_FINGERPRINT, update.modules, plan.fingerprints, vectors_fp)
        state.documents, state.browse = documents, browse_fp
        state.save(index_dir)
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


@dataclass
class _Update:
    """One update of the index, from the library's current ``view`` and the results
    ``store``: ``people`` holds the names of the people in each image (named_people); each
    re-added shard's module results are read once, and its ``vectors`` are kept for
    ``write_vectors``."""

    view: CurrentView
    store: ResultsStore
    modules: list[str]
    people: dict[str, list[str]]
    vectors: Known = field(default_factory=dict)

    def fingerprint(self, current: CurrentShard) -> list[str]:
        """[fingerprint of the shard's result files and moved files, fingerprint of its
        current entries]. A move changes no result file but re-adds the shard's documents
        under their new keys (the documents at the old keys go with the shard's delete);
        naming a person re-indexes only the shards with their faces."""
        files = self.store.versions(self.modules, current.id)
        moved = sorted(current.moved().items())
        entries = [(e.path, e.size, e.mtime_ns) for e in current.entries]
        inputs = [self.modules, files, moved] if moved else [self.modules, files]
        names = [(e.path, self.people[e.path]) for e in current.entries if e.path in self.people]
        if names:
            inputs.append(names)
        return [_digest(inputs), _digest(entries)]

    def plan(self, previous: IndexState) -> UpdatePlan:
        fingerprints = {s: self.fingerprint(current) for s, current in self.view.shards.items()}
        old = previous.shards
        reindex = [s for s, fp in fingerprints.items() if s not in old or old[s][0] != fp[0]]
        drop_shards = [s for s in old if s not in fingerprints]
        reindexed = set(reindex)
        drop_keys = []
        for shard, fp in fingerprints.items():
            if shard in old and shard not in reindexed and old[shard][1] != fp[1]:
                drop_keys += self._keys_gone(shard, reindexed)
        return UpdatePlan(reindex, drop_shards, drop_keys, fingerprints)

    def _keys_gone(self, shard: str, reindexed: set[str]) -> list[str]:
        """Keys of ``shard``'s manifest that are no longer current there. A key now current
        in another shard is deleted only if that shard is re-added in the same commit
        (deletes apply to the documents added before them)."""
        keys = []
        for entry in read_manifest(self.store.layout.manifest(shard)):
            now = self.view.current.get(entry.path)
            if now is None or (now[0] != shard and now[0] in reindexed):
                keys.append(entry.path)
        return keys

    def commit(self, index_dir: Path, plan: UpdatePlan, threads: int) -> int:
        """Apply the plan in one commit, and write the browse parts of the shards it re-adds
        (see :mod:`.browse_write`). Returns the number of documents added."""
        tantivy_dir = IndexFiles(index_dir).tantivy
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
                stamp = part_stamp(self.store.layout, shard, plan.fingerprints[shard])
                part = PartWriter(index_dir, self.store.layout, shard, stamp)
                for image in self.images(shard):
                    fields = image_fields(image.entry.path, shard, image.rows)
                    writer.add_document(to_document(fields))
                    part.add(image, fields)
                    added += 1
                part.save()  # kept by its stamp, so a part written before a failed commit is right
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()  # also releases the index's writer lock
        return added

    def images(self, shard: str) -> Iterator[ShardImage]:
        """The shard's current images with their rows (each result file read once); keeps
        the shard's vectors for ``write_vectors``."""
        results = self.store.shard_results(self.view.shards[shard], self.modules)
        yield from shard_images(results, self.people)
        if EMBEDDING in self.modules and self.store.has_vectors(shard):
            self.vectors[shard] = results.vectors()
