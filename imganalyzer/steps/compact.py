"""`imganalyzer compact`: merge the shards of many small imports into full shards.

Years of small imports (and single edited photos) each add a batch of one small shard,
and every shard adds jobs to the DAG. Compaction takes the *small batches* (fewer
current images than ``shard_size`` in all their shards), carries their current entries
into a new batch of full shards, and copies every result row, vector, tier image and
thumbnail over: nothing is decoded or recomputed. Superseded and removed entries of those
batches are dropped. The old manifests move to ``catalog/compacted/`` (never read again)
and the old shards' outputs are deleted. A batch whose results are not complete yet
(not analysed, or a module added since) is left alone: run the workflow first.

It holds the results folder's lock (imganalyzer.runlock), as a run does: it refuses while a
run writes the results, naming that run, and a run started meanwhile refuses, naming it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imganalyzer.catalog.manifests import Entry, group_shards, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.thumbnails import ThumbnailWriter, read_thumbnail
from imganalyzer.decode.tiers import TierReader, TierWriter
from imganalyzer.layout import Layout
from imganalyzer.runlock import acquire_results_lock, release_results_lock
from imganalyzer.runtime.registry import MODELS
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass
class CompactionReport:
    batches: list[str]
    old_shards: list[str]
    new_shards: list[str]
    images: int

    def summary(self) -> str:
        if not self.new_shards and not self.old_shards:
            return "compact: nothing to compact"
        return (
            f"compact: {len(self.old_shards)} shards of {len(self.batches)} small imports -> "
            f"{len(self.new_shards)} shard(s) ({self.images} current images)"
        )


@dataclass(frozen=True)
class _Source:
    shard: str
    row: int  # row in the old shard
    entry: Entry


def compact(layout: Layout, config: dict) -> CompactionReport:
    """Compact the small batches of the catalog of ``layout`` (``config``: the run's); raises
    ResultsLocked (naming the holder) while a run holds the results folder."""
    acquire_results_lock(layout)
    try:
        return _compact(layout, config)
    finally:
        release_results_lock(layout)


def _compact(layout: Layout, config: dict) -> CompactionReport:
    catalog = Catalog(layout)
    modules = [m for m in config["modules"] if m != "technical"]
    with catalog.locked():
        state = catalog.state(config["library"], exclude=[layout.root])
        current = {(shard, e.path) for shard, e in state.current.values()}
        batches = _small_batches(catalog, current, config["shard_size"], layout, modules)
        if len(batches) < 2:
            return CompactionReport([], [], [], 0)
        old_shards = [s for shards in batches.values() for s in shards]
        sources = [
            _Source(shard, row, entry)
            for shard in old_shards
            for row, entry in enumerate(catalog.read(shard))
            if (shard, entry.path) in current
        ]
        new_shards = _write_new_batch(catalog, modules, sources, config)
        _retire(catalog, modules, old_shards, config)
        # The last run's view names the old shards: the next run records a new one.
        layout.library_view.unlink(missing_ok=True)
    report = CompactionReport(sorted(batches), old_shards, new_shards, len(sources))
    log.info(report.summary())
    return report


def _shard_files(layout: Layout, modules: list[str], shard: str) -> list[Path]:
    """Every per-shard output of ``shard``: tiers, thumbnails, the modules' rows and arrays."""
    files = [layout.tiers(shard), layout.thumbnails(shard), layout.technical(shard)]
    for module in modules:
        files.append(layout.rows(module, shard))
        if module in MODELS and MODELS[module].array:
            files.append(layout.array(module, shard))
    return files


def _small_batches(
    catalog: Catalog,
    current: set[tuple[str, str]],
    shard_size: int,
    layout: Layout,
    modules: list[str],
) -> dict[str, list[str]]:
    """Batches with fewer current images than a shard holds, whose results are complete
    (a shard job that failed wrote its outputs empty: the next run completes them)."""
    failed = {f["job"] for f in ResultsStore(layout).failures(modules) if "outputs" in f}
    by_batch: dict[str, list[str]] = {}
    for shard in catalog.shard_ids():
        by_batch.setdefault(shard.split("-")[0], []).append(shard)
    small = {}
    for batch, shards in by_batch.items():
        images = sum(1 for shard, _ in current if shard in shards)
        complete = not failed.intersection(shards) and all(
            f.exists() for s in shards for f in _shard_files(layout, modules, s)
        )
        if images < shard_size and complete:
            small[batch] = shards
    return small


def _write_new_batch(
    catalog: Catalog, modules: list[str], sources: list[_Source], config: dict
) -> list[str]:
    layout, store = catalog.layout, ResultsStore(catalog.layout)
    new_shards = catalog.reserve_batch(len(sources), config["shard_size"])
    for index, shard in enumerate(new_shards):
        part = sources[index * config["shard_size"] : (index + 1) * config["shard_size"]]
        write_manifest(catalog.manifest_path(shard), [s.entry for s in part])
        _copy_rows(store, "technical", part, shard)
        for module in modules:
            if module == "faces":  # one array row per face, not per image
                _copy_faces(store, part, shard)
                continue
            _copy_rows(store, module, part, shard)
            if module in MODELS and MODELS[module].array:
                _copy_array(store, module, part, shard)
        _copy_tiers(layout, part, shard, config)
        _copy_thumbnails(layout, part, shard)
    for module in (m for m in modules if m in MODELS):
        for job, shards in group_shards(new_shards, config["shards_per_model_job"]).items():
            marker = {"module": module, "shards": shards, "compacted": True}
            store.write_summary(module, job, marker)
    return new_shards


def _copy_rows(store: ResultsStore, module: str, part: list[_Source], shard: str) -> None:
    rows_of = {old: store.rows(module, old) for old in dict.fromkeys(s.shard for s in part)}
    store.write_rows(module, shard, (rows_of[s.shard][s.row] for s in part))


def _copy_array(store: ResultsStore, module: str, part: list[_Source], shard: str) -> None:
    arrays = {s.shard: store.array(module, s.shard, mmap=True) for s in part}
    width = next(iter(arrays.values())).shape[1:] if arrays else (0,)
    merged = np.zeros((len(part), *width), dtype=np.float16)
    for row, source in enumerate(part):
        merged[row] = arrays[source.shard][source.row]
    store.write_array(module, shard, merged)


def _copy_faces(store: ResultsStore, part: list[_Source], shard: str) -> None:
    """Face rows and their embeddings, renumbering each face's row of the new array."""
    rows_of: dict[str, list[dict]] = {}
    arrays = {}
    for source in part:
        if source.shard not in rows_of:
            rows_of[source.shard] = store.rows("faces", source.shard)
            arrays[source.shard] = store.array("faces", source.shard, mmap=True)
    rows, vectors = [], []
    for source in part:
        row = rows_of[source.shard][source.row]
        faces = []
        for face in row.get("faces", ()):
            vectors.append(arrays[source.shard][face["embedding_row"]])
            faces.append({**face, "embedding_row": len(vectors) - 1})
        rows.append({**row, "faces": faces} if "faces" in row else row)
    width = next(iter(arrays.values())).shape[1:] if arrays else (0,)
    merged = np.stack(vectors).astype(np.float16) if vectors else np.zeros((0, *width), np.float16)
    store.write_array("faces", shard, merged)
    store.write_rows("faces", shard, rows)


def _copy_tiers(layout: Layout, part: list[_Source], shard: str, config: dict) -> None:
    """Tier images move by decode + re-encode of the stored JPEG (never the original)."""
    readers = {s.shard: TierReader(layout.tiers(s.shard)) for s in part}
    with TierWriter(
        layout.tiers(shard),
        n_images=len(part),
        tiers=config["tiers"],
        compression=config["tier_compression"],
        quality=config["jpeg_quality"],
    ) as writer:
        for row, source in enumerate(part):
            reader = readers[source.shard]
            _, _, ok = reader.read(next(iter(reader.tiers)), source.row, source.row + 1)
            images = {t: reader.image(t, source.row) for t in reader.tiers} if ok[0] else None
            writer.write(row, images)


def _copy_thumbnails(layout: Layout, part: list[_Source], shard: str) -> None:
    with ThumbnailWriter(layout.thumbnails(shard)) as writer:
        for row, source in enumerate(part):
            jpeg = read_thumbnail(layout.thumbnails(source.shard), source.row)
            if jpeg is not None:
                writer.add_jpeg(row, jpeg)


def _retire(catalog: Catalog, modules: list[str], old_shards: list[str], config: dict) -> None:
    """Move the old manifests aside and delete the old shards' outputs and job markers."""
    layout = catalog.layout
    layout.compacted.mkdir(exist_ok=True)
    for module in (m for m in modules if m in MODELS):
        for job in group_shards(old_shards, config["shards_per_model_job"]):
            layout.job_summary(module, job).unlink(missing_ok=True)
    for shard in old_shards:
        for path in _shard_files(layout, modules, shard):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        os.replace(catalog.manifest_path(shard), layout.compacted_manifest(shard))
