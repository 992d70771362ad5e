"""`imganalyzer example` run again over an analysed example library: nothing is rewritten and
the next workflow run has nothing to do (it once reported all 14 photos "moved")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Workspace, make_workspace

pytestmark = pytest.mark.slow


def example(ws: Workspace) -> str:
    command = [sys.executable, "-m", "imganalyzer.cli", "example", str(ws.library)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def file_versions(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_example_again_rewrites_nothing_and_the_next_run_has_nothing_to_do(
    tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    assert "wrote 14 example photos" in example(ws)
    ws.snakemake()
    before = file_versions(ws.library)
    assert "the 14 example photos" in example(ws) and "up to date" in example(ws)
    assert file_versions(ws.library) == before
    dry_run = ws.snakemake("-n")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr
    run = ws.snakemake()
    output = run.stdout + run.stderr
    assert "14 images scanned, nothing new" in output
    assert "0 new or changed, 0 moved, 0 removed images" in output  # the run's summary
