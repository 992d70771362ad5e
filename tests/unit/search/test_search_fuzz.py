"""Thousands of random queries and option values thrown at search, through the library
function and the command line's argument handling: each gets a result or a clean one-line
error, never a traceback, panic or signal. Hypothesis runs in a child process so that a
crash inside Tantivy fails this test (naming the input) instead of killing pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imganalyzer.search.index import update_index
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

pytest.importorskip("hypothesis")
pytestmark = pytest.mark.slow  # about a minute and a half of fuzzing

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = 2000  # search; similar a quarter of that, the command line half


def test_random_queries_and_options_get_results_or_clean_errors(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path / "lib")
    photos = sample_photos()
    hostile = Photo(
        os.fsdecode(b"2023/caf\xe9/caf\xe9.jpg"), caption="a cup", vector=unit_vector(9)
    )
    lib.add_shard([*photos[:3], hostile])
    lib.add_shard(photos[3:])
    update_index(lib.layout, lib.library)
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    last_input = tmp_path / "last_input.txt"
    command = [sys.executable, "-m", "tests.support.search_fuzz", str(lib.results), str(config)]
    run = subprocess.run(
        [*command, str(EXAMPLES), str(last_input)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tried = last_input.read_text(encoding="utf-8") if last_input.exists() else "?"
    assert run.returncode == 0, (
        f"exit {run.returncode} on input {tried[:2000]}\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    )
    assert "fuzz done" in run.stdout
