"""What a filter passes, kept per filter, and the cut of the words' ranking to it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.search import passing as passing_module
from imganalyzer.search.passing import Passing, PassingCache, words_cut, words_depth
from imganalyzer.search.vector_scan import RowSet, VectorMatrix


@pytest.fixture
def vectors(tmp_path: Path) -> VectorMatrix:
    np.save(tmp_path / "vectors.npy", np.ones((10, 4), np.float16))
    np.save(tmp_path / "vector_ids.npy", np.arange(10, dtype=np.uint64))
    return VectorMatrix(tmp_path)


def passing(keys: list[int], images: int = 10) -> Passing:
    return Passing(RowSet(np.arange(len(keys))), np.array(keys, np.uint64), images)


def test_words_cut_refuses_what_the_ranking_cannot_tell() -> None:
    kept = passing([2, 4, 6])
    hits = [(9.0, 1), (8.0, 2), (7.0, 3), (7.0, 4), (6.0, 5)]
    assert words_cut(hits, 6, kept, 2) == [(2, 8.0), (4, 7.0)]  # every match is there
    assert words_cut(hits, 5, kept, 1) == [(2, 8.0)]
    assert words_cut(hits, 5, kept, 3) is None  # cut at 5 before a third image passed
    assert words_cut(hits[:4], 4, kept, 2) is None  # ties with the cut: another 7.0 may follow
    assert words_cut(hits, 5, passing([]), 1) is None


def test_words_depth_follows_the_share_that_passes() -> None:
    assert words_depth(passing([1, 2], images=100), 10, 5000) == 1000  # 2% pass: 2 x 10 / 2%
    assert words_depth(passing([1, 2], images=100), 10, 500) is None  # too deep: ask Tantivy
    assert words_depth(passing(list(range(10))), 3, 5000) == 6
    assert words_depth(passing([]), 3, 5000) is None


def test_each_filters_images_are_made_once(vectors: VectorMatrix) -> None:
    cache = PassingCache(vectors)
    made = []

    def make() -> Passing:
        made.append(1)
        time.sleep(0.05)
        return passing([1])

    found = []
    threads = [threading.Thread(target=lambda: found.append(cache.get("a", make))) for _ in "xy"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and found[0] is found[1]


def test_the_oldest_filters_go_first(vectors: VectorMatrix, monkeypatch) -> None:
    cache = PassingCache(vectors)
    monkeypatch.setattr(passing_module, "KEPT", 2)
    first = cache.get("a", lambda: passing([1]))
    cache.get("b", lambda: passing([2]))
    assert cache.get("a", lambda: passing([9])) is first  # used again: now the newest
    cache.get("c", lambda: passing([3]))
    assert cache.get("a", lambda: passing([9])) is first
    assert cache.get("b", lambda: passing([9])).keys.tolist() == [9]  # b went
    assert cache.get("x", lambda: None) is None
