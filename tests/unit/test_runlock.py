"""One lock per results folder, naming its holder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imganalyzer.layout import Layout
from imganalyzer.runlock import (
    BOOT_ID,
    ResultsLocked,
    acquire_results_lock,
    clear_stale_workflow_lock,
    holder_alive,
    release_results_lock,
    workflow_locks_naming,
)

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
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(ResultsLocked) as raised:
                acquire_results_lock(Layout(results), wait_s=0.3)
            message = str(raised.value)
            assert f"pid {holder.pid}" in message and str(tmp_path) in message
            assert str(results) in message
        finally:
            holder.kill()
    # its process is gone: the lock is free (no stale lock after kill -9)
    acquire_results_lock(Layout(results))
    acquire_results_lock(Layout(results))  # the same process again: already held
    release_results_lock(Layout(results))


def snakemake_lock(workdir: Path, name: str, *paths: str) -> Path:
    """A lock file as Snakemake writes it in ``.snakemake/locks``: one path a line."""
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / name).write_text("".join(f"{path}\n" for path in paths))
    return locks / name


def record_holder(results: Path, **holder: object) -> None:
    """The holder record a run leaves in the results lock (without holding the flock)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / ".imganalyzer-run.lock").write_text(json.dumps(holder) + "\n")


def test_the_lock_a_killed_run_left_is_removed_and_others_are_kept(tmp_path: Path) -> None:
    results, workdir = tmp_path / "results", tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(results)], stdout=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path,
    ) as holder:  # fmt: skip
        assert holder.stdout.readline().strip() == "held"
        ours = [
            snakemake_lock(workdir, "0.input.lock", "../results/catalog/shards/a.tsv"),
            snakemake_lock(workdir, "0.output.lock", str(results / "tiers/a.zarr"), "x.log"),
        ]
        holder.kill()  # as kill -9 leaves it: the flock is gone, Snakemake's lock is not
    # another run in the same working folder writes another results folder: its lock stays
    theirs = snakemake_lock(workdir, "1.output.lock", str(tmp_path / "results2/tiers/a.zarr"))
    acquire_results_lock(Layout(results))
    try:
        message = clear_stale_workflow_lock(Layout(results), workdir)
    finally:
        release_results_lock(Layout(results))
    assert message is not None and f"pid {holder.pid}" in message
    assert not any(path.exists() for path in ours)
    assert theirs.exists()


def test_nothing_to_clear_without_a_lock_naming_the_results(tmp_path: Path) -> None:
    results, workdir = tmp_path / "results", tmp_path / "work"
    acquire_results_lock(Layout(results))
    try:
        assert clear_stale_workflow_lock(Layout(results), workdir) is None
        snakemake_lock(workdir, "0.output.lock", str(tmp_path / "results-old/a"))
        assert clear_stale_workflow_lock(Layout(results), workdir) is None
    finally:
        release_results_lock(Layout(results))
    with pytest.raises(RuntimeError):  # only while holding the results lock
        clear_stale_workflow_lock(Layout(results), workdir)


def live_holder(process: subprocess.Popen) -> dict:
    stat = Path(f"/proc/{process.pid}/stat").read_text()
    return {
        "pid": process.pid,
        "host": socket.gethostname(),
        "started": "2031-01-02 03:04:05 UTC",
        "cwd": "/somewhere",
        "boot_id": BOOT_ID.read_text().strip(),
        "process_start": int(stat.rsplit(")", 1)[1].split()[19]),
    }


@pytest.mark.parametrize("case", ["other host", "alive here", "no record"])
def test_a_lock_whose_run_may_be_alive_is_refused_naming_the_run(tmp_path: Path, case: str) -> None:
    results, workdir = tmp_path / "results", tmp_path / "work"
    lock = snakemake_lock(workdir, "0.output.lock", str(results / "index/BUILT"))
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            holder = live_holder(sleeper)
            if case == "other host":  # a shared folder: its pid cannot be checked here
                holder |= {"host": "node-17.cluster", "pid": 4242}
            record_holder(results, **(holder if case != "no record" else {}))
            acquire_results_lock(Layout(results))
            with pytest.raises(ResultsLocked) as raised:
                clear_stale_workflow_lock(Layout(results), workdir)
        finally:
            release_results_lock(Layout(results))
            sleeper.kill()
    message = str(raised.value)
    assert lock.exists() and str(results) in message
    if case == "no record":
        assert "--unlock" in message
    else:
        assert f"pid {holder['pid']} on {holder['host']}" in message
        assert "started 2031-01-02 03:04:05 UTC" in message


def test_a_holder_is_dead_when_its_pid_is_gone_reused_or_from_before_a_reboot(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            holder = live_holder(sleeper)
            assert holder_alive(holder) is True
            assert holder_alive(holder | {"process_start": holder["process_start"] + 1}) is False
            assert holder_alive(holder | {"boot_id": "another-boot"}) is False
            assert holder_alive(holder | {"host": "node-17.cluster"}) is None
            assert holder_alive({}) is None
        finally:
            sleeper.kill()
    assert holder_alive(holder) is False  # its process is gone


def test_lock_files_name_results_by_relative_or_absolute_path_only_inside_it(
    tmp_path: Path,
) -> None:
    results, workdir = tmp_path / "results", tmp_path / "work"
    relative = snakemake_lock(workdir, "0.input.lock", "../results/catalog/a.tsv")
    absolute = snakemake_lock(workdir, "0.output.lock", "x", str(results / "a/b"))
    snakemake_lock(workdir, "1.output.lock", str(tmp_path / "results2/a"), "results/a")
    snakemake_lock(workdir, "notes.lock", str(results / "a"))  # not a Snakemake lock name
    locks = workdir / ".snakemake" / "locks"
    assert workflow_locks_naming(locks, results, workdir) == [relative, absolute]
