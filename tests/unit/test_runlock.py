"""One lock per results folder, naming its holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imganalyzer.layout import Layout
from imganalyzer.runlock import ResultsLocked, acquire_results_lock, release_results_lock

HOLD = """
import sys, time
from imganalyzer.layout import Layout
from imganalyzer.runlock import acquire_results_lock
acquire_results_lock(Layout(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    layout = Layout(results)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(ResultsLocked) as raised:
                acquire_results_lock(layout, wait_s=0.3)
            message = str(raised.value)
            assert f"pid {holder.pid}" in message and str(tmp_path) in message
            assert str(results) in message
        finally:
            holder.kill()
    # its process is gone: the lock is free (no stale lock after kill -9)
    acquire_results_lock(layout)
    acquire_results_lock(layout)  # the same process again: already held
    release_results_lock(layout)
