"""Byte-identical copies: only files of a colliding size are read, and their digests cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import imganalyzer.steps.duplicates_exact as duplicates_exact
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows
from imganalyzer.steps.duplicates import find_duplicates
from tests.support.duplicates_library import (
    BASE,
    SAME_SIZE,
    SETTINGS,
    Analysed,
    analysed_library,
    groups_of,
)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return analysed_library(tmp_path_factory.mktemp("dups"))


def test_exact_copies_only_among_size_collisions(
    analysed: Analysed, tmp_path: Path, monkeypatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(analysed.results, results)
    (results / "duplicates" / "hashes.jsonl").unlink(missing_ok=True)  # another test's cache
    read: list[tuple[str, int | None]] = []
    real_digest = duplicates_exact.content_digest

    def counting(path: Path, limit: int | None = None) -> str:
        read.append((str(Path(path).relative_to(analysed.library)), limit))
        return real_digest(path, limit)

    monkeypatch.setattr(duplicates_exact, "content_digest", counting)
    report = find_duplicates(Layout(results), analysed.library, SETTINGS, use_clip=False)
    assert groups_of(report, "exact") == [{BASE, "backup/astronaut.jpg"}]
    sizes: dict[int, list[str]] = {}
    for path in analysed.library.rglob("*.*"):
        sizes.setdefault(path.stat().st_size, []).append(str(path.relative_to(analysed.library)))
    colliding = {p for paths in sizes.values() if len(paths) > 1 for p in paths}
    assert colliding == {BASE, "backup/astronaut.jpg", SAME_SIZE}
    assert {path for path, _ in read} == colliding  # files of a unique size are never read
    # The padded file differs in its first 64 KiB: only the two real copies are read in full.
    assert sorted(p for p, limit in read if limit is None) == sorted([BASE, "backup/astronaut.jpg"])
    cache = list(read_rows(results / "duplicates" / "hashes.jsonl"))
    assert {row["path"] for row in cache} == colliding
    read.clear()
    again = find_duplicates(Layout(results), analysed.library, SETTINGS, use_clip=False)
    assert read == [] and again.stats["cache_hits"] == 5
    assert groups_of(again, "exact") == groups_of(report, "exact")
