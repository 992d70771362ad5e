"""The workflow profiles: the SLURM one dry-runs without a cluster."""

from __future__ import annotations

import re

import pytest
import yaml

from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout

from .conftest import REPO, Workspace, build_test_library, make_workspace

pytestmark = pytest.mark.slow


def test_slurm_profile_dry_run_plans_every_shard_job(workspace: Workspace) -> None:
    result = workspace.snakemake(
        "--workflow-profile", str(REPO / "profiles/slurm"), "--executor", "slurm", "-n"
    )
    output = result.stdout + result.stderr
    assert "profiles/slurm" in output
    for rule in ("decode", "metadata", "embedding", "aesthetic"):
        assert re.search(rf"^{rule}\s+1$", output, re.MULTILINE), rule


def test_cluster_job_reparse_never_scans_or_writes_the_catalog(workspace: Workspace) -> None:
    # the catalog as the main process of a run leaves it (a dry-run writes nothing)
    Catalog(Layout(workspace.results)).ingest(workspace.library, 100, [workspace.results])
    shards = sorted((workspace.results / "catalog/shards").iterdir())
    assert shards
    build_test_library(workspace.library / "more")  # new files a cluster job must not catalogue
    # what a cluster job runs: the same Snakefile re-parsed as a non-main process
    workspace.snakemake("--mode", "remote", "-n")
    assert sorted((workspace.results / "catalog/shards").iterdir()) == shards


@pytest.mark.parametrize("name", ["default", "slurm"])
def test_profiles_leave_code_and_software_env_out_of_rerun_triggers(name: str) -> None:
    # software-env hashes envs/imganalyzer.yaml's text and path (with --sdm conda): a line
    # added there by an upgrade would re-run every job (tests/e2e/test_upgrade.py)
    profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert profile["rerun-triggers"] == ["mtime", "params", "input"]
    assert profile["scheduler"] == "greedy"


def job_resources(output: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources its jobs declare, from a dry-run's job listing."""
    found: dict[str, dict[str, str]] = {}
    for rule, resources in re.findall(
        r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", output, re.M
    ):
        found[rule] = dict(item.split("=", 1) for item in resources.split(", "))
    return found


def test_two_gpu_jobs_share_a_gpu_when_the_resources_give_gpu_memory(
    tmp_path, tiny_models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imganalyzer.runtime.gpushare import JOBS_PER_GPU

    monkeypatch.setenv("IMGANALYZER_PREFLIGHT", "0")  # plans only: no BLIP-2 or DINO here
    modules = ["metadata", "technical", "embedding", "objects", "captions"]
    ws = make_workspace(tmp_path, **(tiny_models | {"device": "auto", "modules": modules}))
    build_test_library(ws.library)
    shared = ws.snakemake("-n", "--resources", "gpu=1", "gpu_mem_mb=40000")
    output = shared.stdout + shared.stderr
    assert "GPU sharing: up to 2 GPU jobs per GPU (1 GPU) within 40000 MB" in output
    claims = job_resources(output)
    memory = {
        rule: int(claims[rule]["gpu_mem_mb"]) for rule in ("embedding", "objects", "captions")
    }
    assert {claims[rule]["gpu"] for rule in memory} == {"1"}  # one slot each, of 1 x 2
    assert memory == {"embedding": 4000, "objects": 8000, "captions": 24000}
    # what the scheduler then allows: any two of them at once (2 slots, 36000 MB at most)
    assert JOBS_PER_GPU == 2 and sum(sorted(memory.values())[-2:]) <= 40000
    # a GPU too small for two: each job alone still fits (its claim is capped at the GPU)
    small = job_resources(ws.snakemake("-n", "--resources", "gpu=1", "gpu_mem_mb=16000").stdout)
    assert int(small["captions"]["gpu_mem_mb"]) == 16000
    # --resources gpu=1 alone: one GPU job at a time, as before
    alone = ws.snakemake("-n", "--resources", "gpu=1")
    assert "GPU sharing" not in alone.stdout + alone.stderr
    claims = job_resources(alone.stdout + alone.stderr)
    assert {claims[r]["gpu"] for r in memory} == {"1"}
    assert {claims[r]["gpu_mem_mb"] for r in memory} == {"0"}
