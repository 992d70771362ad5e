"""Progress lines of a long job: done/total, rate and time left, rate-limited; the job's
log file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imganalyzer.progress import (
    DEFAULT_INTERVAL_S,
    Progress,
    format_duration,
    job_logging,
    progress_interval,
)


def test_progress_reports_done_total_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress("embedding", total=100, interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="imganalyzer.progress"):
        progress.advance(10)
        progress.reach(40)
        progress.reach(30)  # never goes back
        progress.finish()
    lines = [r.getMessage() for r in caplog.records if r.name == "imganalyzer.progress"]
    assert lines[0].startswith("embedding: 10/100 images, ") and "images/s (10%)" in lines[0]
    assert lines[0].endswith(" left")
    assert lines[1].startswith("embedding: 40/100 images")
    assert lines[-1].startswith("embedding: 40/100 images") and "done in" in lines[-1]


def test_progress_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress("decode", total=10_000, interval_s=3600)
    with caplog.at_level(logging.INFO, logger="imganalyzer.progress"):
        for _ in range(10_000):
            progress.advance()
    assert [r for r in caplog.records if r.name == "imganalyzer.progress"] == []


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_the_interval_comes_from_the_environment_and_a_bad_value_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGANALYZER_PROGRESS_S", "2.5")
    assert progress_interval() == 2.5 and Progress("x", 1).interval_s == 2.5
    monkeypatch.setenv("IMGANALYZER_PROGRESS_S", "-1")
    assert progress_interval() == 0.0
    monkeypatch.setenv("IMGANALYZER_PROGRESS_S", "soon")
    assert progress_interval() == DEFAULT_INTERVAL_S


def test_a_job_log_holds_its_records_and_its_crash_and_is_closed_after(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "job.log"
    root = logging.getLogger()
    handlers = list(root.handlers)
    with pytest.raises(RuntimeError, match="boom"), job_logging(path):
        logging.getLogger("imganalyzer.test").info("working on shard 3")
        progress = Progress("decode", total=1, interval_s=3600)
        progress.advance()
        progress.finish()
        raise RuntimeError("boom")
    text = path.read_text(encoding="utf-8")
    assert "INFO imganalyzer.test: working on shard 3" in text
    assert "decode: 1/1 images" in text and "done in" in text
    assert "ERROR imganalyzer.job: job failed" in text and "RuntimeError: boom" in text
    assert root.handlers == handlers  # nothing left behind for the next job in this process
    logging.getLogger("imganalyzer.test").info("after the job")
    assert "after the job" not in path.read_text(encoding="utf-8")
