"""Every path under a results folder: the one place that knows the layout.

The workflow's rules, the scripts, the runtime, compaction, the index, the CLI and the web
page ask a :class:`Layout` for their paths; nobody else joins path strings under results.
Each entry point (a script, a CLI command, the web app) builds the Layout once and hands it
on; what lies in the files is read and written by :mod:`imganalyzer.store`.
The methods take ids (a shard ``000001-00000``, a model job ``000001-00000-00003``) and
return paths; a Snakemake wildcard such as ``"{shard}"`` passes through unchanged, so the
rules build their patterns with the same methods.

```
results/
  run/config.yaml                the effective config of the last real run
  run/library.tsv                the current library, as this run's catalog step saw it
  run/library.staged.tsv         the view a starting run planned; the library_view job places it
  catalog/shards/<shard>.tsv     manifests (path, size, mtime_ns), one per shard
  catalog/moves/, staged/        moves found per batch; manifests planned by a starting run
  catalog/compacted/, .lock      manifests retired by compaction; the catalog's write lock
  catalog/formats_version        the formats version the catalog last checked error rows for
  tiers/<shard>.zarr             decoded pixels at each tier size
  thumbnails/<shard>.zip         JPEG thumbnails
  technical/<shard>.jsonl        the decode job's rows; metadata/, duplicates/ alike
  <module>/<shard>.jsonl|.npy    a model module's rows and arrays
  <module>/jobs/<job>.json       a model job's summary (the output Snakemake tracks)
  <module>/failed/<job>.json     why a model job failed (marked retried when it succeeds);
  decode/failed/<shard>.json       why a decode job failed; metadata/, duplicates/ alike
  duplicates/groups.json         global steps' outputs, each in its module's folder;
  duplicates/keeper_choices.json   the keepers picked in the web page
  duplicates/hashes.jsonl, clip/   content hashes and near-duplicate pairs cached per shard
  faces/people.json, people_edits.json, people_centroids.npz, crops/<person>.jpg,
                                 PEOPLE_UPDATED
  cloud/ledger.json              the cloud module's spending
  xmp/state.json, sidecars/, WRITTEN
  index/tantivy/, state.json     Tantivy index and what it holds; index/BUILT
  index/vectors.npy, vector_ids.npy, vector_keys.txt   the CLIP matrix of current images
  index/vector_codes.npy, vector_bounds.npy   its int8 codes and their error bounds
  index/browse.npz, browse/<shard>.json   every current image in timeline order (web, filters)
  report/modules.json, module_times.svg
  .imganalyzer-run.lock          held by a running workflow
  logs/<step>/<name>.log         one log per job; benchmarks/<step>/<name>.tsv alike
```
"""

from __future__ import annotations

import os
from pathlib import Path


class IndexFiles:
    """The files of one search index folder: ``results/index`` or the fresh folder a
    rebuild fills before it is swapped in."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @property
    def tantivy(self) -> Path:
        return self.folder / "tantivy"

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def vectors(self) -> Path:
        return self.folder / "vectors.npy"

    @property
    def vector_ids(self) -> Path:
        return self.folder / "vector_ids.npy"

    @property
    def vector_keys(self) -> Path:
        return self.folder / "vector_keys.txt"

    @property
    def vector_codes(self) -> Path:
        """The vectors as int8 codes, and each row's error bounds (search/vector_scan.py)."""
        return self.folder / "vector_codes.npy"

    @property
    def vector_bounds(self) -> Path:
        return self.folder / "vector_bounds.npy"

    @property
    def vector_files(self) -> tuple[Path, ...]:
        return (
            self.vectors,
            self.vector_ids,
            self.vector_keys,
            self.vector_codes,
            self.vector_bounds,
        )

    @property
    def browse(self) -> Path:
        """The browse table: every current image in timeline order (search/browse.py)."""
        return self.folder / "browse.npz"

    def browse_part(self, shard: str) -> Path:
        """One shard's rows of the browse table, kept to merge the table from."""
        return self.folder / "browse" / f"{shard}.json"


class Layout:
    """The paths of one results folder (``root``)."""

    def __init__(self, results: str | os.PathLike) -> None:
        self.root = Path(results)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # The run
    @property
    def run_config(self) -> Path:
        return self.root / "run" / "config.yaml"

    @property
    def library_view(self) -> Path:
        """The current library as this run's catalog step saw it: one scan per run, read
        by the global steps (duplicates, people, index, xmp)."""
        return self.root / "run" / "library.tsv"

    @property
    def staged_library_view(self) -> Path:
        """The view a starting run planned; the workflow's library_view job places it."""
        return self.root / "run" / "library.staged.tsv"

    @property
    def lock(self) -> Path:
        return self.root / ".imganalyzer-run.lock"

    # Catalog
    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def manifests(self) -> Path:
        return self.catalog / "shards"

    def manifest(self, shard: str) -> Path:
        return self.manifests / f"{shard}.tsv"

    @property
    def moves(self) -> Path:
        return self.catalog / "moves"

    def moves_batch(self, batch: str) -> Path:
        return self.moves / f"{batch}.tsv"

    @property
    def staged(self) -> Path:
        """Manifests a starting run planned; its catalog_shard jobs move them into place."""
        return self.catalog / "staged"

    def staged_manifest(self, shard: str) -> Path:
        return self.staged / f"{shard}.tsv"

    @property
    def compacted(self) -> Path:
        """Manifests retired by ``imganalyzer compact``."""
        return self.catalog / "compacted"

    def compacted_manifest(self, shard: str) -> Path:
        return self.compacted / f"{shard}.tsv"

    @property
    def catalog_lock(self) -> Path:
        return self.catalog / ".lock"

    @property
    def formats_checked(self) -> Path:
        """The formats version whose newly readable files the catalog has re-catalogued."""
        return self.catalog / "formats_version"

    # Decode
    def tiers(self, shard: str) -> Path:
        return self.root / "tiers" / f"{shard}.zarr"

    def thumbnails(self, shard: str) -> Path:
        return self.root / "thumbnails" / f"{shard}.zip"

    def technical(self, shard: str) -> Path:
        return self.rows("technical", shard)

    # Per-shard results of any module (technical, metadata, duplicates, the model modules)
    def module_dir(self, module: str) -> Path:
        return self.root / module

    def rows(self, module: str, shard: str) -> Path:
        return self.module_dir(module) / f"{shard}.jsonl"

    def array(self, module: str, shard: str) -> Path:
        """A model module's per-shard array (embedding vectors, face embeddings)."""
        return self.module_dir(module) / f"{shard}.npy"

    def job_summaries(self, module: str) -> Path:
        return self.module_dir(module) / "jobs"

    def job_summary(self, module: str, job: str) -> Path:
        return self.job_summaries(module) / f"{job}.json"

    def job_failure(self, module: str, job: str) -> Path:
        return self.failures(module) / f"{job}.json"

    def failures(self, module: str) -> Path:
        return self.module_dir(module) / "failed"

    def failure_records(self) -> list[Path]:
        """Every module's job failure records, sorted."""
        return sorted(self.root.glob("*/failed/*.json"))

    @staticmethod
    def of_rows(rows: str | os.PathLike) -> Layout:
        """The layout of a path made by :meth:`rows` (``<root>/<module>/<shard>.jsonl``)."""
        return Layout(Path(rows).parent.parent)

    @staticmethod
    def of_job_summary(summary: str | os.PathLike) -> tuple[Layout, str, str] | None:
        """(layout, module, job) of a path made by :meth:`job_summary`; None for another."""
        path = Path(summary)
        if path.parent.name != "jobs" or path.suffix != ".json":
            return None
        return Layout(path.parent.parent.parent), path.parent.parent.name, path.stem

    # Logs and Snakemake benchmarks: one per job, by step
    def log(self, step: str, name: str) -> Path:
        return self.root / "logs" / step / f"{name}.log"

    def benchmark(self, step: str, name: str) -> Path:
        return self.benchmarks / step / f"{name}.tsv"

    @property
    def benchmarks(self) -> Path:
        return self.root / "benchmarks"

    # Duplicates
    @property
    def duplicate_groups(self) -> Path:
        return self.module_dir("duplicates") / "groups.json"

    @property
    def keeper_choices(self) -> Path:
        return self.module_dir("duplicates") / "keeper_choices.json"

    @property
    def duplicate_hashes(self) -> Path:
        return self.module_dir("duplicates") / "hashes.jsonl"

    @property
    def duplicate_pairs(self) -> Path:
        """Cached near-duplicate CLIP pairs, one file per shard."""
        return self.module_dir("duplicates") / "clip"

    def duplicate_pair_cache(self, shard: str) -> Path:
        return self.duplicate_pairs / f"{shard}.json"

    # People
    @property
    def people(self) -> Path:
        return self.module_dir("faces") / "people.json"

    @property
    def people_edits(self) -> Path:
        return self.module_dir("faces") / "people_edits.json"

    @property
    def people_centroids(self) -> Path:
        return self.module_dir("faces") / "people_centroids.npz"

    @property
    def people_marker(self) -> Path:
        return self.module_dir("faces") / "PEOPLE_UPDATED"

    @property
    def face_crops(self) -> Path:
        return self.module_dir("faces") / "crops"

    def face_crop(self, person_id: str) -> Path:
        return self.face_crops / f"{person_id}.jpg"

    # Cloud
    @property
    def cloud_ledger(self) -> Path:
        return self.module_dir("cloud") / "ledger.json"

    # Index
    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def index_files(self) -> IndexFiles:
        return IndexFiles(self.index)

    @property
    def index_marker(self) -> Path:
        return self.index / "BUILT"

    # XMP sidecars
    @property
    def xmp_marker(self) -> Path:
        return self.module_dir("xmp") / "WRITTEN"

    @property
    def xmp_state(self) -> Path:
        return self.module_dir("xmp") / "state.json"

    @property
    def xmp_sidecars(self) -> Path:
        """Where sidecars go unless ``xmp.dir`` says otherwise."""
        return self.module_dir("xmp") / "sidecars"

    # Report
    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_table(self) -> Path:
        return self.report / "modules.json"

    @property
    def report_plot(self) -> Path:
        return self.report / "module_times.svg"
