"""Perceptual hashes of every decoded image, per shard, and the near pairs they find by
Hamming distance.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.runtime.batched import NOT_DECODED, decode_failures
from imganalyzer.runtime.batches import RowFailure

log = logging.getLogger(__name__)

DUPLICATES_VERSION = "1"  # bump when the hashes or the groups change
HASH_TIER = "clip"


# Below this many hashes the plain pairwise comparison is as fast as the banded index.
BRUTE_FORCE_BELOW = 4096
# Widest band of the hash index: its lookup table has 2**bits entries.
MAX_BAND_BITS = 22
# Candidate pairs expanded at once by the banded index (memory bound: ~40 bytes each).
PAIRS_PER_CHUNK = 4_000_000


_DCT_SIZE, _HASH_SIDE = 32, 8
_BLOCK_ROWS = 64  # tier rows read at once


# --- Perceptual hashes ---------------------------------------------------------------------------
def _dct_matrix(size: int) -> np.ndarray:
    """Unnormalised DCT-II basis: scaling every coefficient alike leaves pHash unchanged."""
    k, n = np.arange(size)[:, None], np.arange(size)[None, :]
    return np.cos(np.pi * (2 * n + 1) * k / (2 * size))


_DCT = _dct_matrix(_DCT_SIZE)


def _grey(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)


def _pack_bits(bits: np.ndarray) -> int:
    return int("".join("1" if bit else "0" for bit in bits.ravel()), 2)


def phash(rgb: np.ndarray) -> int:
    """64-bit pHash of an (h, w, 3) uint8 image (the ``imagehash.phash`` recipe)."""
    pixels = _grey(rgb, _DCT_SIZE, _DCT_SIZE)
    low = (_DCT @ pixels @ _DCT.T)[:_HASH_SIDE, :_HASH_SIDE]
    return _pack_bits(low > np.median(low))


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grey downscale brighter than its left?"""
    pixels = _grey(rgb, _HASH_SIDE + 1, _HASH_SIDE)
    return _pack_bits(pixels[:, 1:] > pixels[:, :-1])


def hash_hex(value: int) -> str:
    return f"{value:016x}"


def shard_hashes(
    tiers: str | os.PathLike,
    manifest: str | os.PathLike,
    out_jsonl: str | os.PathLike,
    tier: str = HASH_TIER,
    technical: str | os.PathLike | None = None,
) -> int:
    """Write the pHash and dHash of every decoded image of a shard, from its stored ``tier``.

    Undecoded images get error rows with the decode job's reason (from ``technical``, when
    given). Returns the number of images hashed.
    """
    entries = read_manifest(manifest)
    reader = TierReader(tiers)
    if reader.n_images != len(entries):
        raise ValueError(f"{tiers}: {reader.n_images} images, manifest has {len(entries)}")
    failures = decode_failures(None if technical is None else os.fspath(technical), len(entries))
    rows, hashed = [], 0
    for start in range(0, len(entries), _BLOCK_ROWS):
        images, sizes, ok = reader.read(tier, start, min(start + _BLOCK_ROWS, len(entries)))
        for offset, (image, (height, width)) in enumerate(zip(images, sizes, strict=True)):
            index, entry = start + offset, entries[start + offset]
            if not ok[offset]:
                failure = failures.get(index) or RowFailure(NOT_DECODED)
                rows.append(error_row(entry, failure.reason, failure.kind))
                continue
            rgb = image[:height, :width]
            fields = {"phash": hash_hex(phash(rgb)), "dhash": hash_hex(dhash(rgb)), "tier": tier}
            rows.append(ok_row(entry, fields))
            hashed += 1
    write_rows(out_jsonl, rows)
    log.info("duplicate hashes: %d of %d images hashed", hashed, len(entries))
    return hashed


# --- Near pairs by hash distance -----------------------------------------------------------------
def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def hash_pairs_brute_force(hashes: np.ndarray, max_distance: int, block: int = 1024) -> np.ndarray:
    """Every pair (i < j) within ``max_distance`` bits, by comparing all pairs: (k, 2) int64."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        close = hamming(rows[:, None], hashes[None, start:]) <= max_distance
        i, j = np.nonzero(np.triu(close, k=1))
        found.append(np.stack([i + start, j + start], axis=1))
    return sorted_pairs(found)


def hash_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair (i < j) of ``hashes`` (uint64) within ``max_distance`` bits: (k, 2) int64.

    Multi-index hashing: cut into m bands, two hashes within d bits differ in some band by at
    most d // m bits (pigeonhole). Each band is a lookup table; each hash probes its band key
    with every flip of up to d // m bits, and only the hashes found are compared in full.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) <= BRUTE_FORCE_BELOW or max_distance >= 32:
        return hash_pairs_brute_force(hashes, max_distance)
    bands = band_layout(len(hashes), max_distance)
    radius = max_distance // len(bands)
    found: list[np.ndarray] = []
    for shift, width in bands:
        keys = ((hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int32)
        # Probing in key order keeps the table lookups and hash reads nearly sequential.
        order = np.argsort(keys, kind="stable")
        sorted_keys, sorted_hashes = keys[order], hashes[order]
        # bucket k holds positions bounds[k]:bounds[k + 1] (int32: n < 2**31)
        bounds = np.zeros((1 << width) + 1, dtype=np.int32)
        np.cumsum(np.bincount(keys, minlength=1 << width), out=bounds[1:])
        # A pair whose keys differ by a flip is probed only from the key with the flip's top
        # bit clear, so it is found once; equal keys pair up within their bucket.
        clear = [np.flatnonzero((sorted_keys >> bit) & 1 == 0) for bit in range(width)]
        everyone = np.arange(len(sorted_keys))
        for flip in _flip_masks(width, radius):
            positions = clear[flip.bit_length() - 1] if flip else everyone
            probes = sorted_keys[positions] ^ np.int32(flip)
            starts = bounds[probes]
            counts = bounds[probes + 1] - starts
            pairs = _probe_pairs(
                sorted_hashes, positions, counts, starts, max_distance, own_bucket=not flip
            )
            found.extend(np.sort(order[p], axis=1) for p in pairs)
    return sorted_pairs(found)


def band_layout(n: int, max_distance: int) -> list[tuple[int, int]]:
    """(bit shift, width) of each band: the count of bands with the fewest expected lookups
    plus candidates, for ``n`` uniformly spread hashes."""

    def bands_of(m: int) -> list[tuple[int, int]]:
        widths = [64 // m + (1 if b < 64 % m else 0) for b in range(m)]
        shifts = np.cumsum([0] + widths[:-1])
        return [(int(s), w) for s, w in zip(shifts, widths, strict=True)]

    def cost(m: int) -> float:
        radius = max_distance // m
        return sum(_flip_count(w, radius) * (1 + n / 2.0**w) for _, w in bands_of(m))

    smallest = math.ceil(64 / MAX_BAND_BITS)
    return bands_of(min(range(smallest, max(smallest, max_distance + 1) + 1), key=cost))


def _flip_count(width: int, radius: int) -> int:
    return sum(math.comb(width, k) for k in range(radius + 1))


def _flip_masks(width: int, radius: int) -> Iterator[int]:
    for k in range(radius + 1):
        for bits in itertools.combinations(range(width), k):
            yield sum(1 << b for b in bits)


def _probe_pairs(
    hashes: np.ndarray,
    positions: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    limit: int,
    own_bucket: bool,
) -> Iterator[np.ndarray]:
    """The pairs (p, q) where p = ``positions[k]``, q lies in p's probed bucket (``starts[k]``,
    ``counts[k]`` long; ``own_bucket``: p's own, then only p < q) and ``hashes[q]`` is within
    ``limit`` bits of ``hashes[p]``; in chunks of at most ``PAIRS_PER_CHUNK`` candidates."""
    queries = np.flatnonzero(counts)
    if not len(queries):
        return
    per_query = counts[queries]
    ends = np.cumsum(per_query)
    cut = 0
    while cut < len(queries):
        stop = int(np.searchsorted(ends, ends[cut] - per_query[cut] + PAIRS_PER_CHUNK, "right"))
        stop = max(stop, cut + 1)
        chunk, sizes = queries[cut:stop], per_query[cut:stop]
        first = np.repeat(positions[chunk], sizes)
        within = np.arange(len(first)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        second = np.repeat(starts[chunk], sizes) + within
        if own_bucket:
            keep = first < second
            first, second = first[keep], second[keep]
        keep = hamming(hashes[first], hashes[second]) <= limit
        yield np.stack([first[keep], second[keep]], axis=1)
        cut = stop


def sorted_pairs(found: Sequence[np.ndarray]) -> np.ndarray:
    pairs = [p for p in found if len(p)]
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)
