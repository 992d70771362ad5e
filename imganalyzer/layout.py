"""Every path under a results folder: the one place that knows the layout.

The workflow's rules, the scripts, the runtime, compaction, the index, the CLI and the web
page ask a :class:`Layout` for their paths; nobody else joins path strings under results.
The methods take ids (a shard ``000001-00000``, a model job ``000001-00000-00003``) and
return paths; a Snakemake wildcard such as ``"{shard}"`` passes through unchanged, so the
rules build their patterns with the same methods.

```
results/
  run/config.yaml                the effective config of the last real run
  run/library.tsv                the current library, as this run's catalog step saw it
  catalog/shards/<shard>.tsv     manifests (path, size, mtime_ns), one per shard
  catalog/moves/, staged/        moves found per batch; manifests planned by a starting run
  tiers/<shard>.zarr             decoded pixels at each tier size
  thumbnails/<shard>.zip         JPEG thumbnails
  technical/<shard>.jsonl        the decode job's rows; metadata/, duplicates/ alike
  <module>/<shard>.jsonl|.npy    a model module's rows and arrays
  <module>/jobs/<job>.json       a model job's summary (the output Snakemake tracks)
  <module>/failed/<job>.json     why a model job failed (removed when it succeeds)
  duplicates/groups.json         global steps' outputs, each in its module's folder
  faces/people.json
  index/                         Tantivy index, vectors, state; index/BUILT
  logs/<step>/<name>.log         one log per job; benchmarks/<step>/<name>.tsv alike
```
"""

from __future__ import annotations

import os
from pathlib import Path

# Model modules whose jobs also write an array per shard, and its suffix.
ARRAY_SUFFIXES = {"embedding": ".npy", "faces": ".npy"}


class Layout:
    """The paths of one results folder (``root``)."""

    def __init__(self, results: str | os.PathLike) -> None:
        self.root = Path(results)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

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

    @property
    def catalog_lock(self) -> Path:
        return self.catalog / ".lock"

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
        return self.module_dir(module) / f"{shard}{ARRAY_SUFFIXES[module]}"

    def job_summary(self, module: str, job: str) -> Path:
        return self.module_dir(module) / "jobs" / f"{job}.json"

    def job_failure(self, module: str, job: str) -> Path:
        return self.module_dir(module) / "failed" / f"{job}.json"

    def failures(self, module: str) -> Path:
        return self.module_dir(module) / "failed"

    # Logs and Snakemake benchmarks: one per job, by step
    def log(self, step: str, name: str) -> Path:
        return self.root / "logs" / step / f"{name}.log"

    def benchmark(self, step: str, name: str) -> Path:
        return self.root / "benchmarks" / step / f"{name}.tsv"

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

    # People
    @property
    def people(self) -> Path:
        return self.module_dir("faces") / "people.json"

    @property
    def people_edits(self) -> Path:
        return self.module_dir("faces") / "people_edits.json"

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
    def report_table(self) -> Path:
        return self.root / "report" / "modules.json"

    @property
    def report_plot(self) -> Path:
        return self.root / "report" / "module_times.svg"
