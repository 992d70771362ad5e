"""Exact semantic ranking that reads a quarter of the bytes: the index's vectors
(``vectors.npy``, float16) also stored as int8 codes with a per-row error bound
(``vector_codes.npy``, ``vector_bounds.npy``).

A query is scored against the codes first (an int8 product, ``torch._int_mm``). Each row's
bound says how far its code score can lie from its exact score, so the rows whose best case
reaches the k-th best worst case are the only ones that can be in the top k: a few hundred
to a few thousand of a million. Only those are scored exactly from the float16 matrix.
The ranking is therefore the exact one, row for row: the same rows in the same order with
the same scores as scoring every row exactly (:meth:`VectorMatrix.exact_scores`).

The exact score of a row is its float16 vector times the float32 query, in float32, summed
along the row by numpy's einsum loop: the same bits whichever rows are scored with it. Ties
are broken by the row (the key id): the order is total, so every path gives one answer.

Bounds: a row x is stored as scale * codes + e (scale = max |x| / 127); its bound file holds
scale, |e| and |scale * codes|, rounded up. The query q is split into two int8 levels,
q = s1 c1 + s2 c2 + e2. Then x.q = scale (s1 codes.c1 + s2 codes.c2) + e.q + scale codes.e2,
so |x.q - code score| <= |e| |q| + |scale codes| |e2| (Cauchy-Schwarz), plus a small margin
for the float32 rounding of both scores.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imganalyzer.files import atomic_open
from imganalyzer.layout import IndexFiles

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Rows quantised, scored with the codes, or scored exactly, at a time (bounded temporaries).
QUANTISE_ROWS = 8192
CODE_ROWS = 65_536
GATHER_ROWS = 8192  # rows picked out at a time, into a block reused by each thread
EXACT_ROWS = 4096
# Below this many rows to rank, the codes save nothing: score them all exactly.
EXACT_SCAN_MAX = 4096
# Above this share of all rows, the codes of every row are scored (one sequential pass) and
# the others dropped: copying the wanted rows out first would cost more.
GATHER_SHARE = 0.35
# Up to this share of all rows, a filter's codes are copied out once and kept with it.
KEEP_SHARE = 0.1
# float32's unit roundoff: a float32 dot product of n terms is off by at most about
# n * ROUNDOFF * |x| |q| whatever the order of its sum (the exact score's error, see
# :func:`rounding_margin`).
ROUNDOFF = 2.0**-24
QUERY_COLUMNS = 8  # the int8 product's smallest width; columns 2-7 are zeros
CHECKED_ROWS = 32  # rows whose codes are checked against the matrix when it is opened

__all__ = ["Ranking", "RowSet", "VectorMatrix", "quantise", "top_order", "write_codes"]


# ---------------------------------------------------------------- writing the codes


def quantise(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes (m, dim) and bounds (m, 3) float32 of float16 rows: scale, the norm of the
    rounding error, the norm of scale * codes. Computed in float32, then rounded up by more
    than float32 arithmetic can miss (a sum of 768 squares is off by less than 5e-5 of it;
    each difference by an ulp): a bound only needs to hold. A row with a non-finite value
    gets an infinite error: it is always scored exactly."""
    x = np.asarray(block, dtype=np.float32)  # float16 values are exact in float32
    finite = np.all(np.isfinite(x), axis=1, keepdims=True)[:, 0]
    if not finite.all():
        x = np.where(finite[:, None], x, np.float32(0))
    scale = np.abs(x).max(axis=1) / np.float32(127)
    divisor = np.where(scale > 0, scale, np.float32(1))
    codes = np.rint(x / divisor[:, None])
    np.clip(codes, -127, 127, out=codes)
    coded = codes * scale[:, None]
    error = x - coded
    error_norm = np.sqrt(np.einsum("ij,ij->i", error, error))
    coded_norm = np.sqrt(np.einsum("ij,ij->i", coded, coded))
    bounds = np.empty((len(x), 3), np.float32)
    bounds[:, 0] = scale
    bounds[:, 1] = _rounded_up(error_norm * (1 + 1e-4) + 1e-6 * (coded_norm + error_norm))
    bounds[:, 1][~finite] = np.inf
    bounds[:, 2] = _rounded_up(coded_norm * (1 + 1e-4))
    return codes.astype(np.int8), bounds


def _rounded_up(values: np.ndarray) -> np.ndarray:
    return np.nextafter(values.astype(np.float32), np.float32(np.inf))


def write_codes(folder: Path) -> None:
    """Write ``vector_codes.npy`` and ``vector_bounds.npy`` of the folder's ``vectors.npy``
    (atomically, each), reading the matrix in blocks: memory stays small at any size."""
    files = IndexFiles(folder)
    matrix = np.load(files.vectors, mmap_mode="r")
    with atomic_open(files.vector_codes, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|i1", "fortran_order": False, "shape": matrix.shape}
        )
        bounds = np.empty((len(matrix), 3), np.float32)
        for start in range(0, len(matrix), QUANTISE_ROWS):
            codes, bounds[start : start + QUANTISE_ROWS] = quantise(
                matrix[start : start + QUANTISE_ROWS]
            )
            handle.write(codes.tobytes())
    with atomic_open(files.vector_bounds, "wb") as handle:
        np.save(handle, bounds)


# ---------------------------------------------------------------- ranking


def top_order(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best (score, then the lowest row) in ``scores``, best first.
    NaN ranks last."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = np.flatnonzero(scores >= kth)  # all the ties at the k-th score
    else:
        keep = np.arange(len(scores))
    order = np.lexsort((rows[keep], -scores[keep]))
    return keep[order[:k]]


@dataclass(frozen=True)
class QueryCodes:
    """The query in two int8 levels (the product's columns 0 and 1) and what they miss."""

    codes: np.ndarray  # (dim, QUERY_COLUMNS) int8
    steps: tuple[float, float]
    norm: float  # |q|
    missed: float  # |q - s1 c1 - s2 c2|

    @classmethod
    def of(cls, query: np.ndarray) -> QueryCodes:
        q = query.astype(np.float64)
        codes = np.zeros((len(q), QUERY_COLUMNS), np.int8)
        steps = []
        rest = q
        for column in (0, 1):
            step = float(np.abs(rest).max()) / 127 or 1.0
            codes[:, column] = np.clip(np.rint(rest / step), -127, 127)
            rest = rest - step * codes[:, column]
            steps.append(step)
        return cls(
            codes, (steps[0], steps[1]), float(np.linalg.norm(q)), float(np.linalg.norm(rest))
        )


class VectorMatrix:
    """``vectors.npy`` memory-mapped, with the sorted key id of each row and, where the index
    has them, the int8 codes and bounds (read into memory when ``resident``: a server keeps
    them, so no page of them is ever read from disk twice)."""

    def __init__(self, index_dir: Path, resident: bool = False) -> None:
        files = IndexFiles(index_dir)
        self.matrix = np.load(files.vectors, mmap_mode="r")
        self.ids = np.load(files.vector_ids)
        if len(self.ids) != len(self.matrix):
            raise RuntimeError(f"{index_dir}: vectors and ids differ (index being rewritten?)")
        self.codes: np.ndarray | None = None
        self.bounds: np.ndarray | None = None  # (3, n)
        if files.vector_codes.is_file() and files.vector_bounds.is_file():
            codes = np.load(files.vector_codes, mmap_mode=None if resident else "r")
            bounds = np.load(files.vector_bounds)
            if self._codes_fit(codes, bounds):
                # bounds as (3, n): each of scale, error and code norm contiguous
                self.codes, self.bounds = codes, np.ascontiguousarray(bounds.T)
            else:
                log.warning(
                    "%s: the vector codes are not those of the matrix (an update under way?): "
                    "every vector is scored exactly, which is slower, until `imganalyzer "
                    "index` writes them again",
                    index_dir,
                )

    def _codes_fit(self, codes: np.ndarray, bounds: np.ndarray) -> bool:
        """Whether the codes are those of this matrix: their shapes, and the codes of a few
        rows spread over it (files written by an update running now may not match yet)."""
        if codes.shape != self.matrix.shape or bounds.shape != (len(codes), 3):
            return False
        if not len(codes):
            return True
        sample = np.unique(np.linspace(0, len(codes) - 1, CHECKED_ROWS).astype(np.int64))
        expected_codes, expected_bounds = quantise(self.matrix[sample])
        # the codes are IEEE-exact; a bound's last bits may depend on the machine's sums
        return bool(
            np.array_equal(expected_codes, codes[sample])
            and np.allclose(expected_bounds, bounds[sample], rtol=1e-3, atol=0)
        )

    @classmethod
    def open(cls, index_dir: Path, resident: bool = False) -> VectorMatrix | None:
        return cls(index_dir, resident) if IndexFiles(index_dir).vectors.is_file() else None

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows of the given key ids (ids without a vector are left out)."""
        ids = np.asarray(ids, dtype=np.uint64)
        if not len(self.ids):
            return np.empty(0, np.int64)
        rows = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return rows[self.ids[rows] == ids]

    def exact_scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The exact score (cosine similarity) of every row, or of the given rows: float32.
        einsum's loop sums each row on its own, in one order: the same bits whichever rows
        are scored with it (BLAS's product does not promise that)."""
        q = np.asarray(query, dtype=np.float32)
        count = len(self) if rows is None else len(rows)
        scores = np.empty(count, np.float32)
        with np.errstate(invalid="ignore", over="ignore"):  # a broken row scores NaN
            for start in range(0, count, EXACT_ROWS):
                stop = min(start + EXACT_ROWS, count)
                block = self.matrix[start:stop] if rows is None else self.matrix[rows[start:stop]]
                np.einsum(
                    "ij,j->i", block, q, dtype=np.float32, casting="same_kind",
                    out=scores[start:stop],
                )  # fmt: skip
        return scores

    def ranking(self, query: np.ndarray, rows: np.ndarray | RowSet | None = None) -> Ranking:
        """The exact ranking of ``rows`` (default: every row; ascending, no repeats)."""
        return Ranking(self, np.asarray(query, dtype=np.float32), rows)

    def best(
        self, query: np.ndarray, k: int, rows: np.ndarray | RowSet | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows (among ``rows``) and their exact scores, best first."""
        return self.ranking(query, rows).top(k)

    def code_bounds(
        self, query: np.ndarray, rows: np.ndarray | RowSet | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) exact score each row (or each of ``rows``) can have, from the
        codes: float32."""
        assert self.codes is not None and self.bounds is not None
        q = QueryCodes.of(query)
        wanted = rows.rows if isinstance(rows, RowSet) else rows
        if wanted is None or len(wanted) > GATHER_SHARE * len(self):
            low, high = _code_bounds(q, self.codes, self.bounds)
            return (low, high) if wanted is None else (low[wanted], high[wanted])
        copies = rows.copies(self) if isinstance(rows, RowSet) else None
        if copies is not None:
            return _code_bounds(q, *copies)
        return _code_bounds(q, self.codes, self.bounds, wanted)


def rounding_margin(dim: int) -> float:
    """The relative margin added to each bound for float32 rounding: the exact score, a
    float32 sum of ``dim`` products, lies within dim * ROUNDOFF * |x| |q| (over 1 - that) of
    x.q in any summation order; the code score's few float32 steps within a few more
    roundoffs (16 covers them with room). The margin is applied as rounding * |q| *
    (|e| + |scale codes|), at least rounding * |x| |q|."""
    return (dim + 16) * ROUNDOFF * 1.01


def _code_bounds(
    q: QueryCodes, codes: np.ndarray, bounds: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`VectorMatrix.code_bounds` of the codes' rows (or of the given rows), with
    ``bounds`` (3, n): a block of rows at a time, so that the arithmetic stays in the cache.
    The int8 products are exact integers below 2**24, so exact in float32 too."""
    import torch

    count = len(codes) if rows is None else len(rows)
    low, high = np.empty(count, np.float32), np.empty(count, np.float32)
    columns = torch.from_numpy(q.codes)
    first, second = np.float32(q.steps[0]), np.float32(q.steps[1])
    rounding = rounding_margin(codes.shape[1])
    spread = np.float32(q.norm * (1 + rounding))
    missed = np.float32(q.missed + q.norm * rounding)
    step = CODE_ROWS if rows is None else GATHER_ROWS
    with warnings.catch_warnings(), _one_thread():
        # torch warns that a memory map is read-only; it only reads it here
        warnings.simplefilter("ignore", UserWarning)
        for start in range(0, count, step):
            stop = min(start + step, count)
            if rows is None:
                block, (scale, error, coded) = codes[start:stop], bounds[:, start:stop]
            else:
                picked = rows[start:stop]
                block = _gathered(codes, picked)
                scale, error, coded = bounds[:, picked]
            product = _int8_product(torch.from_numpy(block), columns).numpy()
            levels = product[:, :2].astype(np.float32)
            approx = levels[:, 0] * first
            approx += levels[:, 1] * second
            approx *= scale
            error = error * spread
            error += coded * missed
            np.subtract(approx, error, out=low[start:stop])
            np.add(approx, error, out=high[start:stop])
    return low, high


class RowSet:
    """Rows of the matrix that a filter passes, ascending. When they are few and ranked a
    second time, their codes and bounds are copied out and kept: the next queries with the
    same filter read them in one sequential pass instead of picking them out again (the
    first ranking picks them out, which costs about as much as copying them)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self._ranked = 0
        self._copies: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.rows)

    def keeps_copies(self, vectors: VectorMatrix) -> bool:
        return vectors.codes is not None and len(self) <= KEEP_SHARE * len(vectors)

    def nbytes(self, vectors: VectorMatrix) -> int:
        """What it may hold: its rows, and the copies where it makes them."""
        width = vectors.matrix.shape[1] + 12 if self.keeps_copies(vectors) else 0
        return int(self.rows.nbytes + len(self) * width)

    def copies(self, vectors: VectorMatrix) -> tuple[np.ndarray, np.ndarray] | None:
        """The kept (codes, bounds) of the rows, made on the second ranking; None before, or
        where none are kept."""
        if not self.keeps_copies(vectors):
            return None
        assert vectors.codes is not None and vectors.bounds is not None
        with self._lock:
            self._ranked += 1
            if self._copies is None and self._ranked >= 2:
                codes = np.take(vectors.codes, self.rows, axis=0)
                self._copies = codes, np.take(vectors.bounds, self.rows, axis=1)
            return self._copies


_scratch = threading.local()


def _gathered(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The codes of ``rows`` (at most GATHER_ROWS), copied into this thread's scratch block:
    memory that is written again and again costs no page faults, and stays in the cache."""
    block = getattr(_scratch, "block", None)
    if block is None or block.shape[1] != codes.shape[1] or len(block) < len(rows):
        block = _scratch.block = np.empty((max(GATHER_ROWS, len(rows)), codes.shape[1]), np.int8)
    # mode="clip": numpy would otherwise copy through a temporary to check the indices
    return np.take(codes, rows, axis=0, out=block[: len(rows)], mode="clip")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread here (this thread's setting, restored after). The product reads
    memory faster than one core multiplies, so a second thread adds little on a quiet
    machine; on a busy one, each waits for the other, and the product took twice the time
    and twice the CPU with two."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _int8_product(block: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """int32 (m, 8) = int8 (m, dim) @ int8 (dim, 8): oneDNN's int8 kernels where torch has
    them, else float32 (exact here: every sum stays below 2**24)."""
    import torch

    if len(block) >= 17:  # torch's int8 product wants more than 16 rows
        try:
            return torch._int_mm(block, columns)
        except (RuntimeError, AttributeError):
            pass
    return (block.float() @ columns.float()).int()


class Ranking:
    """One query's exact ranking of some rows: their code bounds are computed once, on the
    first :meth:`top`, which scores exactly only the rows that can be in the top k."""

    def __init__(
        self, vectors: VectorMatrix, query: np.ndarray, rows: np.ndarray | RowSet | None
    ) -> None:
        self.vectors = vectors
        self.query = query
        self._given = rows
        self.rows = rows.rows if isinstance(rows, RowSet) else rows
        self.count = len(vectors) if self.rows is None else len(self.rows)
        usable = bool(np.isfinite(query).all() and np.any(query))  # else no bound holds
        self._coded = vectors.codes is not None and self.count > EXACT_SCAN_MAX and usable
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows and their exact scores, best first."""
        k = min(k, self.count)
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if not self._coded:
            candidates = np.arange(self.count) if self.rows is None else self.rows
        else:
            if self._bounds is None:
                self._bounds = self.vectors.code_bounds(self.query, self._given)
            low, high = self._bounds
            floor = np.partition(low, self.count - k)[self.count - k]  # the k-th best low
            keep = np.flatnonzero(high >= floor)
            candidates = keep if self.rows is None else self.rows[keep]
        scores = self.vectors.exact_scores(self.query, candidates)
        best = top_order(scores, candidates, k)
        return candidates[best].astype(np.int64), scores[best]
