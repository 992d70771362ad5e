"""The run's budget of cloud requests, in one job or shared by the jobs of a run through
the ledger file, and the pacing of request starts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from imganalyzer.catalog.manifests import Entry
from imganalyzer.modules.cloud import CloudError
from imganalyzer.modules.cloud_budget import (
    LEDGER_RUNS_KEPT,
    SKIPPED_BUDGET,
    Budget,
    RateLimiter,
    budget_skipped,
)
from imganalyzer.results import ok_row, write_rows


class Clock:
    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_a_job_budget_stops_at_the_image_count_or_the_cost() -> None:
    by_images = Budget(max_images=2, max_cost_usd=10.0, ledger=None, run_id=None)
    assert [by_images.reserve(0.01) for _ in range(3)] == [True, True, False]
    assert not by_images.reserve(0.0)  # exhausted stays exhausted
    by_cost = Budget(max_images=100, max_cost_usd=0.03, ledger=None, run_id=None)
    assert [by_cost.reserve(0.01) for _ in range(4)] == [True, True, True, False]
    assert by_cost.spent() == {"images": 3, "cost_usd": pytest.approx(0.03)}


def test_settling_replaces_the_estimate_with_what_the_image_cost() -> None:
    budget = Budget(max_images=10, max_cost_usd=0.05, ledger=None, run_id=None)
    assert budget.reserve(0.02)
    budget.settle(0.02, 0.001)  # cheaper than estimated: room for more
    assert budget.spent()["cost_usd"] == pytest.approx(0.001)
    assert budget.reserve(0.02) and budget.reserve(0.02)


def test_the_jobs_of_one_run_share_a_ledger_and_other_runs_do_not(tmp_path: Path) -> None:
    ledger = tmp_path / "cloud" / "ledger.json"
    first = Budget(3, 10.0, ledger, "run-a")
    second = Budget(3, 10.0, ledger, "run-a")
    other_run = Budget(3, 10.0, ledger, "run-b")
    assert first.reserve(0.01) and second.reserve(0.01) and first.reserve(0.01)
    assert not second.reserve(0.01)  # three images for the run, across both jobs
    assert other_run.reserve(0.01)
    runs = json.loads(ledger.read_text())["runs"]
    assert runs["run-a"]["images"] == 3 and runs["run-b"]["images"] == 1
    assert Budget(3, 10.0, ledger, None).reserve(0.01)  # no run id: a job's own budget
    assert json.loads(ledger.read_text())["runs"].keys() == {"run-a", "run-b"}


def test_concurrent_reservations_never_overspend(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    granted = []

    def job() -> None:
        budget = Budget(20, 100.0, ledger, "run")
        granted.extend(budget.reserve(0.01) for _ in range(15))

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 20


def test_the_ledger_keeps_the_newest_runs_and_refuses_a_foreign_file(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    for run in range(LEDGER_RUNS_KEPT + 5):
        Budget(1, 1.0, ledger, f"run-{run}").reserve(0.01)
    runs = json.loads(ledger.read_text())["runs"]
    assert (
        len(runs) == LEDGER_RUNS_KEPT
        and "run-0" not in runs
        and f"run-{LEDGER_RUNS_KEPT + 4}" in runs
    )
    ledger.write_text("[1, 2, 3]")
    with pytest.raises(CloudError, match="not a cloud budget ledger.*delete it"):
        Budget(1, 1.0, ledger, "run").reserve(0.01)


def test_request_starts_are_spaced_and_a_hold_off_pushes_the_next_one_back() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    assert clock.sleeps == [0.5, 0.5]  # the first starts at once
    limiter.hold_off(10.0)  # a 429 asked for ten seconds
    limiter.acquire()
    assert clock.sleeps[-1] == pytest.approx(10.0)


def test_rows_a_budget_left_out_are_counted_in_existing_outputs(tmp_path: Path) -> None:
    out = tmp_path / "cloud.jsonl"
    entries = [Entry(f"{i}.jpg", 1, 1) for i in range(4)]
    write_rows(out, [ok_row(e, {"skipped": SKIPPED_BUDGET} if i % 2 else {"description": "x"})
                     for i, e in enumerate(entries)])  # fmt: skip
    assert budget_skipped([out, tmp_path / "not-yet.jsonl"]) == 2
