"""Jobs that fail without stopping the run, the record of their failures, and the summary
printed at the end of every run.

A model job (``results/<module>/jobs/<job>.json``) runs inside ``failure_isolated``. If it
fails (a missing model, a CUDA error, a bug) the exception is logged to the job's log, a
failure record ``results/<module>/failed/<job>.json`` is written, and so is the job's
summary with ``status: failed``: the job counts as *done or failed* for Snakemake, so the
other modules, the index and the report still run, and the index indexes every result
that exists. The record's ``failure_id`` is the rule's ``retry`` param (``retry_token``):
a new failure changes it, so the next run re-runs exactly the failed jobs (Snakemake's
params trigger). A job that then succeeds keeps its record, marked ``retried``, so the
param stays the same afterwards. The record is not a declared output: Snakemake never
deletes it before a job runs, so the param reads the same before and after the job.

The per-shard CPU jobs (decode, metadata, duplicate hashes) are isolated the same way
(``shard_job``): a bad image is an error row and never fails its job, but the job itself
can fail (a bug, a full disk, a file-size limit). Its record is
``results/<step>/failed/<shard>.json`` (step: decode, metadata, duplicates), its outputs are
written empty (no rows: its images count as not analysed yet, and a model job that needs
them fails naming it), and its ``retry`` param (``shard_retry_tokens``) re-runs it.
Records and summaries are read and written through the results store
(:class:`~imganalyzer.store.ResultsStore`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.store import DECODE, FAILED, ResultsStore, read_record

log = logging.getLogger(__name__)

OK = "ok"
RETRIED = "retried"  # a failure record whose job has since succeeded


class UpstreamFailed(RuntimeError):
    """A job this one reads (objects for ocr, embedding for aesthetic) failed."""


def _summary_parts(summary: str | os.PathLike) -> tuple[ResultsStore, str, str]:
    """(store, module, job) of the job whose summary (a job's declared output) is ``summary``."""
    parts = Layout.of_job_summary(summary)
    if parts is None:
        raise ValueError(f"{summary}: not a model job's summary (<module>/jobs/<job>.json)")
    layout, module, job = parts
    return ResultsStore(layout), module, job


def retry_token(layout: Layout, module: str, job: str) -> str:
    """The ``retry`` param of a model job: the id of its last failure ("" if it never
    failed); a new failure changes it, a success does not."""
    record = ResultsStore(layout).failure(module, job) or {}
    return str(record.get("failure_id", ""))


@contextlib.contextmanager
def failure_isolated(
    summary: str | os.PathLike,
    log_file: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[None]:
    """Run a model job's body; on failure record it instead of failing the workflow.

    ``summary``: the job's declared output, which the body writes on success;
    ``inputs``: its inputs; when this job fails and one of them is the summary of a job
    that failed (embedding for aesthetic), the record names that job as the reason.
    """
    store, module, job = _summary_parts(summary)
    try:
        yield
    except Exception as error:  # noqa: BLE001 (any failure of one job must not stop the run)
        log.exception("%s job %s failed", module, job)
        failure = _failure(module, job, log_file, _upstream_failure(store, inputs) or error)
        store.write_failure(module, job, failure)
        store.write_summary(module, job, failure)
        return
    data = store.summary(module, job) or {"module": module, "job": job}
    data["status"] = OK
    store.write_summary(module, job, data)
    _mark_retried(store, module, job)


def _mark_retried(store: ResultsStore, module: str, job: str) -> None:
    """A job succeeded: its failure record, if any, says so (its failure_id stays)."""
    previous = store.failure(module, job)
    if previous and previous.get("status") == FAILED:
        previous.update(status=RETRIED, retried=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        store.write_failure(module, job, previous)


def _upstream_failure(
    store: ResultsStore, inputs: Iterable[str | os.PathLike]
) -> UpstreamFailed | None:
    """Why a job failed when a job it reads failed first (its error names that job): a
    model job's summary that says failed, or an output of a failed shard job."""
    inputs = list(inputs)
    for path in inputs:
        parts = Layout.of_job_summary(path)
        if parts is not None:
            layout, module, job = parts
            data = ResultsStore(layout).summary(module, job) or {}
            if data.get("status") == FAILED:
                return _upstream(module, job, data)
    wanted = {os.path.abspath(path) for path in inputs}
    for record in store.failures():
        if wanted.intersection(os.path.abspath(o) for o in record.get("outputs", ())):
            return _upstream(record["module"], record["job"], record)
    return None


def _upstream(module: str, job: str, record: dict[str, Any]) -> UpstreamFailed:
    return UpstreamFailed(
        f"needs the {module} job {job}, which failed (see {record.get('log', 'its log')})"
    )


def _failure(
    module: str, job: str, log_file: str | os.PathLike, error: Exception
) -> dict[str, Any]:
    message = str(error).strip().splitlines()
    return {
        "module": module,
        "job": job,
        "status": FAILED,
        "failure_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}",
        "error_type": type(error).__name__,
        "error": message[0] if message else type(error).__name__,
        "log": str(log_file),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- Per-shard CPU jobs -----------------------------------------------------------------------
# The decode job writes the technical rows (and the tiers every other module reads): its
# failures are listed whichever modules are configured.
# The step whose job writes a module's per-shard rows, where it is not the module itself.
ROWS_WRITTEN_BY = {"technical": DECODE}


class NoFailure:
    """The ``retry`` param of a shard job that never failed. Snakemake leaves a param value
    it cannot represent (not a str, number, list...) out of its params trigger: adding the
    param to the decode and metadata rules re-runs no job of an existing library. After a
    failure the param is the failure's id, a str, which re-runs exactly that job."""

    def __repr__(self) -> str:
        return "no failure"


NO_FAILURE = NoFailure()


def shard_retry_tokens(layout: Layout, step: str) -> dict[str, str]:
    """Shard -> the ``retry`` param of the ``step`` job of that shard that has a failure
    record (the id of its last failure); other shards' param is :data:`NO_FAILURE`. Read
    once per parse: one listing of ``results/<step>/failed/``, not a file per shard."""
    tokens = {}
    for path in sorted(layout.failures(step).glob("*.json")):
        record = read_record(path) or {}
        if record.get("failure_id"):
            tokens[path.stem] = str(record["failure_id"])
    return tokens


@contextlib.contextmanager
def shard_job(
    smk: Any, step: str, rows: str | os.PathLike, write_failed_outputs: Callable[[], None]
) -> Iterator[None]:
    """A per-shard CPU job's body, logged to its log and failure-isolated. ``smk``: the
    ``snakemake`` object (wildcards.shard, log[0], input, output); ``rows``: its result rows
    file (``<results>/<module>/<shard>.jsonl``); ``write_failed_outputs`` writes its declared
    outputs empty when it fails (after its record)."""
    store = ResultsStore(Layout.of_rows(rows))
    shard = smk.wildcards.shard
    with job_logging(smk.log[0]):
        try:
            yield
        except Exception as error:  # noqa: BLE001 (one job's failure must not stop the run)
            log.exception("%s job %s failed", step, shard)
            failure = _failure(
                step, shard, smk.log[0], _upstream_failure(store, smk.input) or error
            )
            failure["outputs"] = [str(path) for path in smk.output]
            store.write_failure(step, shard, failure)
            write_failed_outputs()
            return
        _mark_retried(store, step, shard)


@dataclass
class ModuleOutcome:
    done: int = 0  # jobs (model modules) or shards (per-shard modules) that finished
    image_errors: int = 0  # images with an error row (a bad file), in those
    failed: list[dict[str, Any]] = field(default_factory=list)  # failed jobs (their records)


def run_summary(
    layout: Layout,
    ingest: Any,
    modules: Sequence[str],
    outputs: dict[str, list[str]],
    started: float,
) -> str:
    """The lines printed when a run ends: images new/changed, moved and removed; per module
    the jobs done in this run, image errors in them and failed jobs with their logs; wall
    time. ``outputs``: module -> the output files of its jobs (written by this run when
    newer than ``started``)."""
    lines = [
        f"imganalyzer: {ingest.new_entries} new or changed, {ingest.moved} moved, "
        f"{ingest.removed} removed images; {time.time() - started:.1f} s"
    ]
    failures = {(f["module"], f["job"]): f for f in ResultsStore(layout).failures(modules)}
    steps = [*modules, *sorted({m for m, _ in failures} - set(modules))]  # decode
    for module in steps:
        outcome = _outcome(module, outputs.get(module, []), started, failures)
        text = f"  {module:<11} {outcome.done} done, {outcome.image_errors} image errors"
        if module not in modules:  # decode: its results are the technical module's
            text = f"  {module:<11} {len(outcome.failed)} failed"
        elif outcome.failed:
            text += f", {len(outcome.failed)} failed"
        lines.append(text)
        lines += [
            f"    failed: {f['job']}: {_shortened(f.get('error', ''))} (log: {f.get('log', '?')})"
            for f in outcome.failed
        ]
    if failures:
        lines.append(
            f"  {len(failures)} job(s) failed; the other results are indexed. "
            "The next run retries only the failed jobs."
        )
    return "\n".join(lines)


def _outcome(
    module: str, outputs: list[str], started: float, failures: dict[tuple[str, str], dict[str, Any]]
) -> ModuleOutcome:
    outcome = ModuleOutcome()
    writer = ROWS_WRITTEN_BY.get(module, module)
    for output in map(Path, outputs):
        with contextlib.suppress(FileNotFoundError):
            if output.stat().st_mtime < started - 1 or (writer, output.stem) in failures:
                continue  # older than this run, or the empty rows of a failed shard job
            if output.suffix == ".json":
                data = read_record(output) or {}
                if data.get("status") == FAILED:
                    continue
                outcome.image_errors += int(data.get("errors", 0) or 0)
            elif output.suffix == ".jsonl":
                outcome.image_errors += _error_rows(output)
            outcome.done += 1
    outcome.failed = [f for (m, _), f in sorted(failures.items()) if m == module]
    return outcome


def _shortened(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_rows(path: Path) -> int:
    with path.open("rb") as rows:
        return sum(1 for line in rows if b'"status": "error"' in line)


def exit_promptly() -> None:
    """Let a run's process exit as soon as its summary is printed; called in the Snakemake
    process when the run has ended.

    - Snakemake re-evaluates its schedule one second after each round that started jobs (a
      ``threading.Timer``, for --max-jobs-per-timespan), and Python waits for every such
      timer before it exits: up to a second after the summary. They are cancelled.
    - Python's shutdown runs the garbage collector over every object of the modules loaded
      (Snakemake, pandas, SQLAlchemy): about 0.2 s of CPU. ``gc.freeze()`` leaves them out
      (they are freed with the process all the same).
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
    gc.freeze()


@contextlib.contextmanager
def model_job(smk: Any) -> Iterator[None]:
    """A model rule script's body: logged to the job's log and failure-isolated. ``smk``:
    the ``snakemake`` object (output[0] = the job summary, log[0], input)."""
    with (
        job_logging(smk.log[0]),
        failure_isolated(smk.output[0], smk.log[0], smk.input),
    ):
        yield
