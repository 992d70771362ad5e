"""Shared helpers of the benchmarks: timing, a result table, the machine description.

Imported as ``common`` by the bench scripts, which are run as plain scripts
(``.venv/bin/python bench/<name>.py`` from the repository root): Python puts the script's
folder, ``bench/``, first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Timing:
    """Per run: wall-clock seconds (``runs``) and this process's CPU seconds, all threads
    (``cpu``); ``others``: mean cores busy with other processes during the runs (the noise)."""

    runs: tuple[float, ...]
    cpu: tuple[float, ...]
    others: float | None = None

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best_cpu(self) -> float:
        """CPU seconds of the fastest (wall-clock) run."""
        return self.cpu[self.runs.index(self.best)]


def measure(
    fn: Callable[[], object], repeats: int = 3, setup: Callable[[], object] | None = None
) -> Timing:
    """Run ``fn`` ``repeats`` times (``setup`` before each run, untimed) -> :class:`Timing`."""
    runs, cpu, busy = [], [], 0.0
    for _ in range(repeats):
        if setup is not None:
            setup()
        start_busy = system_busy_seconds()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        busy += system_busy_seconds() - start_busy
    known = system_busy_seconds() >= 0
    others = max(0.0, busy - sum(cpu)) / sum(runs) if known and sum(runs) > 0 else None
    return Timing(tuple(runs), tuple(cpu), others)


def system_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (/proc/stat), or -1 if unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(
                int, f.readline().split()[1:9]
            )
    except (OSError, ValueError):
        return -1.0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Row:
    """One line of a result table: ``name | value | unit`` and an optional note."""

    name: str
    value: float
    unit: str
    note: str = ""


def _note(timing: Timing, median: str, note: str) -> str:
    parts = [f"median {median}, n={len(timing.runs)}"]
    if timing.others is not None and timing.others >= 0.1:
        parts.append(f"other processes busy {timing.others:.1f} cores")
    return "; ".join(parts + ([note] if note else []))


def ms_row(name: str, timing: Timing, per: int = 1, note: str = "") -> Row:
    """Best run in ms per item (``per`` items per run); the median goes in the note."""
    median = f"{timing.median * 1e3 / per:.1f} ms"
    return Row(name, timing.best * 1e3 / per, "ms", _note(timing, median, note))


def rate_row(name: str, timing: Timing, items: int, note: str = "") -> Row:
    """Items per second of the best run; the median rate goes in the note."""
    median = f"{items / timing.median:.2f}/s"
    return Row(name, items / timing.best, "images/s", _note(timing, median, note))


def ratio_row(name: str, numerator: float, denominator: float, note: str = "") -> Row:
    return Row(name, numerator / denominator, "x", note)


def format_table(rows: Iterable[Row], title: str = "") -> str:
    rows = list(rows)
    width = max([len(r.name) for r in rows] + [4])
    lines = [f"== {title}"] if title else []
    for r in rows:
        if isinstance(r.value, int):
            value = f"{r.value:10d}"
        else:
            value = f"{r.value:10.2f}" if abs(r.value) < 1e6 else f"{r.value:10.3g}"
        note = f"  ({r.note})" if r.note else ""
        lines.append(f"{r.name:<{width}} | {value} | {r.unit:<8}{note}")
    return "\n".join(lines)


def save_rows(path: str, title: str, rows: Iterable[Row]) -> None:
    """Write rows as JSON for ``run_all.py``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"title": title, "rows": [asdict(r) for r in rows]}, f)


def bench_parser(description: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and ``--json PATH`` (run_all.py)."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    return parser


def publish(title: str, rows: list[Row], json_path: str | None) -> None:
    """Hand the rows to run_all.py (``--json``) or print them as a table."""
    if json_path:
        save_rows(json_path, title, rows)
    else:
        print(f"\n{format_table(rows, title)}", flush=True)


def load_rows(path: str) -> tuple[str, list[Row]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data["title"], [Row(**r) for r in data["rows"]]


def machine_description() -> str:
    import numpy
    import PIL

    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "n/a"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"cpu: {cpu}, {usable} usable cores (os.cpu_count()={os.cpu_count()}), "
        f"load avg {load}\n"
        f"python {platform.python_version()} ({sys.implementation.name}), "
        f"numpy {numpy.__version__}, pillow {PIL.__version__}, {platform.platform()}"
    )
