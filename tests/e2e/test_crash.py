"""kill -9 of the whole run in the middle of decoding (or of a model job), then the same
command once more: it clears the lock Snakemake left, re-runs the cut-off jobs, and the
results equal an uninterrupted run's, no partial file is left, no row is duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from imganalyzer.example.writers import write_jpeg

from .conftest import REPO, SNAKEMAKE, Workspace, make_workspace

pytestmark = pytest.mark.slow


def build_library(library: Path, count: int = 48) -> None:
    base = np.asarray(Image.fromarray(data.coffee()).resize((2400, 1600)))
    for index in range(count):
        write_jpeg(library / f"{index:03d}.jpg", np.roll(base, index * 7, axis=1))


def kill_when(ws: Workspace, started: Callable[[], bool], delay: float) -> None:
    """Start the whole run, wait until ``started()``, then kill -9 every process of it."""
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(ws.config)]
    process = subprocess.Popen(
        [*command, "--cores", "2"],
        cwd=ws.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not started() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def rerun_after_kill(ws: Workspace) -> None:
    """The plain command again, as a user would run it after a crash: no --unlock."""
    locks = ws.root / ".snakemake" / "locks"
    assert any(locks.glob("*.lock")), "the killed run left no Snakemake lock"
    # Snakemake's markers of the jobs cut off: the profile's rerun-incomplete re-runs them
    assert any((ws.root / ".snakemake" / "incomplete").iterdir())
    output = ws.snakemake()  # fails if any job or the lock stops it
    assert "imganalyzer: removed Snakemake's lock" in output.stdout + output.stderr
    assert not any(locks.glob("*.lock"))


def result_files(ws: Workspace, modules=("technical", "metadata")) -> dict[str, bytes]:
    files = {}
    for module in modules:
        for path in sorted((ws.results / module).glob("*.*")):
            files[f"{module}/{path.name}"] = path.read_bytes()
    return files


def test_kill_9_mid_decode_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    killed = make_workspace(tmp_path / "killed", shard_size=24)
    build_library(killed.library)
    clean = make_workspace(tmp_path / "clean", shard_size=24)
    shutil.copytree(killed.library, clean.library)  # copy2 keeps mtimes: same versions

    def decoding() -> bool:
        # both shards catalogued first: a kill before a catalog_shard job places its
        # manifest leaves those images to the next run's new batch (other shard names)
        shards = list((killed.results / "catalog/shards").glob("*.tsv"))
        return len(shards) == 2 and any((killed.results / "tiers").glob(".*.tmp"))

    kill_when(killed, decoding, delay=0.5)
    assert (
        not (killed.results / "technical").exists()
        or len(list((killed.results / "technical").glob("*.jsonl"))) < 2
    ), "the run finished before it could be killed"
    rerun_after_kill(killed)
    clean.snakemake()

    assert result_files(killed) == result_files(clean)
    leftovers = [p for p in killed.results.rglob(".*.tmp")]
    assert leftovers == []
    for content in result_files(killed).values():
        paths = [line.split(b'"path": ')[1].split(b",")[0] for line in content.splitlines()]
        assert len(paths) == len(set(paths)) == 24


def test_kill_9_mid_model_job_then_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, tiny_models: dict
) -> None:
    killed = make_workspace(tmp_path / "killed", shard_size=12, **tiny_models)
    build_library(killed.library, count=36)
    clean = make_workspace(tmp_path / "clean", shard_size=12, **tiny_models)
    shutil.copytree(killed.library, clean.library)

    # the embedding job opens its log once torch and the model code are imported
    kill_when(killed, lambda: any((killed.results / "logs/embedding").glob("*.log")), delay=0.3)
    assert not (killed.results / "aesthetic/jobs").exists(), "finished before the kill"
    rerun_after_kill(killed)
    clean.snakemake()

    modules = ("technical", "metadata", "embedding", "aesthetic")
    killed_files, clean_files = result_files(killed, modules), result_files(clean, modules)
    assert set(killed_files) == set(clean_files)
    for name, content in clean_files.items():
        if name.endswith(".npy"):
            np.testing.assert_array_equal(
                np.load(killed.results / name), np.load(clean.results / name)
            )
        else:
            assert killed_files[name] == content, name
    assert [p for p in killed.results.rglob(".*.tmp")] == []
