"""Duplicates benchmark: near-duplicate search over perceptual hashes and CLIP vectors, and
how many files the exact-copy pass reads.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``):

    .venv/bin/python bench/bench_duplicates.py            # 500K hashes, 100K CLIP vectors
    .venv/bin/python bench/bench_duplicates.py --quick    # 100K hashes, 10K CLIP vectors
    .venv/bin/python bench/bench_duplicates.py --device cuda --vectors 500000

* pHash search: 64-bit hashes (uniformly random bits, and skewed bits that crowd the index's
  buckets the way real photo hashes do), one in ten with a near copy 1-8 bits away. The
  banded index (``hash_pairs``) over all of them, against comparing all pairs, timed on a
  subset and scaled by the number of pairs (quadratic); both give the same pairs there.
* CLIP search: random unit float16 768-d vectors with planted near copies; exact blockwise
  products (``cosine_pairs``) against one matrix-vector product per image (what calling a
  "similar images" query for every image costs), the latter timed on a subset of images;
  and a new import of 1,000 images against all (``cross_pairs``: what a re-run computes,
  the pairs of earlier shards being cached).
* Exact copies: a synthetic stat list of 500K files (log-normal sizes around 4 MB, 1% byte
  copies): the files whose size collides (the only ones read, 64 KiB each), the files read
  in full (sizes and heads collide), and the bytes read against hashing every file.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from common import Row, bench_parser, machine_description, measure, publish, ratio_row

from imganalyzer.steps.duplicates_clip import cosine_pairs, cross_pairs
from imganalyzer.steps.duplicates_exact import HEAD_BYTES
from imganalyzer.steps.duplicates_hashes import hash_pairs, hash_pairs_brute_force

DIM = 768
HASH_DISTANCE = 8
NEAR_THRESHOLD = 0.95
STAT_FILES = 500_000


def log(message: str) -> None:
    print(message, flush=True)


def synthetic_hashes(n: int, one_probability: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.random((n, 64)) < one_probability
    hashes = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    for i in range(0, n - 1, 10):
        flips = rng.choice(64, size=rng.integers(1, HASH_DISTANCE + 1), replace=False)
        hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(b) for b in flips))
    return hashes


def hash_rows(n: int, subset: int, one_probability: float, label: str) -> list[Row]:
    hashes = synthetic_hashes(n, one_probability)
    log(f"pHash search over {n:,} hashes ({label})")
    pairs: list[np.ndarray] = []
    banded = measure(lambda: pairs.append(hash_pairs(hashes, HASH_DISTANCE)), repeats=1)
    small = hashes[:subset]
    assert np.array_equal(hash_pairs(small, HASH_DISTANCE), hash_pairs_brute_force(small, 8))
    brute = measure(lambda: hash_pairs_brute_force(small, HASH_DISTANCE), repeats=1)
    brute_full = brute.best * (n / subset) ** 2
    note = f"{len(pairs[0]):,} pairs within {HASH_DISTANCE} bits"
    return [
        Row(f"pHash banded index, {n:,} ({label})", banded.best, "s", note),
        Row(
            f"pHash all pairs, {n:,} ({label})",
            brute_full,
            "s",
            f"{brute.best:.2f} s measured on {subset:,}, scaled by pairs",
        ),
        ratio_row(f"pHash speed-up ({label})", brute_full, banded.best),
    ]


def planted_vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors[1::100] = vectors[::100][: len(vectors[1::100])] + 0.1 * rng.standard_normal(
        (len(vectors[1::100]), DIM), dtype=np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float16)


def clip_rows(n: int, device: str) -> list[Row]:
    import torch

    log(f"CLIP cosine search over {n:,} x {DIM} float16 vectors on {device}")
    vectors = planted_vectors(n)
    pairs: list[np.ndarray] = []
    blockwise = measure(
        lambda: pairs.append(cosine_pairs(vectors, NEAR_THRESHOLD, device=device)), repeats=1
    )
    new_import = min(n, 1000)
    incremental = measure(
        lambda: cross_pairs(vectors[:new_import], vectors, NEAR_THRESHOLD, device=device),
        repeats=1,
    )
    queries = min(n, 200)
    matrix = torch.from_numpy(vectors).to(device=device, dtype=torch.float32)

    def one_at_a_time() -> None:
        for i in range(queries):
            sims = matrix[i + 1 :] @ matrix[i]
            torch.nonzero(sims >= NEAR_THRESHOLD).cpu()

    per_image = measure(one_at_a_time, repeats=1)
    # Row i compares with the n - i - 1 rows after it: on average half the matrix.
    naive_full = per_image.best / queries * n * (n / 2) / (n - queries / 2)
    planted = len(vectors[1::100])
    return [
        Row(
            f"CLIP blockwise, {n:,} vectors",
            blockwise.best,
            "s",
            f"{len(pairs[0]):,} pairs >= {NEAR_THRESHOLD} ({planted:,} planted), {device}",
        ),
        Row(
            f"CLIP one query per image, {n:,}",
            naive_full,
            "s",
            f"{per_image.best:.2f} s for {queries} queries, scaled",
        ),
        ratio_row("CLIP blockwise speed-up", naive_full, blockwise.best),
        Row(
            f"CLIP new import of {new_import:,} vs {n:,}",
            incremental.best,
            "s",
            f"500,000: {incremental.best * 500_000 / n:.0f} s (linear); cached shards not redone",
        ),
        Row(
            "CLIP blockwise, 500,000 (scaled)",
            blockwise.best * (500_000 / n) ** 2,
            "s",
            "quadratic in the number of images",
        ),
    ]


def exact_rows(seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    sizes = np.round(rng.lognormal(np.log(4e6), 0.5, STAT_FILES)).astype(np.int64)
    copies = rng.choice(STAT_FILES, STAT_FILES // 100, replace=False)
    sizes[copies[: len(copies) // 2]] = sizes[copies[len(copies) // 2 :]]  # byte copies
    started = time.perf_counter()
    _, inverse, counts = np.unique(sizes, return_inverse=True, return_counts=True)
    colliding = counts[inverse] > 1
    seconds = time.perf_counter() - started
    # Different photos of equal size differ in their first 64 KiB: only copies read in full.
    full_reads = len(copies)
    bytes_read = int(colliding.sum()) * HEAD_BYTES + int(sizes[copies].sum())
    return [
        Row(
            f"exact pass: files whose size collides, of {STAT_FILES:,}",
            int(colliding.sum()),
            "files",
            f"{len(copies):,} are byte copies; size grouping {seconds * 1e3:.0f} ms",
        ),
        Row("exact pass: files read in full", full_reads, "files", "size and head collide"),
        Row(
            "exact pass: GB read",
            bytes_read / 1e9,
            "GB",
            f"hashing every file: {sizes.sum() / 1e9:,.0f} GB",
        ),
        ratio_row("exact pass: fewer bytes read", float(sizes.sum()), float(bytes_read)),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "100K hashes, 10K vectors")
    parser.add_argument("--hashes", type=int, default=500_000, help="pHashes (500,000)")
    parser.add_argument("--vectors", type=int, default=100_000, help="CLIP vectors (100,000)")
    parser.add_argument("--device", default="cpu", help="torch device of the CLIP search")
    args = parser.parse_args(argv)
    n_hashes = 100_000 if args.quick else args.hashes
    n_vectors = 10_000 if args.quick else args.vectors
    subset = 10_000 if args.quick else 20_000
    if not args.json:
        log(machine_description())
    rows = hash_rows(n_hashes, subset, 0.5, "uniform bits")
    rows += hash_rows(n_hashes, subset, 0.25, "skewed bits")
    rows += clip_rows(n_vectors, args.device)
    rows += exact_rows()
    publish(f"duplicates ({n_hashes:,} hashes, {n_vectors:,} CLIP vectors)", rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
