"""Pairs of CLIP vectors above a cosine threshold, found blockwise."""

from __future__ import annotations

import numpy as np

import imganalyzer.steps.duplicates_groups as duplicates_groups
from imganalyzer.steps.duplicates_clip import cosine_pairs


def test_cosine_pairs_equal_the_full_matrix_and_cap_neighbours() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((700, 24)).astype(np.float32)
    vectors[1::7] = vectors[::7][: len(vectors[1::7])] + 0.1 * rng.standard_normal((100, 24))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16)
    full = vectors.astype(np.float32) @ vectors.astype(np.float32).T
    expected = {(i, j) for i, j in zip(*np.nonzero(full >= 0.95), strict=True) if i < j}
    found = cosine_pairs(vectors, 0.95, block=64)
    assert set(map(tuple, found.tolist())) == expected and len(expected) >= 90
    same = np.repeat(vectors[:1], 10, axis=0)  # ten identical vectors: 45 pairs
    capped = cosine_pairs(same, 0.95, top_k=2, block=4)
    assert len(capped) <= 2 * 10
    union = duplicates_groups.UnionFind(10)
    for i, j in capped:
        union.union(int(i), int(j))
    assert union.components(range(10)) == [list(range(10))]  # still one group
