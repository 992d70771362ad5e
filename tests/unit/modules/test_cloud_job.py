"""The cloud job's choices: the tier it sends (the largest that fits the providers' limit)
and the earlier descriptions it reuses (same file version, provider and model only)."""

from __future__ import annotations

from pathlib import Path

from imganalyzer.catalog.manifests import Entry
from imganalyzer.modules.cloud_job import _cached_rows, choose_tier
from imganalyzer.results import error_row, ok_row
from tests.support.fake_vision_api import cloud_settings


def test_the_largest_tier_within_the_limit_is_sent_else_the_smallest() -> None:
    tiers = {"clip": 256, "detect": 1024, "full": 2048}
    assert choose_tier(tiers, 1568) == "detect"
    assert choose_tier(tiers, 2048) == "full"
    assert choose_tier(tiers, 100) == "clip"  # none fits: the smallest, downscaled later


def test_only_a_current_description_by_the_same_provider_and_model_is_reused(
    tmp_path: Path,
) -> None:
    settings = cloud_settings(provider="anthropic", model="claude-test")
    same = {"provider": "anthropic", "model": "claude-test", "description": "a cat"}
    entries = [Entry(f"{i}.jpg", 10, 10) for i in range(6)]
    previous = [
        ok_row(entries[0], same),
        ok_row(Entry("1.jpg", 10, 99), same),  # the file changed since
        ok_row(entries[2], {**same, "model": "claude-other"}),
        ok_row(entries[3], {**same, "skipped": "budget"}),
        error_row(entries[4], "HTTP 400: refused"),
        ok_row(entries[5], same),
    ]
    cached = _cached_rows(previous, entries, settings)
    assert sorted(cached) == [0, 5] and cached[0]["description"] == "a cat"
    assert _cached_rows([], entries, settings) == {}
    reordered = [entries[5], entries[0]]  # rows follow the new manifest's order
    assert sorted(_cached_rows(previous, reordered, settings)) == [0, 1]
