"""A results folder describes itself: after a run, every command works from `--results`
alone, from another folder, with the library renamed away; in a clone's root the run's
recorded config counts, not ./config.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from imganalyzer.cli.main import build_parser
from imganalyzer.cli.options import load_config
from imganalyzer.config import RESULTS_ENV, load_run_config, run_config_path
from imganalyzer.example.library import EXAMPLE_EXIF, build_example_library
from imganalyzer.web import create_app

from .conftest import REPO, SNAKEMAKE, _env, make_workspace

pytestmark = pytest.mark.slow


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imganalyzer.cli", *args],
        cwd=cwd, capture_output=True, text=True, env=env or _env(), timeout=300,
    )  # fmt: skip


def test_commands_work_from_the_results_folder_alone(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "project")
    build_example_library(ws.library)
    ws.snakemake("-n")
    assert not run_config_path(ws.results).exists()  # a dry run records nothing
    ws.snakemake()
    recorded = load_run_config(ws.results)
    assert recorded["modules"] == ["metadata", "technical"]
    assert recorded["library"] == str(ws.library)

    ws.library.rename(tmp_path / "unmounted")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = str(ws.results)

    status = run("status", "--results", results, "--json", cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["current"] == 14 and counts["modules"]["metadata"]["done"] == 14

    canon = {p for p, exif in EXAMPLE_EXIF.items() if exif.make == "Canon"}
    found = run("search", "canon", "--mode", "text", "--json", "--results", results, cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    assert {hit["path"] for hit in json.loads(found.stdout)} == canon

    exported = run("export", "out", "--format", "csv", "--results", results, cwd=elsewhere)
    assert exported.returncode == 0, exported.stderr
    assert (elsewhere / "out" / "images.csv").is_file()

    # the environment variable, and the folder a command runs in, name the results too
    env = _env() | {RESULTS_ENV: results}
    by_env = run("search", "canon", "--mode", "text", "--json", cwd=elsewhere, env=env)
    assert {hit["path"] for hit in json.loads(by_env.stdout)} == canon
    env = {k: v for k, v in _env().items() if k != RESULTS_ENV}
    inside = run("status", "--json", cwd=ws.results / "catalog", env=env)
    assert json.loads(inside.stdout)["current"] == 14
    models = run("models", "list", "--results", results, cwd=elsewhere)
    assert models.returncode == 0 and "no enabled module loads a model" in models.stdout

    app = create_app(load_run_config(ws.results))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        found = client.get("/api/search", params={"q": "canon", "mode": "hybrid"}).json()
        assert found["mode"] == "text" and "no embeddings" in found["semantic_off"]
        hits = found["hits"]
        assert {hit["path"] for hit in hits} == canon
        assert all(client.get(hit["thumbnail"]).status_code == 200 for hit in hits)
        assert client.get("/api/status").json()["mounted"] is False
        assert client.get("/original", params={"path": sorted(canon)[0]}).status_code == 404


CLONE_FILES = ("Snakefile", "config.yaml", "workflow", "scripts", "envs", "profiles")


def test_in_a_clone_the_recorded_run_counts_and_config_yaml_only_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example in a copy of the clone: ./config.yaml names 9 modules, the run
    2; `status` and the web page there report the 2 that ran; ./config.yaml counts only when
    given with --config; the models commands work from any folder."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in CLONE_FILES:
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, clone / name)
    env = {k: v for k, v in _env().items() if k != RESULTS_ENV}
    assert run("example", cwd=clone, env=env).returncode == 0
    snakemake = [str(SNAKEMAKE), "--cores", "2", "--config", "modules=[metadata,technical]"]
    ran = subprocess.run(snakemake, cwd=clone, capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr

    recorded = clone / "results" / "run" / "config.yaml"
    status = run("status", "--json", cwd=clone, env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert list(report["modules"]) == ["metadata", "technical"]
    assert report["config"] == f"the recorded run config {recorded}"
    assert all(counts["pending"] == 0 for counts in report["modules"].values())
    text = run("status", cwd=clone, env=env).stdout
    assert text.startswith(f"config:       the recorded run config {recorded}\n")

    monkeypatch.chdir(clone)  # the web page `imganalyzer serve` starts there
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    served = load_config(build_parser().parse_args(["serve"]))
    with TestClient(create_app(served), base_url="http://127.0.0.1") as client:
        assert list(client.get("/api/status").json()["modules"]) == ["metadata", "technical"]

    given = run("status", "--json", "--config", "config.yaml", cwd=clone, env=env)
    assert len(json.loads(given.stdout)["modules"]) == 9  # config.yaml's, when asked for
    assert json.loads(given.stdout)["config"].endswith(", with config.yaml on top")

    models = run("models", "list", cwd=clone, env=env)
    assert models.stdout.splitlines()[:2] == [
        f"config: the recorded run config {recorded}",
        "no enabled module loads a model (see modules: in the config)",
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    models = run("models", "list", cwd=elsewhere, env=env)
    assert models.returncode == 0, models.stderr
    assert models.stdout.startswith("config: the packaged defaults")
    assert "embedding" in models.stdout
    lost = run("status", cwd=elsewhere, env=env)
    assert lost.returncode == 2 and "--results" in lost.stderr and RESULTS_ENV in lost.stderr
