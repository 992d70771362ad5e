"""Exact and near duplicates: byte-identical copies, bursts, re-exports and resized copies.

Per shard (``shard_hashes``): a 64-bit perceptual hash (pHash: the signs of the 8x8 lowest
DCT frequencies of a 32x32 grey downscale, against their median) and a difference hash
(dHash: 8x8 horizontal gradients of a 9x8 downscale) of every decoded image, computed from
its stored tier, never from the original. Rows: ``phash``, ``dhash`` (16 hex digits, first
bit = most significant), ``tier``.

Global (``find_duplicates``), over the library's current images:

- exact copies: file content is read only for files whose size equals another current file's
  size (everything else stays stat-only), first the first 64 KiB, then the whole file where
  sizes and heads still collide (blake2b, read-only). Digests are cached in
  ``duplicates/hashes.jsonl`` by (path, size, mtime_ns), so a re-run reads nothing again;
- near copies: candidate pairs by pHash Hamming distance (multi-index hashing: the 64 bits
  cut into bands, each looked up within a small radius, so 500K hashes are not compared
  pairwise) and by CLIP cosine (exact blockwise matrix products; each shard's pairs with
  itself and the shards before it are cached in ``duplicates/clip/<shard>.json``, so a new
  import is searched against the library, not the library against itself). A pair is
  confirmed when its cosine reaches ``near_threshold``, or its hash distance is at most
  ``hash_distance`` and, where both images have a CLIP vector, its cosine reaches
  ``HASH_SANITY_COSINE``.

Groups are connected components. Exact groups hold byte-identical files; near groups hold
images connected by near pairs (byte copies among them included) with at least two different
contents. Each group recommends a keeper: RAW over JPEG/HEIC, then most pixels, then the
sharpest, then the largest file, then the first path. ``groups.json`` holds them, with a
fingerprint of the inputs so that ``imganalyzer duplicates`` knows whether it is current.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imganalyzer.catalog.current import CurrentView, current_shards, file_versions
from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.decode.metadata import TIFF_RAW_EXTENSIONS
from imganalyzer.decode.tiers import TierReader
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK, error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batched import NOT_DECODED, choose_device, decode_failures

log = logging.getLogger(__name__)

DUPLICATES_VERSION = "1"  # bump when the hashes or the groups change
HASH_TIER = "clip"
NEAR_THRESHOLD = 0.95
HASH_DISTANCE = 8
# A hash match whose CLIP cosine is below this is two different images that happen to share
# a coarse layout (dark frames, skies, documents): rejected.
HASH_SANITY_COSINE = 0.85
# Neighbours kept per image from the CLIP search: bounds memory when thousands of images are
# alike (blank frames); the groups stay connected through the neighbours kept.
CLIP_TOP_K = 32
# Similarities computed at once by the CLIP search (float32: 256 MB).
SIMILARITIES_PER_BLOCK = 64 * 2**20
HEAD_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024
# Below this many hashes the plain pairwise comparison is as fast as the banded index.
BRUTE_FORCE_BELOW = 4096
# Widest band of the hash index: its lookup table has 2**bits entries.
MAX_BAND_BITS = 22
# Candidate pairs expanded at once by the banded index (memory bound: ~40 bytes each).
PAIRS_PER_CHUNK = 4_000_000
RAW_EXTENSIONS = frozenset(TIFF_RAW_EXTENSIONS | {".cr3", ".raf", ".x3f", ".srw"})
RAW_FORMATS = frozenset(ext.lstrip(".") for ext in RAW_EXTENSIONS)
_DCT_SIZE, _HASH_SIDE = 32, 8
_BLOCK_ROWS = 64  # tier rows read at once
Version = tuple[str, int, int]  # path, size, mtime_ns


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
                rows.append(error_row(entry, failures.get(index, NOT_DECODED)))
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
    return _sorted_pairs(found)


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
    found = []
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
    return _sorted_pairs(found)


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


def _sorted_pairs(found: Sequence[np.ndarray]) -> np.ndarray:
    pairs = [p for p in found if len(p)]
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


# --- Near pairs by CLIP cosine -------------------------------------------------------------------
def cosine_pairs(
    vectors: np.ndarray,
    threshold: float,
    top_k: int = CLIP_TOP_K,
    block: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Pairs (i < j) of L2-normalised rows whose cosine is at least ``threshold``, exact
    (blockwise matrix products over the upper triangle), at most ``top_k`` per row i:
    (k, 2) int64. ``block``: rows per product (None: a product of ~64M similarities).
    ``device``: a torch device; on CUDA the products run in float16."""
    matrix = _on_device(vectors, device)
    return _similar_rows(matrix, matrix, threshold, top_k, block, triangle=True)


def cross_pairs(
    queries: np.ndarray,
    targets: np.ndarray,
    threshold: float,
    top_k: int = CLIP_TOP_K,
    block: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Pairs (query row, target row) whose cosine is at least ``threshold``, at most ``top_k``
    per query: (k, 2) int64 (as ``cosine_pairs``, between two sets)."""
    return _similar_rows(
        _on_device(queries, device), _on_device(targets, device), threshold, top_k, block, False
    )


def _on_device(vectors: np.ndarray, device: str):
    import torch

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return torch.from_numpy(np.ascontiguousarray(vectors)).to(device=device, dtype=dtype)


def _similar_rows(queries, targets, threshold, top_k, block, triangle: bool) -> np.ndarray:
    import torch

    n = len(targets)
    if not len(queries) or not n:
        return np.zeros((0, 2), dtype=np.int64)
    block = block or min(1024, max(64, SIMILARITIES_PER_BLOCK // n))
    found = []
    with torch.inference_mode():
        for start in range(0, len(queries), block):
            stop = min(start + block, len(queries))
            # In a triangle, row i of the block against rows >= start: the upper triangle and
            # the block's own lower triangle, dropped below with the diagonal.
            offset = start if triangle else 0
            sims = queries[start:stop] @ targets[offset:].T
            rows, columns = (sims >= threshold).nonzero(as_tuple=True)
            values = sims[rows, columns].float().cpu().numpy()
            rows, columns = rows.cpu().numpy(), columns.cpu().numpy()
            keep = columns > rows if triangle else slice(None)
            pairs = _top_k(rows[keep], columns[keep], values[keep], top_k)
            found.append(pairs + np.array([start, offset]))
    return _sorted_pairs(found)


def _top_k(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """(rows, columns) of at most the ``k`` highest ``values`` of each row: (m, 2)."""
    if len(rows) and np.bincount(rows).max() > k:
        order = np.lexsort((-values, rows))
        rows, columns = rows[order], columns[order]
        first_of_row = np.searchsorted(rows, rows, "left")
        keep = np.arange(len(rows)) - first_of_row < k
        rows, columns = rows[keep], columns[keep]
    return np.stack([rows, columns], axis=1).astype(np.int64)


def pair_cosines(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    if not len(pairs):
        return np.zeros(0, dtype=np.float32)
    first = vectors[pairs[:, 0]].astype(np.float32)
    return np.einsum("ij,ij->i", first, vectors[pairs[:, 1]].astype(np.float32))


# --- CLIP pairs, shard by shard, cached -----------------------------------------------------------
def shard_clip_pairs(
    view: CurrentView, threshold: float, device: str = "cpu"
) -> tuple[list[tuple[Version, Version]], int]:
    """File version pairs whose CLIP cosine reaches ``threshold``, and how many shards were
    searched.

    Each shard's pairs with itself and with the shards before it (in ingest order) are cached
    in ``duplicates/clip/<shard>.json`` (``Layout.duplicate_pair_cache``) under a key of
    those shards' embedding files, over all embedded rows (current or not: the caller keeps
    the current ones). A new import searches only its shards against the library, not the
    whole library against itself again.
    """
    shards = [s for s in view.shards if view.result_file("embedding", s, ".npy").is_file()]
    keys, digest = (
        {},
        hashlib.blake2b(json.dumps([DUPLICATES_VERSION, threshold, CLIP_TOP_K]).encode()),
    )
    for shard in shards:
        files = [view.result_file("embedding", shard, suffix) for suffix in (".npy", ".jsonl")]
        digest.update(json.dumps([shard, file_versions(files)]).encode())
        keys[shard] = digest.hexdigest()
    cache = view.layout.duplicate_pair_cache
    pairs = {shard: _read_pair_cache(cache(shard), keys[shard]) for shard in shards}
    stale = [shard for shard in shards if pairs[shard] is None]
    if stale:
        needed = shards[: shards.index(stale[-1]) + 1]
        paths, matrix, offsets = _embedded_rows(view, needed)
        targets = _on_device(matrix, device)
        for index, shard in enumerate(needed):
            if pairs[shard] is not None:
                continue
            first, last = offsets[index], offsets[index + 1]
            queries = targets[first:last]
            found = _similar_rows(queries, queries, threshold, CLIP_TOP_K, None, triangle=True)
            found = [found + first]
            if first:
                earlier = _similar_rows(
                    queries, targets[:first], threshold, CLIP_TOP_K, None, False
                )
                found.append(earlier + np.array([first, 0]))
            pairs[shard] = [(paths[i], paths[j]) for i, j in _sorted_pairs(found).tolist()]
            _write_pair_cache(cache(shard), keys[shard], pairs[shard])
    return [pair for shard in shards for pair in pairs[shard] or []], len(stale)


def _embedded_rows(
    view: CurrentView, shards: list[str]
) -> tuple[list[Version], np.ndarray, list[int]]:
    """File versions (path, size, mtime_ns) and float16 vectors of every embedded row of
    ``shards``, and each shard's first row."""
    paths, matrices, offsets = [], [], [0]
    for shard in shards:
        rows = [
            (index, (row["path"], row["size"], row["mtime_ns"]))
            for index, row in enumerate(read_rows(view.result_file("embedding", shard)))
            if row["status"] == OK
        ]
        matrix = np.load(view.result_file("embedding", shard, ".npy"), mmap_mode="r")
        matrices.append(np.asarray(matrix[[index for index, _ in rows]], dtype=np.float16))
        paths += [path for _, path in rows]
        offsets.append(len(paths))
    return paths, np.concatenate(matrices), offsets


def _read_pair_cache(path: Path, key: str) -> list[tuple[Version, Version]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("key") != key:
        return None
    return [(tuple(a), tuple(b)) for a, b in data["pairs"]]


def _write_pair_cache(path: Path, key: str, pairs: list[tuple[Version, Version]]) -> None:
    atomic_write_text(path, json.dumps({"key": key, "pairs": pairs}) + "\n")


# --- Exact copies --------------------------------------------------------------------------------
def content_digest(path: Path, limit: int | None = None) -> str:
    """blake2b of a file's first ``limit`` bytes (None: all), read in chunks, read-only."""
    digest = hashlib.blake2b(digest_size=16)
    remaining = limit if limit is not None else math.inf
    with open(path, "rb") as handle:
        while remaining > 0:
            chunk = handle.read(int(min(READ_CHUNK, remaining)))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


@dataclass
class ExactStats:
    size_collisions: int = 0  # files sharing their size with another current file
    heads_read: int = 0
    files_read: int = 0  # files read in full
    cache_hits: int = 0
    unreadable: int = 0


class DigestCache:
    """``duplicates/hashes.jsonl``: head and full digests by (path, size, mtime_ns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, int, int], dict[str, str | None]] = {}
        if path.is_file():
            for row in read_rows(path):
                key = (row["path"], row["size"], row["mtime_ns"])
                self.rows[key] = {"head": row.get("head"), "full": row.get("full")}
        self.changed = False

    def get(self, entry: Entry, kind: str) -> str | None:
        return self.rows.get((entry.path, entry.size, entry.mtime_ns), {}).get(kind)

    def put(self, entry: Entry, kind: str, digest: str) -> None:
        self.rows.setdefault((entry.path, entry.size, entry.mtime_ns), {})[kind] = digest
        self.changed = True

    def save(self, keep: Iterable[Entry]) -> None:
        """Write the cache, keeping only the rows of ``keep`` (current entries)."""
        keys = {(e.path, e.size, e.mtime_ns) for e in keep}
        stale = len(self.rows.keys() - keys)
        if not (self.changed or stale):
            return
        rows = [
            {"path": p, "size": s, "mtime_ns": m, **digests}
            for (p, s, m), digests in sorted(self.rows.items())
            if (p, s, m) in keys
        ]
        write_rows(self.path, rows)


def exact_digests(
    entries: Sequence[Entry], library: Path, cache: DigestCache, stats: ExactStats
) -> dict[str, str]:
    """{path: full content digest} of the files that may have a byte-identical copy: those
    whose size collides, then whose first ``HEAD_BYTES`` collide too. Others are not read."""
    by_size: dict[int, list[Entry]] = {}
    for entry in entries:
        by_size.setdefault(entry.size, []).append(entry)
    colliding = [group for group in by_size.values() if len(group) > 1]
    stats.size_collisions = sum(len(group) for group in colliding)
    digests: dict[str, str] = {}
    for group in colliding:
        by_head: dict[str, list[Entry]] = {}
        for entry in group:
            head = _cached_digest(entry, library, "head", cache, stats)
            if head is not None:
                by_head.setdefault(head, []).append(entry)
        for head, same_head in by_head.items():
            if len(same_head) < 2:
                continue
            for entry in same_head:
                # A file no longer than the head was read whole already.
                full = head if entry.size <= HEAD_BYTES else None
                full = full or _cached_digest(entry, library, "full", cache, stats)
                if full is not None:
                    digests[entry.path] = full
    return digests


def _cached_digest(
    entry: Entry, library: Path, kind: str, cache: DigestCache, stats: ExactStats
) -> str | None:
    cached = cache.get(entry, kind)
    if cached is not None:
        stats.cache_hits += 1
        return cached
    path = library / entry.path
    try:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != entry.version:
            return None  # changed since the scan: the next run sees its new version
        digest = content_digest(path, HEAD_BYTES if kind == "head" else None)
    except OSError as error:
        log.warning("duplicates: cannot read %s: %s", entry.path, error)
        stats.unreadable += 1
        return None
    if kind == "head":
        stats.heads_read += 1
    else:
        stats.files_read += 1
    cache.put(entry, kind, digest)
    return digest


# --- Union-find ----------------------------------------------------------------------------------
class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def components(self, members: Iterable[int]) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i in members:
            groups.setdefault(self.find(i), []).append(i)
        return [sorted(g) for g in groups.values() if len(g) > 1]


# --- The library's images ------------------------------------------------------------------------
@dataclass
class Images:
    """The current images, one index each, with what the grouping needs."""

    entries: list[Entry]
    shards: list[str]
    hashes: np.ndarray  # (n,) uint64 pHash
    has_hash: np.ndarray  # (n,) bool
    dhashes: np.ndarray  # (n,) uint64
    vectors: np.ndarray | None  # (n, dim) float16, zeros where missing
    has_vector: np.ndarray  # (n,) bool


def load_images(view: CurrentView, use_clip: bool) -> Images:
    entries, shards, phashes, dhashes, vectors = [], [], [], [], []
    for shard, current in view.shards.items():
        rows = view.rows("duplicates", shard)
        base = len(entries)
        for entry in current.entries:
            row = rows.get(entry.path)
            ok = row is not None and row["status"] == OK
            entries.append(entry)
            shards.append(shard)
            phashes.append(int(row["phash"], 16) if ok else -1)
            dhashes.append(int(row["dhash"], 16) if ok else 0)
        if use_clip:
            vectors.append(_shard_vectors(view, shard, current.entries, base))
    n = len(entries)
    has_hash = np.array([h >= 0 for h in phashes], dtype=bool)
    hashes = np.array([max(h, 0) for h in phashes], dtype=np.uint64)
    matrix, has_vector = _stack_vectors([v for v in vectors if v is not None], n)
    return Images(
        entries, shards, hashes, has_hash, np.array(dhashes, dtype=np.uint64), matrix, has_vector
    )


def _shard_vectors(
    view: CurrentView, shard: str, entries: list[Entry], base: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(global indices, float16 rows) of a shard's current embedded images."""
    found = view.vectors(shard)
    if found is None:
        return None
    paths, rows = found
    position = {entry.path: base + i for i, entry in enumerate(entries)}
    matrix = np.load(view.result_file("embedding", shard, ".npy"), mmap_mode="r")
    indices = np.array([position[p] for p in paths], dtype=np.int64)
    return indices, np.asarray(matrix[rows], dtype=np.float16)


def _stack_vectors(
    parts: list[tuple[np.ndarray, np.ndarray]], n: int
) -> tuple[np.ndarray | None, np.ndarray]:
    has_vector = np.zeros(n, dtype=bool)
    if not parts:
        return None, has_vector
    matrix = np.zeros((n, parts[0][1].shape[1]), dtype=np.float16)
    for indices, rows in parts:
        matrix[indices] = rows
        has_vector[indices] = True
    return matrix, has_vector


# --- Groups and keepers --------------------------------------------------------------------------
@dataclass
class Member:
    path: str
    size: int
    width: int | None
    height: int | None
    sharpness: float | None
    format: str
    raw: bool
    digest: str | None = None
    hash_distance: int | None = None  # pHash bits from the keeper
    cosine: float | None = None  # CLIP cosine with the keeper


@dataclass
class Group:
    kind: str  # "exact" | "near"
    keeper: str
    reason: str
    members: list[Member]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "keeper": self.keeper,
            "reason": self.reason,
            "members": [asdict(m) for m in self.members],
        }


@dataclass
class DuplicateReport:
    groups: list[Group]
    settings: dict[str, Any]
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": DUPLICATES_VERSION,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "stats": self.stats,
            "groups": [g.as_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DuplicateReport:
        groups = [
            Group(g["kind"], g["keeper"], g["reason"], [Member(**m) for m in g["members"]])
            for g in data["groups"]
        ]
        return cls(groups, data["settings"], data["fingerprint"], data.get("stats", {}))

    def of_kind(self, kind: str) -> list[Group]:
        return [g for g in self.groups if kind in ("all", g.kind)]

    def summary(self) -> str:
        exact = sum(g.kind == "exact" for g in self.groups)
        return f"duplicates: {exact} exact and {len(self.groups) - exact} near groups"


def keeper_key(member: Member) -> tuple:
    """Sort key: the recommended keeper sorts first."""
    pixels = (member.width or 0) * (member.height or 0)
    return (not member.raw, -pixels, -(member.sharpness or 0.0), -member.size, member.path)


def choose_keeper(members: list[Member]) -> tuple[Member, str]:
    ranked = sorted(members, key=keeper_key)
    keeper, runner_up = ranked[0], ranked[1]
    return keeper, _keeper_reason(keeper, runner_up)


def _keeper_reason(keeper: Member, other: Member) -> str:
    if keeper.raw != other.raw:
        return f"RAW ({keeper.format}) over {other.format}"
    pixels = (keeper.width or 0) * (keeper.height or 0)
    if pixels != (other.width or 0) * (other.height or 0):
        return f"most pixels ({keeper.width}x{keeper.height})"
    if (keeper.sharpness or 0.0) != (other.sharpness or 0.0):
        return f"sharpest ({keeper.sharpness:g})"
    if keeper.size != other.size:
        return f"largest file ({keeper.size} bytes)"
    return "identical: first path"


def image_format(path: str, metadata: dict[str, Any] | None) -> tuple[str, bool]:
    """(format name, is RAW), from the metadata row when there is one, else the extension."""
    fmt = (metadata or {}).get("format") if (metadata or {}).get("status") == OK else None
    extension = os.path.splitext(path)[1].lower()
    fmt = str(fmt or extension.lstrip(".") or "unknown").lower()
    fmt = {"jpg": "jpeg", "tif": "tiff", "heif": "heic"}.get(fmt, fmt)
    return fmt, fmt in RAW_FORMATS or extension in RAW_EXTENSIONS


class _ShardRows:
    """Technical and metadata rows, read only for the shards holding group members."""

    def __init__(self, view: CurrentView) -> None:
        self.view = view
        self._rows: dict[tuple[str, str], dict[str, dict]] = {}

    def row(self, module: str, shard: str, path: str) -> dict[str, Any] | None:
        if (module, shard) not in self._rows:
            self._rows[module, shard] = self.view.rows(module, shard)
        return self._rows[module, shard].get(path)


def _member(images: Images, index: int, rows: _ShardRows, digests: dict[str, str]) -> Member:
    entry, shard = images.entries[index], images.shards[index]
    technical = rows.row("technical", shard, entry.path) or {}
    metadata = rows.row("metadata", shard, entry.path)
    fmt, raw = image_format(entry.path, metadata)
    width = technical.get("width") or (metadata or {}).get("width")
    height = technical.get("height") or (metadata or {}).get("height")
    return Member(
        entry.path, entry.size, width, height, technical.get("sharpness"), fmt, raw,
        digests.get(entry.path),
    )  # fmt: skip


def _group(
    kind: str, indices: list[int], images: Images, rows: _ShardRows, digests: dict[str, str]
) -> Group:
    members = [_member(images, i, rows, digests) for i in indices]
    keeper, reason = choose_keeper(members)
    k = indices[members.index(keeper)]
    for i, member in zip(indices, members, strict=True):
        if member is keeper:
            continue
        if images.has_hash[i] and images.has_hash[k]:
            member.hash_distance = int(hamming(images.hashes[i], images.hashes[k]))
        if images.vectors is not None and images.has_vector[i] and images.has_vector[k]:
            cosine = pair_cosines(images.vectors, np.array([[i, k]]))[0]
            member.cosine = round(float(cosine), 4)
    members.sort(key=lambda m: (m is not keeper, m.path))
    return Group(kind, keeper.path, reason, members)


# --- The global step -----------------------------------------------------------------------------
def find_duplicates(
    results: str | os.PathLike,
    library: str | os.PathLike,
    near_threshold: float = NEAR_THRESHOLD,
    hash_distance: int = HASH_DISTANCE,
    use_clip: bool = True,
    device: str = "auto",
    view_file: str | os.PathLike | None = None,
) -> DuplicateReport:
    """Exact and near duplicate groups among the library's current images (see the module
    docstring). ``device``: where the CLIP similarity products run (auto, cuda, mps, cpu):
    quadratic in the number of images, so a GPU matters beyond ~100K images.
    ``view_file``: the run's recorded library view (else the library is scanned)."""
    started = time.perf_counter()
    library = Path(library)
    view = current_shards(results, library, view_file)
    settings = _settings(near_threshold, hash_distance, use_clip)
    images = load_images(view, use_clip)
    cache = DigestCache(view.layout.duplicate_hashes)
    exact_stats = ExactStats()
    digests = exact_digests(images.entries, library, cache, exact_stats)
    cache.save(images.entries)
    torch_device = str(choose_device(device)) if use_clip else "cpu"
    by_clip, searched = None, 0
    if images.vectors is not None:
        path_pairs, searched = shard_clip_pairs(view, near_threshold, torch_device)
        by_clip = _index_pairs(images, path_pairs)
    pairs, near_stats = near_pairs(images, hash_distance, by_clip)
    near_stats["clip_shards_searched"] = searched
    rows = _ShardRows(view)
    groups = _exact_groups(images, digests, rows) + _near_groups(images, pairs, digests, rows)
    stats = {
        "images": len(images.entries),
        "hashed": int(images.has_hash.sum()),
        "embedded": int(images.has_vector.sum()),
        **asdict(exact_stats),
        **near_stats,
        "seconds": round(time.perf_counter() - started, 2),
    }
    report = DuplicateReport(groups, settings, fingerprint(view, settings), stats)
    log.info("%s (%s)", report.summary(), stats)
    return report


def _settings(near_threshold: float, hash_distance: int, use_clip: bool) -> dict[str, Any]:
    return {
        "near_threshold": near_threshold,
        "hash_distance": hash_distance,
        "use_clip": use_clip,
        "hash_sanity_cosine": HASH_SANITY_COSINE,
    }


def near_pairs(
    images: Images, hash_distance: int, by_clip: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Confirmed near pairs (global indices, i < j): hash candidates that pass the CLIP sanity
    bound where both have vectors, and ``by_clip``, the pairs found by CLIP cosine."""
    hashed = np.flatnonzero(images.has_hash)
    by_hash = hashed[hash_pairs(images.hashes[hashed], hash_distance)]
    confirmed = [by_hash]
    stats = {"hash_candidates": len(by_hash), "clip_pairs": 0}
    if images.vectors is not None:
        both = images.has_vector[by_hash[:, 0]] & images.has_vector[by_hash[:, 1]]
        cosines = pair_cosines(images.vectors, by_hash)
        confirmed = [by_hash[~both | (cosines >= HASH_SANITY_COSINE)]]
    if by_clip is not None:
        stats["clip_pairs"] = len(by_clip)
        confirmed.append(by_clip)
    pairs = _sorted_pairs(confirmed)
    stats["near_pairs"] = len(pairs)
    return pairs, stats


def _index_pairs(images: Images, path_pairs: list[tuple[Version, Version]]) -> np.ndarray:
    """File version pairs -> sorted index pairs, leaving out versions that are not current."""
    position = {
        (entry.path, entry.size, entry.mtime_ns): index
        for index, entry in enumerate(images.entries)
    }
    pairs = [
        sorted((position[a], position[b]))
        for a, b in path_pairs
        if a in position
        and b in position
        and images.has_vector[position[a]]
        and images.has_vector[position[b]]
    ]
    return _sorted_pairs([np.array(pairs, dtype=np.int64).reshape(-1, 2)])


def _exact_groups(images: Images, digests: dict[str, str], rows: _ShardRows) -> list[Group]:
    by_digest: dict[str, list[int]] = {}
    for index, entry in enumerate(images.entries):
        if entry.path in digests:
            by_digest.setdefault(digests[entry.path], []).append(index)
    return [
        _group("exact", indices, images, rows, digests)
        for indices in sorted(by_digest.values())
        if len(indices) > 1
    ]


def _near_groups(
    images: Images, pairs: np.ndarray, digests: dict[str, str], rows: _ShardRows
) -> list[Group]:
    """Components of the near pairs (and byte copies) holding two different contents."""
    union = UnionFind(len(images.entries))
    for i, j in pairs:
        union.union(int(i), int(j))
    members = set(pairs.ravel().tolist())
    first_of_digest: dict[str, int] = {}
    for index, entry in enumerate(images.entries):
        digest = digests.get(entry.path)
        if digest is not None:
            union.union(first_of_digest.setdefault(digest, index), index)
            members.add(index)
    groups = []
    for component in sorted(union.components(members)):
        contents = {digests.get(images.entries[i].path, images.entries[i].path) for i in component}
        if len(contents) > 1:
            groups.append(_group("near", component, images, rows, digests))
    return groups


# --- groups.json ---------------------------------------------------------------------------------
def fingerprint(view: CurrentView, settings: dict[str, Any]) -> str:
    """A digest of the current entries, the result files the groups read and the settings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([DUPLICATES_VERSION, settings], sort_keys=True).encode())
    for shard, current in view.shards.items():
        for entry in current.entries:
            digest.update(
                f"{entry.path}\0{entry.size}\0{entry.mtime_ns}\n".encode("utf-8", "replace")
            )
        files = [view.result_file(m, shard) for m in ("duplicates", "technical", "metadata")]
        files += [view.result_file("embedding", shard, s) for s in (".jsonl", ".npy")]
        digest.update(json.dumps(file_versions(files)).encode())
    return digest.hexdigest()


def write_duplicates(
    results: str | os.PathLike,
    library: str | os.PathLike,
    out_json: str | os.PathLike,
    **settings: Any,
) -> DuplicateReport:
    """``find_duplicates`` and write ``groups.json`` (atomically)."""
    report = find_duplicates(results, library, **settings)
    atomic_write_text(out_json, json.dumps(report.as_dict(), indent=1) + "\n")
    return report


def groups_path(results: str | os.PathLike) -> Path:
    return Layout(results).duplicate_groups


def current_report(
    results: str | os.PathLike,
    library: str | os.PathLike,
    near_threshold: float = NEAR_THRESHOLD,
    hash_distance: int = HASH_DISTANCE,
    use_clip: bool = True,
    device: str = "auto",
) -> DuplicateReport:
    """``groups.json`` when it describes the current library with these settings, else the
    groups computed now (``groups.json`` is left as it is)."""
    stored = groups_path(results)
    settings = _settings(near_threshold, hash_distance, use_clip)
    if stored.is_file():
        data = json.loads(stored.read_text(encoding="utf-8"))
        view = current_shards(results, library)
        if data.get("version") == DUPLICATES_VERSION and data.get("fingerprint") == fingerprint(
            view, settings
        ):
            return DuplicateReport.from_dict(data)
    return find_duplicates(results, library, near_threshold, hash_distance, use_clip, device)


def format_groups(groups: list[Group]) -> str:
    """One block per group, the keeper marked with ``*``."""
    if not groups:
        return "no duplicates found"
    blocks = []
    for number, group in enumerate(groups, 1):
        what = "byte-identical files" if group.kind == "exact" else "similar images"
        lines = [f"{group.kind} group {number}: {len(group.members)} {what}; keep {group.keeper}"]
        lines.append(f"  reason: {group.reason}")
        lines += [_member_line(m, m.path == group.keeper) for m in group.members]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _member_line(member: Member, keeper: bool) -> str:
    size = f"{member.width}x{member.height}" if member.width else "?x?"
    parts = [f"{'*' if keeper else ' '} {member.path}", size, f"{member.size / 1e6:.2f} MB"]
    parts.append(member.format.upper())
    if member.sharpness is not None:
        parts.append(f"sharpness {member.sharpness:g}")
    if member.hash_distance is not None:
        parts.append(f"hash distance {member.hash_distance}")
    if member.cosine is not None:
        parts.append(f"cosine {member.cosine:.3f}")
    return "  " + "  ".join(parts)
