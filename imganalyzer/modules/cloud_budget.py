"""The run's budget of cloud requests (images and estimated dollars, shared by the jobs of
one run through a ledger file) and the pacing of requests to ``requests_per_minute``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imganalyzer.files import atomic_write_text
from imganalyzer.modules.cloud import CloudError
from imganalyzer.results import read_rows

SKIPPED_BUDGET = "budget"
# Runs kept in the ledger; older ones are dropped so the file stays small.
LEDGER_RUNS_KEPT = 100


class RateLimiter:
    """Spaces the starts of requests at least ``60 / requests_per_minute`` s apart, across
    threads; ``hold_off`` pushes the next start back (a 429 pauses every worker)."""

    def __init__(
        self,
        requests_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / requests_per_minute
        self.clock, self.sleep = clock, sleep
        self._next_start = -math.inf
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for this request's turn."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        if start > now:
            self.sleep(start - now)

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            self._next_start = max(self._next_start, self.clock() + seconds)


class Budget:
    """The images and estimated dollars a run may still spend.

    ``reserve`` takes one image's estimate before it is sent; ``settle`` replaces the
    estimate with what the image cost. With a ledger file and a run id the counts live in
    the file (under an exclusive lock, written atomically), so that every job of the run
    shares one budget; without either, the counts are this job's own.
    """

    def __init__(
        self, max_images: int, max_cost_usd: float, ledger: Path | None, run_id: str | None
    ) -> None:
        self.max_images, self.max_cost_usd = max_images, max_cost_usd
        self.ledger = ledger if run_id else None
        self.run_id = run_id or ""
        self.exhausted = False
        self._local = {"images": 0, "cost_usd": 0.0}
        self._lock = threading.Lock()

    def reserve(self, estimate_usd: float) -> bool:
        """Count one more image at ``estimate_usd``; False (and from then on) if over budget."""
        with self._counts() as counts:
            if self.exhausted:
                return False
            over_images = counts["images"] + 1 > self.max_images
            over_cost = counts["cost_usd"] + estimate_usd > self.max_cost_usd + 1e-12
            if over_images or over_cost:
                self.exhausted = True
                return False
            counts["images"] += 1
            counts["cost_usd"] += estimate_usd
            return True

    def settle(self, estimate_usd: float, cost_usd: float) -> None:
        if cost_usd != estimate_usd:
            with self._counts() as counts:
                counts["cost_usd"] = max(0.0, counts["cost_usd"] + cost_usd - estimate_usd)

    def spent(self) -> dict[str, float]:
        with self._counts() as counts:
            return dict(counts)

    @contextlib.contextmanager
    def _counts(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self.ledger is None:
                yield self._local
                return
            with _locked(self.ledger.with_name(self.ledger.name + ".lock")):
                runs = _read_ledger(self.ledger)
                counts = runs.setdefault(self.run_id, {"images": 0, "cost_usd": 0.0})
                before = dict(counts)
                yield counts
                if counts != before:
                    counts["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    runs.pop(self.run_id)
                    runs[self.run_id] = counts  # newest last, so trimming drops the oldest
                    kept = dict(list(runs.items())[-LEDGER_RUNS_KEPT:])
                    atomic_write_text(self.ledger, json.dumps({"runs": kept}, indent=1) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["runs"])
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as error:
        raise CloudError(f"{path}: not a cloud budget ledger ({error}); delete it") from None


def budget_skipped(out_jsonl_paths: Sequence[str | os.PathLike]) -> int:
    """Rows that a budget left out in the existing outputs among ``out_jsonl_paths``."""
    count = 0
    for path in out_jsonl_paths:
        if os.path.exists(path):
            count += sum(row.get("skipped") == SKIPPED_BUDGET for row in read_rows(path))
    return count
