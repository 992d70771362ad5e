"""A real single-node SLURM cluster per test module, stopped in the fixture's teardown."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ..e2e.conftest import tiny_models  # noqa: F401  (a fixture the cluster tests use)
from .slurm_cluster import SlurmCluster, missing_reason, new_cluster_folder


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(new_cluster_folder())
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
