"""One model job: the shards of a job read, checked, run through one model as one stream,
and their rows, arrays and the job's summary written.

Every model module (embedding, aesthetic, objects, captions, ocr, faces, cloud) runs through
``run_model_job``; a module only declares its ``BatchedModel`` (the model, what it reads,
how a result becomes a row). For each shard of the job it:

1. reads the manifest, the rows of the modules the model reads (``model.inputs``: the
   decode job's technical rows, objects' has_text/has_person, embedding's rows), their
   arrays (``model.input_arrays``) through the results store and, for a model with a tier,
   the tier store; and checks that each holds one row per manifest row, for the same files;
2. settles the rows that need no model (``model.decide``: a failed decode, a gate);
3. runs the model once over the other rows of every shard as one stream
   (``ConcatenatedBatches``: one model load per job, prefetching across shard boundaries);
4. writes each shard's rows (and array) atomically, then the job's summary.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.layout import Layout
from imganalyzer.results import ERROR, error_row, ok_row
from imganalyzer.runtime.batched import NOT_DECODED, BatchedModel
from imganalyzer.runtime.batches import ConcatenatedBatches, RowFailure
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS, TECHNICAL
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BatchedModel)


def read_job_shard(store: ResultsStore, model: BatchedModel, shard: str) -> JobShard:
    """A shard's manifest and the inputs ``model`` reads, checked against the manifest."""
    layout = store.layout
    entries = read_manifest(layout.manifest(shard))
    job_shard = JobShard(shard, entries)
    for module in model.inputs:
        if module == TECHNICAL and not store.has_rows(module, shard):
            continue
        job_shard.rows[module] = store.checked_rows(module, shard, entries, module != TECHNICAL)
    for module in model.input_arrays:
        job_shard.arrays[module] = store.array(module, shard, n_rows=len(entries))
    if model.tier is not None:
        job_shard.tiers = TierReader(layout.tiers(shard))
        if job_shard.tiers.n_images != len(entries):
            raise ValueError(
                f"{layout.tiers(shard)}: {job_shard.tiers.n_images} images, "
                f"manifest has {len(entries)}"
            )
    return job_shard


@dataclass
class _Plan:
    """A shard's rows settled before the model runs, and the manifest rows it runs on."""

    shard: JobShard
    decided: list[dict[str, Any] | RowFailure | None]
    todo: np.ndarray  # manifest rows, ascending
    offset: int = 0  # of its rows in the job's stream


def run_model_job(
    model: Model,
    layout: Layout,
    job: str,
    shards: Sequence[str],
    threads: int = 2,
) -> Model:
    """Run ``model`` over every shard of model job ``job`` with one model load; write each
    shard's rows (``layout.rows``), its array (``layout.array``) where the model makes one,
    and last the job's summary (``layout.job_summary``). ``threads``: CPU threads of the
    job (``model.use_threads``). Returns the model, whose ``stats`` hold the timings."""
    with model.job_context():
        loader_threads = model.use_threads(threads)
        store = ResultsStore(layout)
        plans = [_plan(model, read_job_shard(store, model, shard)) for shard in shards]
        model.load()
        sources = [model.source(plan.shard, plan.todo) for plan in plans]
        stream = ConcatenatedBatches(sources)
        for plan, offset in zip(plans, stream.offsets, strict=False):
            plan.offset = int(offset)
        results: list[Any] = [None] * stream.n_rows
        checkpoint = _Checkpoint(model, store, plans, results)

        def deliver(indices: np.ndarray, batch_results: Sequence[Any]) -> None:
            for index, result in zip(indices.tolist(), batch_results, strict=True):
                results[index] = result
            checkpoint.delivered(len(indices), int(indices[-1]) if len(indices) else -1)

        try:
            model.run(stream, deliver, loader_threads=loader_threads)
        except BaseException:
            checkpoint.save_partial()
            raise
        model.stats.errors = sum(_write_shard(model, store, plan, results) for plan in plans)
        store.write_summary(model.module, job, job_summary(model, shards))
    return model


def run_module_job(
    module: str,
    layout: Layout,
    job: str,
    params: Mapping[str, Any],
    threads: int = 2,
    inputs: Collection[str] = (),
) -> BatchedModel:
    """A job of a model rule (models.smk): the module's model, built from its registry entry
    and the rule's ``params``, over the job's shards. ``inputs``: the rule's input names."""
    spec = MODELS[module]
    settings = spec.settings_type().from_config(spec.config_of(params))
    model: BatchedModel = spec.model_class().for_job(settings, layout, gated=spec.gate in inputs)
    return run_model_job(model, layout, job, params["shards"], threads)


def _plan(model: BatchedModel, shard: JobShard) -> _Plan:
    decided = [model.decide(shard, row) for row in range(len(shard.entries))]
    todo = np.array([row for row, d in enumerate(decided) if d is None], dtype=np.int64)
    return _Plan(shard, decided, todo)


def _shard_results(plan: _Plan, results: list[Any]) -> list[Any]:
    """The model's results of a shard by manifest row (None: not run, or not decoded)."""
    by_row: list[Any] = [None] * len(plan.shard.entries)
    for position, row in enumerate(plan.todo.tolist()):
        by_row[row] = results[plan.offset + position]
    return by_row


def _shard_rows(
    model: BatchedModel,
    plan: _Plan,
    results: list[Any],
    not_done: Callable[[int], RowFailure] | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """A shard's rows in manifest order and its array. A row the model ran on without a
    result failed to decode (the tier store holds no image), or with ``not_done`` (a
    partial write) has not been reached yet."""
    shard = plan.shard
    by_row = _shard_results(plan, results)
    array = model.shard_array(shard, by_row)
    technical = shard.rows.get(TECHNICAL)
    rows = []
    for row, (entry, decided, result) in enumerate(
        zip(shard.entries, plan.decided, by_row, strict=True)
    ):
        if decided is None and result is None:
            if not_done is not None:
                decided = not_done(row)
            elif technical:
                decided = RowFailure.passed_on(technical[row], NOT_DECODED)
            else:
                decided = RowFailure(NOT_DECODED)
        if isinstance(decided, RowFailure):
            rows.append(error_row(entry, decided.reason, decided.kind))
        elif decided is not None:
            rows.append(ok_row(entry, decided))
        elif isinstance(result, RowFailure):
            rows.append(error_row(entry, result.reason, result.kind))
        else:
            rows.append(ok_row(entry, model.row_fields(result, shard, row)))
    return rows, array


def _write_shard(model: BatchedModel, store: ResultsStore, plan: _Plan, results: list[Any]) -> int:
    """Write a shard's array, then its rows; returns its error rows."""
    rows, array = _shard_rows(model, plan, results)
    if array is not None:
        store.write_array(model.module, plan.shard.id, array)
    store.write_rows(model.module, plan.shard.id, rows)
    return sum(row["status"] == ERROR for row in rows)


class _Checkpoint:
    """For a model whose results cost money (``checkpoint_every``): the rows of the shards
    reached so far are rewritten every that many results, and when the job stops, so that a
    job killed mid-shard keeps what it paid for; rows not reached get ``not_done_reason``."""

    def __init__(
        self, model: BatchedModel, store: ResultsStore, plans: list[_Plan], results: list[Any]
    ) -> None:
        self.model, self.store, self.plans, self.results = model, store, plans, results
        self.every = model.checkpoint_every
        self.unsaved, self.reached = 0, -1

    def delivered(self, count: int, last_index: int) -> None:
        if not self.every:
            return
        self.unsaved += count
        self.reached = max(self.reached, last_index)
        if self.unsaved >= self.every:
            self._save()

    def save_partial(self) -> None:
        if self.every and self.unsaved:
            self._save()

    def _save(self) -> None:
        reason = RowFailure(self.model.not_done_reason)
        for plan in self.plans:
            if plan.offset > self.reached:
                break
            rows, _ = _shard_rows(self.model, plan, self.results, lambda _row: reason)
            self.store.write_rows(self.model.module, plan.shard.id, rows)
        self.unsaved = 0


def job_summary(model: BatchedModel, shards: Sequence[str]) -> dict[str, Any]:
    """The marker a model job writes last: its shards, model, timings and error rows
    (``stats``) and the model's own ``summary_fields``."""
    summary: dict[str, Any] = {
        "module": model.module,
        "model": model.model_id,
        "shards": list(shards),
    }
    summary.update(dataclasses.asdict(model.stats))
    summary.update(model.summary_fields())
    return summary
