"""Perceptual hashes of the tiers (pHash, dHash), the shard rows that hold them, and the
banded index that finds every pair of hashes within a Hamming distance."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.fftpack import dct
from skimage import data

import imganalyzer.steps.duplicates_hashes as duplicates_hashes
from imganalyzer.results import read_rows
from imganalyzer.steps.duplicates_hashes import (
    band_layout,
    dhash,
    hash_pairs,
    hash_pairs_brute_force,
    phash,
)
from tests.support.duplicates_library import BASE, CORRUPT, Analysed, analysed_library


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return analysed_library(tmp_path_factory.mktemp("dups"))


def test_phash_and_dhash_match_an_independent_computation() -> None:
    rgb = data.coffee()
    pixels = np.asarray(Image.fromarray(rgb).convert("L").resize((32, 32), Image.LANCZOS), float)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    expected = "".join("1" if b else "0" for b in (low > np.median(low)).ravel())
    assert f"{phash(rgb):064b}" == expected
    small = np.asarray(Image.fromarray(rgb).convert("L").resize((9, 8), Image.LANCZOS), float)
    expected = "".join("1" if b else "0" for b in (small[:, 1:] > small[:, :-1]).ravel())
    assert f"{dhash(rgb):064b}" == expected


def test_shard_rows_hold_hashes_of_the_tier_and_decode_errors(analysed: Analysed) -> None:
    rows = {}
    for shard in analysed.shards:
        for row in read_rows(analysed.results / "duplicates" / f"{shard}.jsonl"):
            rows[row["path"]] = row
    assert set(rows) == {
        str(p.relative_to(analysed.library)) for p in analysed.library.rglob("*.*")
    }
    assert rows[CORRUPT]["status"] == "error" and "not an image" in rows[CORRUPT]["error"]
    technical = {
        row["path"]: row
        for shard in analysed.shards
        for row in read_rows(analysed.results / "technical" / f"{shard}.jsonl")
    }
    assert rows[CORRUPT]["error_kind"] == technical[CORRUPT]["error_kind"] == "unsupported_format"
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all(len(r["phash"]) == 16 and r["tier"] == "clip" for r in ok)
    # Byte-identical files have the same tier, so the same hashes.
    assert rows[BASE]["phash"] == rows["backup/astronaut.jpg"]["phash"]


def planted_hashes(n: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Random 64-bit hashes where every tenth is a copy of another with 1-8 bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    hashes |= rng.integers(0, 2, size=n).astype(np.uint64)
    planted = set()
    for i in range(0, n - 1, 10):
        flips = rng.choice(64, size=rng.integers(1, 9), replace=False)
        hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(b) for b in flips))
        planted.add((i, i + 1))
    return hashes, planted


@pytest.mark.parametrize("max_distance", [0, 3, 8, 12])
def test_banded_hash_index_finds_exactly_the_brute_force_pairs(max_distance: int) -> None:
    hashes, planted = planted_hashes(12_000, seed=max_distance)
    banded = hash_pairs(hashes, max_distance)
    assert np.array_equal(banded, hash_pairs_brute_force(hashes, max_distance))
    distances = {(i, j): bin(int(hashes[i]) ^ int(hashes[j])).count("1") for i, j in planted}
    expected = {pair for pair, d in distances.items() if d <= max_distance}
    assert expected <= set(map(tuple, banded.tolist()))
    if max_distance == 8:
        assert expected == set(planted)


def test_band_layout_covers_the_64_bits() -> None:
    for n, distance in [(500_000, 8), (10_000, 4), (10**6, 16), (5_000, 0)]:
        bands = band_layout(n, distance)
        assert sum(width for _, width in bands) == 64
        assert all(width <= duplicates_hashes.MAX_BAND_BITS for _, width in bands)
        assert [shift for shift, _ in bands] == list(np.cumsum([0] + [w for _, w in bands[:-1]]))
