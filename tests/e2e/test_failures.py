"""Runs that never stall: a module whose model cannot be loaded fails alone (the other
modules, the index and the report run, the failure is reported and retried, only it); so
does a decode job that cannot write its tiers; missing models stop a run before any job;
dry-runs write nothing; one run per results folder."""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from imganalyzer.example.writers import write_jpeg
from imganalyzer.layout import Layout
from imganalyzer.runlock import acquire_results_lock, release_results_lock
from imganalyzer.store import ResultsStore

from .conftest import GPS_EXIF, Workspace, make_workspace

pytestmark = pytest.mark.slow


def small_library(ws: Workspace) -> None:
    write_jpeg(ws.library / "trip/paris.jpg", data.coffee(), GPS_EXIF)
    write_jpeg(ws.library / "trip/cat.jpg", data.chelsea())
    write_jpeg(ws.library / "home/astronaut.jpg", data.astronaut())


def search(ws: Workspace, *words: str) -> set[str]:
    found = ws.imganalyzer("search", *words, "--mode", "text", "--json").stdout
    return {hit["path"] for hit in json.loads(found)}


def files_under(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_an_unloadable_model_fails_only_its_module_and_is_retried_alone(
    tmp_path: Path, tiny_models: dict
) -> None:
    clip = tmp_path / "clip"
    shutil.copytree(tiny_models["embedding"]["model"].removeprefix("local-dir:"), clip)
    weights = clip / "open_clip_pytorch_model.bin"
    good_weights = weights.read_bytes()
    weights.write_bytes(b"not a checkpoint")  # present (preflight passes), unloadable
    models = tiny_models | {"embedding": tiny_models["embedding"] | {"model": f"local-dir:{clip}"}}
    ws = make_workspace(tmp_path / "ws", **models)
    small_library(ws)

    first = ws.snakemake(check=False)
    output = first.stdout + first.stderr
    assert first.returncode != 0, output
    # the other modules, the index and the report ran
    assert search(ws, "FUJIFILM") == {"trip/paris.jpg"}
    assert (ws.results / "report/modules.json").is_file()
    # the failure is reported with its log: at the end of the run and in the record
    failures = sorted(p.name for p in ws.results.glob("*/failed/*.json"))
    assert failures == ["000001-00000-00000.json"] * 2  # embedding, and aesthetic needs it
    record = json.loads(next((ws.results / "embedding/failed").glob("*.json")).read_text())
    assert record["module"] == "embedding" and Path(record["log"]).is_file()
    assert "job failed" in Path(record["log"]).read_text() or record["error"]
    assert "embedding" in output and "1 failed" in output and record["log"] in output
    status = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert {(f["module"], f["job"]) for f in status["failed_jobs"]} == {
        ("embedding", "000001-00000-00000"),
        ("aesthetic", "000001-00000-00000"),
    }
    aesthetic = json.loads(next((ws.results / "aesthetic/failed").glob("*.json")).read_text())
    assert "needs the embedding job" in aesthetic["error"]

    # a photo added while the model is broken is searchable by the modules that work
    write_jpeg(ws.library / "new/rocket.jpg", data.rocket(), GPS_EXIF)
    second = ws.snakemake(check=False)
    assert second.returncode != 0
    assert search(ws, "FUJIFILM") == {"trip/paris.jpg", "new/rocket.jpg"}

    # fixed: the next run re-runs only the failed jobs, and succeeds
    weights.write_bytes(good_weights)
    decoded = files_under(ws.results / "technical")
    third = ws.snakemake()
    ran = third.stdout + third.stderr
    assert "rule decode" not in ran and "rule metadata" not in ran
    assert files_under(ws.results / "technical") == decoded
    assert ResultsStore(Layout(ws.results)).failures() == []  # the records say "retried"
    assert (ws.results / "embedding/000002-00000.npy").is_file()
    # progress inside the jobs, in their logs: images done / total and the rate
    embedding_log = (ws.results / "logs/embedding/000002-00000-00000.log").read_text()
    assert "embedding: 1/1 images" in embedding_log and "images/s" in embedding_log
    decode_log = (ws.results / "logs/decode/000002-00000.log").read_text()
    assert "decode 000002-00000: 1/1 images" in decode_log
    fourth = ws.snakemake()
    nothing = fourth.stdout + fourth.stderr
    assert "Nothing to be done" in nothing
    # the summary ends every run, one with nothing to do too
    assert "imganalyzer: 0 new or changed, 0 moved, 0 removed images" in nothing
    assert "embedding   0 done, 0 image errors" in nothing


# Under this file-size limit (what a full disk or a quota does to a write, as a real OSError:
# "File too large") a 1024 px tier of a photo of pure noise (~700 KB) cannot be written; the
# other files of a small run (manifests, rows, thumbnails, the index) stay far below it.
FILE_SIZE_LIMIT = 400 * 1024


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_decode_job_that_cannot_write_fails_alone_and_is_retried_alone(
    tmp_path: Path, tiny_models: dict
) -> None:
    modules = ["metadata", "technical", "duplicates", "embedding"]
    ws = make_workspace(
        tmp_path, **tiny_models | {"modules": modules, "tiers": {"detect": 1024, "clip": 160}}
    )
    small_library(ws)
    ws.snakemake()
    noise = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    write_jpeg(ws.library / "new/noise.jpg", noise, GPS_EXIF)

    failing = ws.snakemake(check=False, preexec_fn=limit_file_size)
    output = failing.stdout + failing.stderr
    assert failing.returncode == 1, output  # the run ends, saying that a job failed
    record = json.loads((ws.results / "decode/failed/000002-00000.json").read_text())
    assert record["error_type"] == "OSError" and "File too large" in record["error"]
    assert Path(record["log"]).is_file() and record["log"] in output
    assert "decode      1 failed" in output and "Traceback" not in failing.stdout
    # the index ran: the new photo is found by its metadata, which did not fail
    assert search(ws, "FUJIFILM") == {"trip/paris.jpg", "new/noise.jpg"}
    # the jobs that read the failed decode's tiers fail naming it; the others ran
    failed = {(f["module"], f["job"]) for f in ResultsStore(Layout(ws.results)).failures()}
    assert failed == {
        ("decode", "000002-00000"),
        ("duplicates", "000002-00000"),
        ("embedding", "000002-00000-00000"),
    }
    embedding = json.loads((ws.results / "embedding/failed/000002-00000-00000.json").read_text())
    assert "needs the decode job 000002-00000" in embedding["error"]
    assert (ws.results / "duplicates/groups.json").is_file()
    status = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert ("decode", "000002-00000") in {(f["module"], f["job"]) for f in status["failed_jobs"]}
    assert status["modules"]["technical"]["pending"] == 1  # not an image error: not done yet
    assert status["modules"]["metadata"]["pending"] == 0

    # the limit lifted: the next run retries the failed jobs only, and they succeed
    retry = ws.snakemake()
    ran = retry.stdout + retry.stderr
    assert ran.count("rule decode:") == 1 and "wildcards: shard=000002-00000" in ran
    assert "rule metadata:" not in ran and ran.count("rule duplicate_hashes:") == 1
    assert ResultsStore(Layout(ws.results)).failures() == []  # the records say "retried"
    technical = (ws.results / "technical/000002-00000.jsonl").read_text().splitlines()
    assert len(technical) == 1 and json.loads(technical[0])["status"] == "ok"
    nothing = ws.snakemake()
    assert "Nothing to be done" in nothing.stderr + nothing.stdout
    assert "0 new or changed" in nothing.stderr + nothing.stdout


def test_missing_models_stop_the_run_before_any_job_with_one_message(
    tmp_path: Path, tiny_models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws = make_workspace(
        tmp_path,
        **tiny_models
        | {
            "modules": ["metadata", "technical", "embedding", "aesthetic", "objects", "faces"],
            "embedding": {"model": f"local-dir:{tmp_path / 'no-such-clip'}"},
            "objects": {"model": "IDEA-Research/grounding-dino-tiny"},
            "faces": {"pack": str(tmp_path / "no-such-pack")},
        },
    )
    small_library(ws)
    for dry in (True, False):
        started = time.monotonic()
        result = ws.snakemake(*(["-n"] if dry else []), check=False)
        elapsed = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert output.count("Configured models are missing") == 1, output
        for missing in ("no-such-clip", "grounding-dino-tiny", "no-such-pack"):
            assert missing in output
        assert "HF_HUB_OFFLINE" in output and "imganalyzer models fetch" in output
        assert "modules='[metadata, technical]'" in output  # aesthetic needs embedding
        assert "Traceback" not in output
        assert not ws.results.exists()
        assert elapsed < 60  # no network retries (the whole run, on a loaded machine)


def test_dry_run_and_lint_write_nothing_and_nested_overrides_work(workspace: Workspace) -> None:
    ws = workspace
    ws.snakemake("-n", "--config", "tiers={detect: 2048, clip: 300}")
    ws.snakemake("--lint", check=False)
    assert not ws.results.exists()
    previous = os.umask(0o022)
    try:
        ws.snakemake()
    finally:
        os.umask(previous)
    # results are readable by others (umask 022), the index folder too
    for path in [ws.results, *ws.results.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink():
            assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    write_jpeg(ws.library / "2024/new.jpg", data.astronaut())
    before = files_under(ws.results)
    plan = ws.snakemake("-n")
    assert "catalog_shard" in plan.stdout + plan.stderr  # the new shard is planned
    ws.snakemake("--lint", check=False)
    assert files_under(ws.results) == before


def test_a_second_run_on_the_same_results_stops_naming_the_first(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    small_library(ws)
    elsewhere = tmp_path / "elsewhere"  # another working folder, the same results folder
    elsewhere.mkdir()
    acquire_results_lock(Layout(ws.results))
    try:
        blocked = Workspace(elsewhere, ws.library, ws.results, ws.config).snakemake(check=False)
    finally:
        release_results_lock(Layout(ws.results))
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0
    assert "in use by another run" in output and f"pid {os.getpid()}" in output
    assert str(ws.results) in output and "Traceback" not in output
    assert not (ws.results / "catalog/shards").exists()  # it stopped before writing
    ws.snakemake()
    assert (ws.results / "index/BUILT").is_file()
