"""Failure isolation of model jobs, the failure records and the retry token."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from imganalyzer.catalog.store import IngestReport
from imganalyzer.layout import Layout
from imganalyzer.runtime.jobstatus import failure_isolated, model_job, retry_token, run_summary
from imganalyzer.store import FAILED, ResultsStore, read_record

JOB = "000001-00000-00000"


def summary_of(results: Path, module: str, job: str = JOB) -> Path:
    return Layout(results).job_summary(module, job)


def run_job(summary: Path, fail: bool, inputs=()) -> None:
    with failure_isolated(summary, summary.parent / "job.log", inputs):
        if fail:
            raise RuntimeError("CUDA error: device-side assert\nsecond line")
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps({"module": "embedding", "images": 3, "errors": 1}))


def test_a_failed_job_is_recorded_and_does_not_raise(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, "embedding")
    run_job(summary, fail=True)
    store = ResultsStore(Layout(tmp_path))
    data = store.summary("embedding", JOB)
    assert data["status"] == FAILED and data["error"] == "CUDA error: device-side assert"
    (failure,) = store.failures()
    assert failure["module"] == "embedding" and failure["job"] == JOB
    assert failure["log"].endswith("job.log") and failure["error_type"] == "RuntimeError"
    assert store.failures(modules=["objects"]) == []


def test_the_retry_token_changes_with_each_failure_and_not_on_success(tmp_path: Path) -> None:
    """The param differs from the one the failed job ran with, and stays put after the
    retry succeeds: exactly the failed jobs re-run, once."""
    layout = Layout(tmp_path)
    summary = summary_of(tmp_path, "embedding")
    assert retry_token(layout, "embedding", JOB) == ""  # never ran
    run_job(summary, fail=True)
    token = retry_token(layout, "embedding", JOB)
    assert token != ""
    summary.unlink()  # Snakemake removes a job's output before running it again
    assert retry_token(layout, "embedding", JOB) == token  # the param reads the same in the job
    run_job(summary, fail=False)
    assert retry_token(layout, "embedding", JOB) == token  # unchanged: no further re-run
    assert ResultsStore(layout).failures() == []
    assert read_record(summary)["status"] == "ok" and read_record(summary)["images"] == 3
    time.sleep(1.1)  # a new failure id (seconds resolution)
    run_job(summary, fail=True)
    assert retry_token(layout, "embedding", JOB) not in ("", token)


def test_a_job_whose_upstream_failed_fails_naming_it(tmp_path: Path) -> None:
    upstream = summary_of(tmp_path, "embedding")
    run_job(upstream, fail=True)
    aesthetic = summary_of(tmp_path, "aesthetic")
    with failure_isolated(aesthetic, tmp_path / "a.log", [str(upstream)]):
        raise FileNotFoundError("embedding/000001-00000.npy")
    assert "needs the embedding job 000001-00000-00000" in read_record(aesthetic)["error"]
    assert {f["module"] for f in ResultsStore(Layout(tmp_path)).failures()} == {
        "embedding",
        "aesthetic",
    }


def test_interrupts_are_not_swallowed(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, "embedding")
    with pytest.raises(KeyboardInterrupt), failure_isolated(summary, tmp_path / "l"):
        raise KeyboardInterrupt
    assert not summary.exists()


def test_model_job_logs_the_traceback_to_the_jobs_log(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, "objects")
    log = tmp_path / "logs" / "objects.log"
    smk = SimpleNamespace(output=[str(summary)], log=[str(log)], input=[])
    with model_job(smk):
        raise ValueError("weights do not match the model")
    text = log.read_text()
    assert "Traceback" in text and "weights do not match the model" in text


def test_run_summary_counts_this_runs_jobs_and_lists_failures(tmp_path: Path) -> None:
    started = time.time()
    ok, bad = (
        summary_of(tmp_path, "embedding", "000001-00000-00000"),
        summary_of(tmp_path, "embedding", "000002-00000-00000"),
    )
    run_job(ok, fail=False)
    run_job(bad, fail=True)
    technical = tmp_path / "technical" / "000001-00000.jsonl"
    technical.parent.mkdir()
    technical.write_text('{"path": "a", "status": "ok"}\n{"path": "b", "status": "error"}\n')
    report = IngestReport(
        scanned=10, new_entries=5, new_shards=["000002-00000"], moved=1, removed=2
    )
    text = run_summary(
        Layout(tmp_path), report, ["technical", "embedding"],
        {"technical": [str(technical)], "embedding": [str(ok), str(bad)]}, started,
    )  # fmt: skip
    assert "5 new or changed, 1 moved, 2 removed images" in text
    assert "technical   1 done, 1 image errors" in text
    assert "embedding   1 done, 1 image errors, 1 failed" in text
    assert "failed: 000002-00000-00000: CUDA error" in text and "job.log" in text
