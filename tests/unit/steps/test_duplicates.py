"""Duplicates found on a generated library (tests/support/duplicates_library.py): near copies
group by hash and by CLIP vector, different photos do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.example.writers import write_jpeg
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.steps.duplicates import find_duplicates
from tests.support.duplicates_library import (
    BASE,
    COPIES,
    CORRUPT,
    DIFFERENT,
    RAW,
    RAW_EXPORT,
    SETTINGS,
    Analysed,
    analyse,
    analysed_library,
    copied,
    groups_of,
    groups_of_one,
    pixels,
)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return analysed_library(tmp_path_factory.mktemp("dups"))


@pytest.fixture
def fresh(analysed: Analysed, tmp_path: Path) -> Analysed:
    """A copy of the results (so a test may add files to it) over the same library."""
    return copied(analysed, tmp_path)


def test_near_copies_group_and_different_photos_do_not(analysed: Analysed) -> None:
    report = find_duplicates(Layout(analysed.results), analysed.library, SETTINGS, use_clip=False)
    near = groups_of(report, "near")
    assert {BASE} | COPIES in near
    assert {RAW, RAW_EXPORT} in near
    assert len(near) == 2  # no photo of DIFFERENT joined anything
    group = next(g for g in report.groups if g.kind == "near" and BASE in groups_of_one(g))
    keeper = next(m for m in group.members if m.path == group.keeper)
    assert pixels(keeper) == max(pixels(m) for m in group.members)
    by_path = {m.path: m for m in group.members}
    assert by_path["photos/astronaut_half.jpg"].width == 256
    assert 0 < by_path["photos/astronaut_crop.jpg"].hash_distance <= 8


def write_vectors(results: Path, shards: list[str], vector_of) -> None:
    """embedding/<shard>.npy and .jsonl rows as the embedding module writes them."""
    for shard in shards:
        entries = read_manifest(results / "catalog" / "shards" / f"{shard}.tsv")
        matrix = np.stack([vector_of(e.path) for e in entries]).astype(np.float16)
        (results / "embedding").mkdir(exist_ok=True)
        np.save(results / "embedding" / f"{shard}.npy", matrix)
        rows = [
            error_row(e, "not decoded") if e.path == CORRUPT else ok_row(e, {"model": "t"})
            for e in entries
        ]
        write_rows(results / "embedding" / f"{shard}.jsonl", rows)


def test_clip_cosine_adds_pairs_and_vetoes_hash_matches(fresh: Analysed) -> None:
    rng = np.random.default_rng(0)
    family = rng.standard_normal(16)
    other = rng.standard_normal(16)
    special = {
        "photos/astronaut_burst.jpg": family + 1.2 * np.linalg.norm(family) * np.eye(16)[0],
        DIFFERENT[1]: other + 0.05 * rng.standard_normal(16),  # rocket ~ coffee by CLIP
        DIFFERENT[0]: other,
    }

    def vector_of(path: str) -> np.ndarray:
        if path in special:
            vector = special[path]
        elif "astronaut" in path:
            vector = family
        else:
            vector = rng.standard_normal(16)
        return vector / np.linalg.norm(vector)

    write_vectors(fresh.results, fresh.shards, vector_of)
    report = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    near = groups_of(report, "near")
    assert {DIFFERENT[0], DIFFERENT[1]} in near  # by CLIP alone: their hashes are far apart
    astronauts = next(g for g in near if BASE in g)
    assert astronauts == {BASE} | COPIES - {"photos/astronaut_burst.jpg"}  # cosine veto
    assert report.stats["embedded"] == report.stats["images"] - 1  # all but the broken file
    assert report.stats["clip_shards_searched"] == len(fresh.shards)
    again = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    assert again.stats["clip_shards_searched"] == 0 and again.groups == report.groups
    # A new import is searched against the library; the cached shards are not searched again.
    write_jpeg(fresh.library / "new/rocket_edit.jpg", data.rocket()[::-1])  # other pHash
    special["new/rocket_edit.jpg"] = other + 0.05 * rng.standard_normal(16)
    new_shards = analyse(fresh.library, fresh.results)
    write_vectors(fresh.results, new_shards, vector_of)
    update = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    assert update.stats["clip_shards_searched"] == len(new_shards) == 1
    assert {DIFFERENT[0], DIFFERENT[1], "new/rocket_edit.jpg"} in groups_of(update, "near")
