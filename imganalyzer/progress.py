"""Progress inside a long job: images done / total, images/s and time left, logged at most
once every ``IMGANALYZER_PROGRESS_S`` seconds (default 10) and once at the end.

Records go to the ``imganalyzer.progress`` logger: the job's log file (``job_logging``,
which every rule's script runs in), and stderr, which is the console for a local run and
the scheduler's log on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("imganalyzer.progress")
DEFAULT_INTERVAL_S = 10.0


def progress_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("IMGANALYZER_PROGRESS_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts images of one job; ``advance`` is cheap and thread-safe."""

    def __init__(self, label: str, total: int, interval_s: float | None = None) -> None:
        self.label, self.total = label, total
        self.interval_s = progress_interval() if interval_s is None else interval_s
        self.done = 0
        self.started = self.last = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._count(self.done + count)

    def reach(self, done: int) -> None:
        """Set the count of images done (when work is counted by position)."""
        with self._lock:
            self._count(max(self.done, done))

    def _count(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last >= self.interval_s and self.done < self.total:
            self.last = now
            log.info("%s", self.line(now))

    def finish(self) -> None:
        log.info("%s", self.line(time.monotonic(), final=True))

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done}/{self.total} images, {rate:.1f} images/s"
        if final:
            return f"{text}, done in {format_duration(elapsed)}"
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        percent = 100 * self.done / self.total if self.total else 100.0
        remaining = format_duration(left) if left == left else "?"
        return f"{text} ({percent:.0f}%), {remaining} left"


@contextlib.contextmanager
def job_logging(path: str | os.PathLike) -> Iterator[None]:
    """Send this process's log records to a job's log file (and log a crash there)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # progress lines also on stderr: the console of a local run, the scheduler's log on a cluster
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    try:
        yield
    except BaseException:
        logging.getLogger("imganalyzer.job").exception("job failed")
        raise
    finally:
        root.removeHandler(handler)
        log.removeHandler(console)
        handler.close()
