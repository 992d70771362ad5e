"""Near pairs by CLIP cosine: exact blockwise matrix products, and each shard's pairs cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imganalyzer.catalog.current import CurrentView
from imganalyzer.files import atomic_write_text
from imganalyzer.results import OK
from imganalyzer.steps.duplicates_hashes import DUPLICATES_VERSION, sorted_pairs
from imganalyzer.store import ResultsStore

if TYPE_CHECKING:
    import torch  # imported where used: the model-free steps never load it

# Neighbours kept per image from the CLIP search: bounds memory when thousands of images are
# alike (blank frames); the groups stay connected through the neighbours kept.
CLIP_TOP_K = 32
# Similarities computed at once by the CLIP search (float32: 256 MB).
SIMILARITIES_PER_BLOCK = 64 * 2**20


Version = tuple[str, int, int]  # path, size, mtime_ns


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


def _on_device(vectors: np.ndarray, device: str) -> torch.Tensor:
    import torch

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return torch.from_numpy(np.ascontiguousarray(vectors)).to(device=device, dtype=dtype)


def _similar_rows(
    queries: torch.Tensor,
    targets: torch.Tensor,
    threshold: float,
    top_k: int,
    block: int | None,
    triangle: bool,
) -> np.ndarray:
    import torch

    n = len(targets)
    if not len(queries) or not n:
        return np.zeros((0, 2), dtype=np.int64)
    block = block or min(1024, max(64, SIMILARITIES_PER_BLOCK // n))
    found: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(queries), block):
            stop = min(start + block, len(queries))
            # In a triangle, row i of the block against rows >= start: the upper triangle and
            # the block's own lower triangle, dropped below with the diagonal.
            offset = start if triangle else 0
            sims = queries[start:stop] @ targets[offset:].T
            hit_rows, hit_columns = (sims >= threshold).nonzero(as_tuple=True)
            values = sims[hit_rows, hit_columns].float().cpu().numpy()
            rows, columns = hit_rows.cpu().numpy(), hit_columns.cpu().numpy()
            keep = columns > rows if triangle else slice(None)
            pairs = _top_k(rows[keep], columns[keep], values[keep], top_k)
            found.append(pairs + np.array([start, offset]))
    return sorted_pairs(found)


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
    store: ResultsStore, view: CurrentView, threshold: float, device: str = "cpu"
) -> tuple[list[tuple[Version, Version]], int]:
    """File version pairs whose CLIP cosine reaches ``threshold``, and how many shards were
    searched.

    Each shard's pairs with itself and with the shards before it (in ingest order) are cached
    in ``duplicates/clip/<shard>.json`` (``Layout.duplicate_pair_cache``) under a key of
    those shards' embedding files, over all embedded rows (current or not: the caller keeps
    the current ones). A new import searches only its shards against the library, not the
    whole library against itself again.
    """
    shards = [s for s in view.shards if store.has_array("embedding", s)]
    keys, digest = (
        {},
        hashlib.blake2b(json.dumps([DUPLICATES_VERSION, threshold, CLIP_TOP_K]).encode()),
    )
    for shard in shards:
        digest.update(json.dumps([shard, store.embedding_versions(shard)]).encode())
        keys[shard] = digest.hexdigest()
    cache = store.layout.duplicate_pair_cache
    pairs = {shard: _read_pair_cache(cache(shard), keys[shard]) for shard in shards}
    stale = [shard for shard in shards if pairs[shard] is None]
    if stale:
        needed = shards[: shards.index(stale[-1]) + 1]
        paths, matrix, offsets = _embedded_rows(store, needed)
        targets = _on_device(matrix, device)
        for index, shard in enumerate(needed):
            if pairs[shard] is not None:
                continue
            first, last = offsets[index], offsets[index + 1]
            queries = targets[first:last]
            within = _similar_rows(queries, queries, threshold, CLIP_TOP_K, None, triangle=True)
            found = [within + first]
            if first:
                earlier = _similar_rows(
                    queries, targets[:first], threshold, CLIP_TOP_K, None, False
                )
                found.append(earlier + np.array([first, 0]))
            shard_pairs = [(paths[i], paths[j]) for i, j in sorted_pairs(found).tolist()]
            _write_pair_cache(cache(shard), keys[shard], shard_pairs)
            pairs[shard] = shard_pairs
    return [pair for shard in shards for pair in pairs[shard] or []], len(stale)


def _embedded_rows(
    store: ResultsStore, shards: list[str]
) -> tuple[list[Version], np.ndarray, list[int]]:
    """File versions (path, size, mtime_ns) and float16 vectors of every embedded row of
    ``shards``, and each shard's first row."""
    paths, matrices, offsets = [], [], [0]
    for shard in shards:
        rows = [
            (index, (row["path"], row["size"], row["mtime_ns"]))
            for index, row in enumerate(store.rows("embedding", shard))
            if row["status"] == OK
        ]
        matrix = store.array("embedding", shard, mmap=True)
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
