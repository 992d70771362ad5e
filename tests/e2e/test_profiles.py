"""The workflow profiles: the SLURM one dry-runs without a cluster."""

from __future__ import annotations

import re

import pytest
import yaml

from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout

from .conftest import REPO, Workspace, build_test_library

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


def test_default_profile_leaves_code_out_of_rerun_triggers() -> None:
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert "code" not in profile["rerun-triggers"]
    assert profile["scheduler"] == "greedy"
