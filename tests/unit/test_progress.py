"""Progress lines of a long job: done/total, rate and time left, rate-limited; the job's
log file."""

from __future__ import annotations

import logging

import pytest

from imganalyzer.progress import Progress, format_duration


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
