"""Model jobs that fail without stopping the run, the record of their failures, and the
summary printed at the end of every run.

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
Records and summaries are read and written through the results store
(:class:`~imganalyzer.store.ResultsStore`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.store import FAILED, ResultsStore, read_record

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
        failure = _failure(module, job, log_file, _upstream_failure(inputs) or error)
        store.write_failure(module, job, failure)
        store.write_summary(module, job, failure)
        return
    data = store.summary(module, job) or {"module": module, "job": job}
    data["status"] = OK
    store.write_summary(module, job, data)
    previous = store.failure(module, job)
    if previous and previous.get("status") == FAILED:
        previous.update(status=RETRIED, retried=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        store.write_failure(module, job, previous)


def _upstream_failure(inputs: Iterable[str | os.PathLike]) -> UpstreamFailed | None:
    """Why a job failed when a job it reads failed first (its error names that job)."""
    for path in inputs:
        parts = Layout.of_job_summary(path)
        if parts is not None:
            layout, module, job = parts
            data = ResultsStore(layout).summary(module, job) or {}
            if data.get("status") == FAILED:
                return UpstreamFailed(
                    f"needs the {module} job {job}, which failed (see {data.get('log', 'its log')})"
                )
    return None


def _failure(module: str, job: str, log_file: str | os.PathLike, error: Exception) -> dict:
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
    for module in modules:
        outcome = _outcome(module, outputs.get(module, []), started, failures)
        text = f"  {module:<11} {outcome.done} done, {outcome.image_errors} image errors"
        text += f", {len(outcome.failed)} failed" if outcome.failed else ""
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
    for output in map(Path, outputs):
        with contextlib.suppress(FileNotFoundError):
            if output.stat().st_mtime < started - 1:
                continue
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


@contextlib.contextmanager
def model_job(smk: Any) -> Iterator[None]:
    """A model rule script's body: logged to the job's log and failure-isolated. ``smk``:
    the ``snakemake`` object (output[0] = the job summary, log[0], input)."""
    with (
        job_logging(smk.log[0]),
        failure_isolated(smk.output[0], smk.log[0], smk.input),
    ):
        yield
