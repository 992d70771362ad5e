"""The int8-bounded ranking gives exactly the ranking of scoring every vector exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.layout import IndexFiles
from imganalyzer.search import vector_scan
from imganalyzer.search.vector_scan import (
    QueryCodes,
    RowSet,
    VectorMatrix,
    quantise,
    top_order,
    write_codes,
)

DIM = 64


def unit_rows(rng: np.random.Generator, n: int, clustered: bool) -> np.ndarray:
    """Random unit vectors, or vectors around a few centres (as real embeddings are)."""
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    if clustered:
        centres = rng.standard_normal((8, DIM)).astype(np.float32) * 3
        rows += centres[rng.integers(0, len(centres), n)]
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def write_index(folder: Path, matrix: np.ndarray, codes: bool = True) -> IndexFiles:
    files = IndexFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(files.vectors, matrix)
    np.save(files.vector_ids, np.arange(len(matrix), dtype=np.uint64) * 7 + 3)
    if codes:
        write_codes(folder)
    return files


def exact_top(vectors: VectorMatrix, query: np.ndarray, k: int, rows=None):
    """The reference: every row (or every given row) scored exactly, then ordered."""
    rows = np.arange(len(vectors)) if rows is None else rows
    scores = vectors.exact_scores(query, rows)
    best = top_order(scores, rows, k)
    return rows[best], scores[best]


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the codes from 20 rows on, and score the codes in blocks smaller than a test's
    matrix, so that every path runs on a small matrix."""
    monkeypatch.setattr(vector_scan, "EXACT_SCAN_MAX", 20)
    monkeypatch.setattr(vector_scan, "CODE_ROWS", 700)
    monkeypatch.setattr(vector_scan, "GATHER_ROWS", 64)


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_ranking_with_codes_is_the_exact_one(tmp_path: Path, clustered: bool, k: int) -> None:
    rng = np.random.default_rng(k + clustered)
    write_index(tmp_path, unit_rows(rng, 3000, clustered))
    vectors = VectorMatrix(tmp_path)
    assert vectors.codes is not None
    for query in unit_rows(rng, 5, clustered).astype(np.float32):
        rows, scores = vectors.best(query, k)
        expected_rows, expected_scores = exact_top(vectors, query, k)
        assert np.array_equal(rows, expected_rows)
        assert np.array_equal(scores, expected_scores)  # the same bits


def test_codes_score_only_a_few_rows_exactly(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    write_index(tmp_path, unit_rows(rng, 3000, clustered=True))
    vectors = VectorMatrix(tmp_path)
    scored = []
    exact_scores = vectors.exact_scores

    def counting(query, rows=None):
        scored.append(len(vectors) if rows is None else len(rows))
        return exact_scores(query, rows)

    monkeypatch.setattr(vectors, "exact_scores", counting)
    vectors.best(unit_rows(rng, 1, clustered=True)[0].astype(np.float32), 10)
    assert scored and sum(scored) < 300  # of 3000


@pytest.mark.parametrize("share", [0.05, 0.3, 0.6, 1.0])
def test_ranking_of_some_rows_is_the_exact_one(tmp_path: Path, share: float) -> None:
    """A filter's rows: copied out of the codes (few) or all codes scored, then kept."""
    rng = np.random.default_rng(int(share * 100))
    write_index(tmp_path, unit_rows(rng, 2000, clustered=False))
    vectors = VectorMatrix(tmp_path, resident=True)
    rows = np.flatnonzero(rng.random(2000) < share)
    kept = RowSet(rows)  # keeps the codes it copies (a few rows) for the next query
    for query in unit_rows(rng, 2, clustered=False).astype(np.float32):
        for k in (5, 50, len(rows) + 3):
            expected_rows, expected_scores = exact_top(vectors, query, k, rows)
            assert set(expected_rows.tolist()) <= set(rows.tolist())
            for given in (rows, kept):
                got_rows, got_scores = vectors.best(query, k, given)
                assert np.array_equal(got_rows, expected_rows)
                assert np.array_equal(got_scores, expected_scores)
    assert (kept._copies is not None) == (share <= vector_scan.KEEP_SHARE)
    assert len(vectors.best(query, 5, rows[:0])[0]) == 0


def test_ties_are_broken_by_the_row(tmp_path: Path) -> None:
    """Repeated vectors score the same: the lower row comes first, on every path."""
    rng = np.random.default_rng(5)
    base = unit_rows(rng, 100, clustered=False)
    write_index(tmp_path, np.concatenate([base] * 10))  # each vector 10 times
    vectors = VectorMatrix(tmp_path)
    query = base[17].astype(np.float32)
    rows, scores = vectors.best(query, 15)
    assert rows[:10].tolist() == [17 + 100 * i for i in range(10)]
    assert np.array_equal(rows, exact_top(vectors, query, 15)[0])
    assert len(set(scores[:10].tolist())) == 1


def test_bounds_hold_for_every_row(tmp_path: Path) -> None:
    """The code score of each row lies within its bound of the exact score, also for an
    unnormalised query and rows of very different lengths."""
    rng = np.random.default_rng(9)
    matrix = unit_rows(rng, 1500, clustered=True)
    matrix[::3] *= np.float16(0.01)
    write_index(tmp_path, matrix)
    vectors = VectorMatrix(tmp_path)
    for scale in (1.0, 37.0, 1e-3):
        query = rng.standard_normal(DIM).astype(np.float32) * scale
        low, high = vectors.code_bounds(query, None)
        exact = vectors.exact_scores(query)
        assert np.all(low <= exact) and np.all(exact <= high)
        assert np.median(high - low) < 0.02 * np.linalg.norm(query)  # and narrow


def test_quantised_rows_keep_their_bounds_exactly() -> None:
    """Measured in float64, every row's error and code norm lie within its stored bounds."""
    rng = np.random.default_rng(12)
    rows = (rng.standard_normal((4000, 768)) * rng.uniform(1e-4, 3, (4000, 1))).astype(np.float16)
    codes, bounds = quantise(rows)
    coded = codes.astype(np.float64) * bounds[:, :1].astype(np.float64)
    assert np.all(np.linalg.norm(rows.astype(np.float64) - coded, axis=1) <= bounds[:, 1])
    assert np.all(np.linalg.norm(coded, axis=1) <= bounds[:, 2])
    assert np.all(np.abs(codes) <= 127) and np.all(np.abs(codes).max(axis=1) == 127)


def test_zero_or_broken_rows_and_queries_fall_back_to_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    matrix = unit_rows(rng, 500, clustered=False)
    matrix[7] = 0
    matrix[9, 3] = np.inf
    write_index(tmp_path, matrix)
    vectors = VectorMatrix(tmp_path)
    codes, bounds = quantise(matrix[[7, 9]])
    assert not codes.any() and bounds[0, 0] == 0 and bounds[0, 1:].max() < 1e-40
    assert bounds[1, 1] == np.inf  # always a candidate
    query = matrix[9].astype(np.float32)
    query[3] = 1.0
    for q in (query, np.zeros(DIM, np.float32)):
        rows, scores = vectors.best(q, 20)
        assert np.array_equal(rows, exact_top(vectors, q, 20)[0])


def test_query_codes_keep_almost_all_of_the_query() -> None:
    query = np.random.default_rng(2).standard_normal(768).astype(np.float32)
    codes = QueryCodes.of(query)
    assert codes.codes.shape == (768, vector_scan.QUERY_COLUMNS) and not codes.codes[:, 2:].any()
    rebuilt = codes.steps[0] * codes.codes[:, 0] + codes.steps[1] * codes.codes[:, 1]
    assert codes.missed == pytest.approx(np.linalg.norm(query - rebuilt))
    assert codes.missed < 1e-4 * codes.norm


def test_int8_product_matches_its_float_fallback() -> None:
    import torch

    rng = np.random.default_rng(4)
    block = torch.from_numpy(rng.integers(-127, 128, (300, 768), dtype=np.int8))
    columns = torch.from_numpy(rng.integers(-127, 128, (768, 8), dtype=np.int8))
    expected = block.long() @ columns.long()
    assert torch.equal(vector_scan._int8_product(block, columns).long(), expected)
    assert torch.equal(vector_scan._int8_product(block[:5], columns).long(), expected[:5])


def test_exact_scores_do_not_depend_on_the_other_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    write_index(tmp_path, unit_rows(rng, 9000, clustered=False))
    vectors = VectorMatrix(tmp_path)
    query = rng.standard_normal(DIM).astype(np.float32)
    everything = vectors.exact_scores(query)
    rows = np.array([0, 5, 4095, 4096, 8999])
    assert np.array_equal(vectors.exact_scores(query, rows), everything[rows])
    for row in rows:
        assert vectors.exact_scores(query, np.array([row]))[0] == everything[row]


def test_codes_of_another_matrix_are_not_used(tmp_path: Path, caplog) -> None:
    """Codes left from an earlier matrix of the same shape (an update under way) are
    ignored: the ranking is then the plain exact scan."""
    rng = np.random.default_rng(6)
    files = write_index(tmp_path, unit_rows(rng, 400, clustered=False))
    assert VectorMatrix(tmp_path).codes is not None
    np.save(files.vectors, unit_rows(rng, 400, clustered=False))
    with caplog.at_level(logging.WARNING):
        assert VectorMatrix(tmp_path).codes is None
    assert "imganalyzer index" in caplog.text
    files.vector_bounds.unlink()
    assert VectorMatrix(tmp_path).codes is None


def test_without_codes_the_ranking_is_the_exact_scan(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_index(tmp_path / "with", unit_rows(rng, 600, clustered=True))
    plain = tmp_path / "without"
    plain.mkdir()
    for name in ("vectors.npy", "vector_ids.npy"):
        (plain / name).write_bytes((tmp_path / "with" / name).read_bytes())
    query = unit_rows(rng, 1, clustered=True)[0].astype(np.float32)
    coded, uncoded = VectorMatrix(tmp_path / "with"), VectorMatrix(plain)
    assert coded.codes is not None and uncoded.codes is None
    for a, b in zip(coded.best(query, 30), uncoded.best(query, 30), strict=True):
        assert np.array_equal(a, b)


def test_codes_are_written_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = unit_rows(np.random.default_rng(0), 1000, clustered=False)
    write_index(tmp_path / "whole", matrix)
    monkeypatch.setattr(vector_scan, "QUANTISE_ROWS", 64)
    write_index(tmp_path / "blocks", matrix)
    for name in ("vector_codes.npy", "vector_bounds.npy"):
        assert np.array_equal(
            np.load(tmp_path / "whole" / name), np.load(tmp_path / "blocks" / name)
        )
    codes = np.load(tmp_path / "whole" / "vector_codes.npy")
    assert codes.dtype == np.int8 and codes.shape == matrix.shape
