"""Upgrading the code re-runs no job of an existing library (DESIGN.md, "Re-runs"): a results
folder made by the workflow of an earlier commit (BASE), every module on, is taken over by
this one with at most the cheap global steps re-run; a settings change still re-runs its
module.

BASE's tree comes from ``git archive`` (nothing is written to the repository); the test
skips where git or the commit is missing (a shallow clone). Its workflow runs with BASE's
package first on PYTHONPATH; the tiny models and the library are this tree's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from imganalyzer.catalog.manifests import SHARD_ID_PATTERN
from imganalyzer.runtime.registry import MODELS
from tests.support.fake_vision_api import FakeVisionApi

from .conftest import REPO, SNAKEMAKE, Workspace, _env
from .test_all_modules import KEY, KEY_VARIABLE, SIGN, everything_workspace

pytestmark = pytest.mark.slow

# The earlier commit whose results folder is upgraded: before the registry-generated model
# rules, QuietSettings, shard-job retry params, versions.py and the browse table.
BASE = "86ba94a"
# The global steps, cheap at any library size: they may re-run after an upgrade.
GLOBAL_STEPS = {"library_view", "people", "duplicates", "index", "xmp", "benchmark_report"}
# Per-shard or model rules whose version string was bumped since BASE because their output
# changed: these re-run on purpose (none so far).
RERUN_ON_PURPOSE: frozenset[str] = frozenset()
# A file of a shard or model job names its shard; the index keeps a browse part per shard.
SHARD_FILE = re.compile(rf"^(?!index/).*{SHARD_ID_PATTERN}")
JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", re.MULTILINE)


@pytest.fixture(scope="session")  # before the tiny models: a skip builds none
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BASE's tracked files, unpacked in a temporary folder."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("no git repository to take the earlier commit from")
    found = subprocess.run(
        [git, "-C", str(REPO), "cat-file", "-e", f"{BASE}^{{commit}}"], capture_output=True
    )
    if found.returncode != 0:
        pytest.skip(f"commit {BASE} is not in this clone (a shallow clone?)")
    archive = subprocess.run(
        [git, "-C", str(REPO), "archive", "--format=tar", BASE], capture_output=True, check=True
    ).stdout
    tree = tmp_path_factory.mktemp("base")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_base(ws: Workspace, tree: Path) -> str:
    """BASE's workflow (its Snakefile, profile and package) on ``ws``: its output."""
    env = _env() | {"PYTHONPATH": str(tree)}
    imported = subprocess.run(
        [sys.executable, "-c", "import imganalyzer; print(imganalyzer.__file__)"],
        cwd=ws.root, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert Path(imported.strip()).is_relative_to(tree), imported
    command = [str(SNAKEMAKE), "--snakefile", str(tree / "Snakefile"),
               "--configfile", str(ws.config), "--cores", "2"]  # fmt: skip
    result = subprocess.run(
        command, cwd=ws.root, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{BASE}'s workflow failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def planned(output: str) -> dict[str, str]:
    """Rule -> the reason of its (last) job, from a dry-run's or a run's job listing."""
    jobs = {}
    for rule, body in JOB.findall(output):
        fields = dict(line.strip().split(": ", 1) for line in body.splitlines() if ": " in line)
        jobs[rule] = fields.get("reason", "")
    jobs.pop("all", None)
    return jobs


def file_times(results: Path) -> dict[str, int]:
    return {
        str(path.relative_to(results)): path.stat().st_mtime_ns
        for path in results.rglob("*")
        if path.is_file()
    }


def with_settings(ws: Workspace, module: str, **settings: object) -> Workspace:
    """``ws`` with another config file: ``module``'s section changed by ``settings``."""
    config = yaml.safe_load(ws.config.read_text())
    config[module] = config.get(module, {}) | settings
    path = ws.root / f"config-{module}.yaml"
    path.write_text(yaml.safe_dump(config))
    return replace(ws, config=path)


def test_an_upgrade_reruns_no_shard_or_model_job_of_an_existing_library(
    tmp_path: Path,
    base_tree: Path,
    tiny_models: dict,
    tiny_vision_models: dict,
    api: FakeVisionApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    ws = everything_workspace(tmp_path, tiny_models, tiny_vision_models, api)
    ran = planned(run_base(ws, base_tree))
    assert set(MODELS) <= set(ran), ran  # BASE ran every model module
    sent = len(api.requests)
    assert sent > 0

    plan = planned(ws.snakemake("-n").stdout)
    allowed = GLOBAL_STEPS | RERUN_ON_PURPOSE
    assert set(plan) <= allowed, f"re-run after the upgrade: {plan}"

    before = file_times(ws.results)
    run = ws.snakemake()
    assert set(planned(run.stdout + run.stderr)) == set(plan)
    after = file_times(ws.results)
    written = {path for path, time in after.items() if before.get(path) != time}
    assert not [path for path in written if SHARD_FILE.match(path)], sorted(written)
    assert len(api.requests) == sent  # no image described twice
    assert "Nothing to be done" in ws.snakemake("-n").stdout

    hits = json.loads(ws.imganalyzer("search", "hello", "--mode", "text", "--json").stdout)
    assert [hit["path"] for hit in hits] == [SIGN]
    status = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert {m: s["pending"] for m, s in status["modules"].items()} == dict.fromkeys(
        yaml.safe_load(ws.config.read_text())["modules"], 0
    )

    # the user's own settings still count: a changed setting re-runs its module, and so
    # does a setting added since BASE (a QuietSettings key) once set away from its default
    fewer_tokens = planned(with_settings(ws, "captions", max_new_tokens=5).snakemake("-n").stdout)
    assert "captions" in fewer_tokens and "objects" not in fewer_tokens
    assert "Params have changed" in fewer_tokens["captions"]
    larger = planned(
        with_settings(ws, "objects", input_short_edge=[320, 800]).snakemake("-n").stdout
    )
    assert "objects" in larger and "captions" not in larger
    assert "Params have changed" in larger["objects"]
