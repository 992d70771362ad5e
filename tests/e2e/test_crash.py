"""kill -9 of the whole run in the middle of decoding, then a re-run: results equal an
uninterrupted run, no partial file is left, no row is duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from imganalyzer.samples import write_jpeg

from .conftest import REPO, SNAKEMAKE, Workspace, make_workspace

pytestmark = pytest.mark.slow


def build_library(library: Path, count: int = 48) -> None:
    base = np.asarray(Image.fromarray(data.coffee()).resize((2400, 1600)))
    for index in range(count):
        write_jpeg(library / f"{index:03d}.jpg", np.roll(base, index * 7, axis=1))


def kill_during_decode(ws: Workspace) -> None:
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(ws.config)]
    process = subprocess.Popen(
        [*command, "--cores", "2"],
        cwd=ws.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list((ws.results / "tiers").glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the decode job get well into its shard
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def result_files(ws: Workspace) -> dict[str, bytes]:
    files = {}
    for module in ("technical", "metadata"):
        for path in sorted((ws.results / module).glob("*.jsonl")):
            files[f"{module}/{path.name}"] = path.read_bytes()
    return files


def test_kill_9_mid_decode_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    killed = make_workspace(tmp_path / "killed", shard_size=24)
    build_library(killed.library)
    clean = make_workspace(tmp_path / "clean", shard_size=24)
    shutil.copytree(killed.library, clean.library)  # copy2 keeps mtimes: same versions

    kill_during_decode(killed)
    assert (
        not (killed.results / "technical").exists()
        or len(list((killed.results / "technical").glob("*.jsonl"))) < 2
    ), "the run finished before it could be killed"
    killed.snakemake("--unlock")  # the lock a killed Snakemake leaves, as a user would
    killed.snakemake()
    clean.snakemake()

    assert result_files(killed) == result_files(clean)
    leftovers = [p for p in killed.results.rglob(".*.tmp")]
    assert leftovers == []
    for content in result_files(killed).values():
        paths = [line.split(b'"path": ')[1].split(b",")[0] for line in content.splitlines()]
        assert len(paths) == len(set(paths)) == 24
