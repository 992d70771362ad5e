"""Moving a folder of analysed photos re-analyses nothing: the results follow the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from imganalyzer.example.writers import write_jpeg

from .conftest import Workspace, make_workspace

pytestmark = pytest.mark.slow

MOVED = 50  # the folder of 50 analysed images
OLD, NEW = "trip", "2024/summer/trip renamed"


def build_library(library: Path) -> None:
    """MOVED distinct small photos in one folder, and two elsewhere."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for index in range(MOVED):
        source = sources[index % len(sources)][::4, ::4]
        write_jpeg(library / OLD / f"{index:02d}.jpg", np.roll(source, 7 * index, axis=1))
    write_jpeg(library / "home/cat.jpg", data.chelsea()[::2, ::2])
    write_jpeg(library / "home/coffee.jpg", data.coffee()[::2, ::2])


def job_outputs(ws: Workspace) -> dict[str, int]:
    """Logs and benchmarks of every per-shard and per-job rule (not the global steps)."""
    found = {}
    for folder in ("logs", "benchmarks"):
        for path in (ws.results / folder).rglob("*"):
            if path.is_file() and path.parent.name in ("decode", "metadata", "embedding"):
                found[str(path.relative_to(ws.results))] = path.stat().st_mtime_ns
    return found


def search(ws: Workspace, *args: str) -> list[str]:
    printed = ws.imganalyzer("search", *args, "--mode", "text", "--limit", "100", "--json").stdout
    return sorted(hit["path"] for hit in json.loads(printed))


def scores(hits: list[dict]) -> dict[str, float]:
    return {hit["path"]: hit["score"] for hit in hits}


def test_a_moved_folder_keeps_its_results_and_is_found_at_its_new_place(
    tmp_path: Path, tiny_models: dict
) -> None:
    settings = tiny_models | {"modules": ["metadata", "technical", "embedding"]}
    ws = make_workspace(tmp_path, **settings)
    build_library(ws.library)
    ws.snakemake()
    old_paths = [f"{OLD}/{i:02d}.jpg" for i in range(MOVED)]
    new_paths = [f"{NEW}/{i:02d}.jpg" for i in range(MOVED)]
    assert search(ws, "", "--folder", OLD) == old_paths
    jobs_before = job_outputs(ws)
    index_log = ws.results / "logs/index/index.log"
    index_log_before = index_log.stat().st_mtime_ns
    similar_before = json.loads(
        ws.imganalyzer("similar", f"{OLD}/05.jpg", "--limit", "100", "--json").stdout
    )

    (ws.library / NEW).parent.mkdir(parents=True)
    shutil.move(ws.library / OLD, ws.library / NEW)
    run = ws.snakemake()
    printed = run.stdout + run.stderr
    assert f"{MOVED} moved" in printed
    for rule in ("decode", "metadata", "embedding"):
        assert f"rule {rule}:" not in printed and f"Rule: {rule}" not in printed, rule
    # the index rule ran: a move changes its parameter
    assert index_log.stat().st_mtime_ns != index_log_before
    assert job_outputs(ws) == jobs_before  # no decode and no model job ran
    assert sorted(p.stem for p in (ws.results / "catalog/shards").glob("*.tsv")) == ["000001-00000"]

    assert search(ws, "", "--folder", NEW) == new_paths
    assert search(ws, "", "--folder", OLD) == []
    assert search(ws, "renamed") == new_paths  # the new folder's words
    similar = json.loads(
        ws.imganalyzer("similar", f"{NEW}/05.jpg", "--limit", "100", "--json").stdout
    )
    # the same neighbours at their new paths (ties may swap: their order follows the key)
    assert scores(similar) == {
        h["path"].replace(f"{OLD}/", f"{NEW}/", 1): h["score"] for h in similar_before
    }
    status = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert status["current"] == MOVED + 2
    assert (status["removed"], status["uncatalogued"]) == (0, 0)

    again = ws.snakemake()
    assert "Nothing to be done" in again.stdout + again.stderr
