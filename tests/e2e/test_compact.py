"""Compaction merges the shards of small imports without recomputing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.example.writers import write_jpeg
from imganalyzer.results import read_rows

from .conftest import REPO, Workspace, _env, make_workspace

pytestmark = pytest.mark.slow
MODULES = ("metadata", "technical", "embedding", "aesthetic")


def current_results(ws: Workspace) -> dict[str, dict]:
    """module -> path -> row (and the vector) of every current image."""
    shards = sorted(p.stem for p in (ws.results / "catalog/shards").glob("*.tsv"))
    current = {}
    for module in MODULES:
        by_path = current.setdefault(module, {})
        for shard in shards:
            for row in read_rows(ws.results / module / f"{shard}.jsonl"):
                by_path[row["path"]] = row
    vectors = current.setdefault("vectors", {})
    for shard in shards:
        matrix = np.load(ws.results / "embedding" / f"{shard}.npy")
        entries = read_manifest(ws.results / "catalog/shards" / f"{shard}.tsv")
        vectors.update(
            {e.path: (e.size, e.mtime_ns, matrix[i].tolist()) for i, e in enumerate(entries)}
        )
    on_disk = {
        str(p.relative_to(ws.library)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in ws.library.rglob("*.jpg")
    }
    for by_path in current.values():
        for path in list(by_path):
            row = by_path[path]
            version = row[:2] if isinstance(row, tuple) else (row["size"], row["mtime_ns"])
            if on_disk.get(path) != version:
                del by_path[path]
    return current


def test_compaction_merges_small_imports_and_changes_no_result(
    tmp_path: Path, tiny_models: dict
) -> None:
    ws = make_workspace(tmp_path, shard_size=10, **tiny_models)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for day in range(4):  # four small imports: four batches of one shard each
        for index, photo in enumerate(photos[: day + 1]):
            write_jpeg(ws.library / f"day{day}/{index}.jpg", np.roll(photo, day, axis=0))
        ws.snakemake()
    (ws.library / "day1/0.jpg").unlink()  # removed
    write_jpeg(ws.library / "day2/0.jpg", data.camera()[..., None].repeat(3, axis=2))
    os.utime(ws.library / "day2/0.jpg", ns=(1_900_000_000_000_000_000,) * 2)
    ws.snakemake()  # the edit: a fifth small batch
    before_status = json.loads(ws.imganalyzer("status", "--json").stdout)
    before = current_results(ws)
    query = ("search", "day", "--limit", "50", "--json")
    found_before = json.loads(ws.imganalyzer(*query).stdout)
    assert len(found_before) == 9
    assert len(list((ws.results / "catalog/shards").glob("*.tsv"))) == 5

    printed = ws.imganalyzer("compact").stdout
    assert "5 shards of 5 small imports -> 1 shard(s) (9 current images)" in printed
    assert [p.stem for p in (ws.results / "catalog/shards").glob("*.tsv")] == ["000006-00000"]
    assert current_results(ws) == before
    after_status = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert after_status["current"] == before_status["current"] == 9
    assert after_status["modules"] == before_status["modules"]

    rerun = ws.snakemake()
    output = rerun.stdout + rerun.stderr
    for rule in ("decode", "metadata", "embedding", "aesthetic"):
        assert f"rule {rule}:" not in output and f"Rule: {rule}" not in output, rule
    assert "Nothing to be done" in ws.snakemake().stdout + ws.snakemake().stderr
    # the index, updated by that run, answers as before
    found_after = json.loads(ws.imganalyzer(*query).stdout)
    assert sorted(h["path"] for h in found_after) == sorted(h["path"] for h in found_before)


def lock_holder_pid(results: Path) -> int | None:
    try:
        return json.loads((results / ".imganalyzer-run.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def test_compact_refuses_while_a_run_holds_the_results_naming_it(
    tmp_path: Path, tiny_models: dict
) -> None:
    ws = make_workspace(tmp_path, shard_size=10, **tiny_models)
    for day in range(2):
        write_jpeg(ws.library / f"day{day}/0.jpg", np.roll(data.astronaut(), day, axis=0))
        ws.snakemake()
    shards = sorted((ws.results / "catalog/shards").glob("*.tsv"))
    write_jpeg(ws.library / "day2/0.jpg", data.coffee())
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    command += ["--configfile", str(ws.config), "--cores", "2"]
    with subprocess.Popen(command, cwd=ws.root, env=_env(), stdout=subprocess.DEVNULL) as run:
        try:
            deadline = time.monotonic() + 120
            while lock_holder_pid(ws.results) != run.pid and run.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            refused = subprocess.run(
                [sys.executable, "-m", "imganalyzer.cli", "compact", "--config", str(ws.config)],
                cwd=ws.root, env=_env(), capture_output=True, text=True,
            )  # fmt: skip
            assert run.poll() is None, "the run ended before compact was tried"
        finally:
            assert run.wait(timeout=300) == 0
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"in use by another run (pid {run.pid}" in refused.stderr
    assert str(ws.root) in refused.stderr and "Traceback" not in refused.stderr
    assert sorted((ws.results / "catalog/shards").glob("*.tsv"))[:2] == shards  # untouched
    assert "3 shards of 3 small imports" in ws.imganalyzer("compact").stdout  # free again


# A compaction that takes a while (a large library): the real compact(), its work slowed.
SLOW_COMPACT = """
import sys, time
import imganalyzer.steps.compact as compact
work = compact._compact
def slow(layout, config):
    print("compacting", flush=True)
    time.sleep(30)
    return work(layout, config)
compact._compact = slow
from imganalyzer.cli.main import main
sys.exit(main(["compact", "--config", sys.argv[1]]))
"""


def test_a_run_refuses_while_compact_holds_the_results_naming_it(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    write_jpeg(ws.library / "a.jpg", data.astronaut())
    ws.snakemake()
    with subprocess.Popen(
        [sys.executable, "-c", SLOW_COMPACT, str(ws.config)], cwd=ws.root, env=_env(),
        stdout=subprocess.PIPE, text=True,
    ) as compacting:  # fmt: skip
        try:
            assert compacting.stdout.readline().strip() == "compacting"
            write_jpeg(ws.library / "b.jpg", data.coffee())
            blocked = ws.snakemake(check=False)
        finally:
            compacting.kill()
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0
    assert f"in use by another run (pid {compacting.pid}" in output and "Traceback" not in output
    assert not (ws.results / "catalog/shards/000002-00000.tsv").exists()  # nothing written
    ws.snakemake()
    assert (ws.results / "catalog/shards/000002-00000.tsv").exists()
