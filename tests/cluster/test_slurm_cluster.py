"""The cluster helper without starting anything: its slurm.conf offers what profiles/slurm
asks for, and it says why it cannot run rather than fail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ..e2e.conftest import REPO
from . import slurm_cluster
from .slurm_cluster import missing_reason, slurm_conf


def test_the_test_cluster_has_every_partition_the_profile_names(tmp_path: Path) -> None:
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    named = {profile["default-resources"]["slurm_partition"]}
    named |= {r["slurm_partition"] for r in profile["set-resources"].values()}
    conf = slurm_conf(tmp_path, "node1")
    assert set(re.findall(r"^PartitionName=(\w+)", conf, re.MULTILINE)) == named == {"cpu", "gpu"}
    assert "Gres=gpu:1" in conf
    ports = re.findall(r"^Slurm(?:ctld|d)Port=(\d+)$", conf, re.MULTILINE)
    assert len(set(ports)) == 2


def test_a_machine_without_slurm_gets_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm_cluster, "DAEMONS", ("/nonexistent/slurmd",))
    reason = missing_reason()
    assert reason and "SLURM is not installed" in reason and "/nonexistent/slurmd" in reason


def test_a_foreign_slurm_configuration_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slurm_cluster, "DAEMONS", ())
    monkeypatch.setattr(slurm_cluster, "CLIENTS", ())
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(slurm_cluster, "ETC", tmp_path)
    (tmp_path / "slurm.conf").write_text("ClusterName=production\n")
    assert "SLURM configuration that the tests keep" in missing_reason()
    (tmp_path / "slurm.conf").write_text(slurm_cluster.MARKER + "ClusterName=leftover\n")
    assert missing_reason() is None  # a killed run's leftover is ours to replace
