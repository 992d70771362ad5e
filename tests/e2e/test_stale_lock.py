"""Snakemake's lock after a crash, and while a run is alive: the next run clears the lock
a dead run left (tests/e2e/test_crash.py), never the lock of a run that may be alive."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPO, SNAKEMAKE, _env, make_workspace
from .test_crash import build_library, kill_when

pytestmark = pytest.mark.slow


def lock_files(root: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in (root / ".snakemake/locks").glob("*.lock")}


def test_a_second_run_while_one_runs_is_refused_naming_it_and_keeps_its_lock(
    tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path, shard_size=24)
    build_library(ws.library)
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(ws.config)]
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(
            [*command, "--cores", "2"], cwd=ws.root, stdout=log, stderr=log, env=_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not any((ws.results / "tiers").glob(".*.tmp")) and time.monotonic() < deadline:
                time.sleep(0.05)  # the first run holds its locks and decodes
            # paused (alive, every lock held) while the second starts: a first run that
            # ends meanwhile would make this test pass for the wrong reason
            os.killpg(first.pid, signal.SIGSTOP)
            locks = lock_files(ws.root)
            assert locks and first.poll() is None, "the first run did not get going"

            second = ws.snakemake(check=False)  # the same command, the same folder

            assert lock_files(ws.root) == locks  # the live run's lock is left alone
            os.killpg(first.pid, signal.SIGCONT)
            first_status = first.wait(timeout=600)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert f"pid {first.pid} on {socket.gethostname()}, started " in output, output
    assert "in use by another run" in output and "Traceback" not in output
    assert "removed Snakemake's lock" not in output
    assert first_status == 0, (tmp_path / "first.log").read_text()
    again = ws.snakemake()
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_lock_left_by_a_run_on_another_host_is_kept_until_unlocked(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, shard_size=24)
    build_library(ws.library, count=4)
    kill_when(ws, lambda: bool(lock_files(ws.root)), delay=0.2)
    # as a run killed on another machine sharing these folders leaves it: its pid cannot
    # be checked from here
    record = ws.results / ".imganalyzer-run.lock"
    holder = json.loads(record.read_text()) | {"host": "node-17.cluster", "pid": 4242}
    record.write_text(json.dumps(holder))
    locks = lock_files(ws.root)

    refused = ws.snakemake(check=False)

    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "Traceback" not in output
    assert f"pid 4242 on node-17.cluster, started {holder['started']}" in output, output
    assert "snakemake --unlock" in output
    assert lock_files(ws.root) == locks
    ws.snakemake("--unlock")  # the user's call, once that run is known to be over
    ws.snakemake()
    assert (ws.results / "index/BUILT").is_file()
