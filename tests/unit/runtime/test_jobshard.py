"""One shard of a model job as a model sees it: entries, the rows and arrays it reads, and
its tier store, which a model without a tier may not ask for."""

from __future__ import annotations

import pytest

from imganalyzer.catalog.manifests import Entry
from imganalyzer.decode.tiers import TierReader
from imganalyzer.runtime.jobshard import JobShard


def test_a_shard_without_a_tier_store_says_its_model_reads_no_tiers() -> None:
    shard = JobShard("000003-00001", [Entry("a.jpg", 1, 2)])
    assert shard.rows == {} and shard.arrays == {} and shard.tiers is None
    with pytest.raises(ValueError, match="shard 000003-00001: its model reads no tiers"):
        _ = shard.reader


def test_a_shard_with_a_tier_store_hands_it_out(shard) -> None:
    tiers = TierReader(shard.tiers)
    job_shard = JobShard(shard.id, shard.entries, tiers=tiers)
    assert job_shard.reader is tiers and job_shard.reader.n_images == len(shard.entries)
    other = JobShard(shard.id, shard.entries)
    assert other.rows is not job_shard.rows  # each shard its own rows
