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
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog.current import CurrentShard, CurrentView, current_shards
from imganalyzer.catalog.manifests import Entry
from imganalyzer.config import Settings
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK
from imganalyzer.runtime.batched import choose_device
from imganalyzer.steps.duplicates_clip import Version, pair_cosines, shard_clip_pairs
from imganalyzer.steps.duplicates_exact import DigestCache, ExactStats, exact_digests
from imganalyzer.steps.duplicates_groups import (
    DuplicateReport,
    Group,
    Member,
    UnionFind,
    choose_keeper,
    image_format,
)
from imganalyzer.steps.duplicates_hashes import (
    DUPLICATES_VERSION,
    hamming,
    hash_pairs,
    sorted_pairs,
)
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)


# A hash match whose CLIP cosine is below this is two different images that happen to share
# a coarse layout (dark frames, skies, documents): rejected.
HASH_SANITY_COSINE = 0.85


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


def load_images(store: ResultsStore, view: CurrentView, use_clip: bool) -> Images:
    entries: list[Entry] = []
    shards: list[str] = []
    phashes: list[int] = []
    dhashes: list[int] = []
    vectors: list[tuple[np.ndarray, np.ndarray] | None] = []
    for shard, current in view.shards.items():
        rows = store.current_rows("duplicates", current)
        base = len(entries)
        for entry in current.entries:
            row = rows.get(entry.path)
            entries.append(entry)
            shards.append(shard)
            if row is not None and row["status"] == OK:
                phashes.append(int(row["phash"], 16))
                dhashes.append(int(row["dhash"], 16))
            else:
                phashes.append(-1)
                dhashes.append(0)
        if use_clip:
            vectors.append(_shard_vectors(store, current, base))
    n = len(entries)
    has_hash = np.array([h >= 0 for h in phashes], dtype=bool)
    hashes = np.array([max(h, 0) for h in phashes], dtype=np.uint64)
    matrix, has_vector = _stack_vectors([v for v in vectors if v is not None], n)
    return Images(
        entries, shards, hashes, has_hash, np.array(dhashes, dtype=np.uint64), matrix, has_vector
    )


def _shard_vectors(
    store: ResultsStore, current: CurrentShard, base: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(global indices, float16 rows) of a shard's current embedded images."""
    found = store.current_vectors(current)
    if found is None:
        return None
    paths, rows = found
    position = {entry.path: base + i for i, entry in enumerate(current.entries)}
    matrix = store.array("embedding", current.id, mmap=True)
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


class _ShardRows:
    """Technical and metadata rows, read only for the shards holding group members."""

    def __init__(self, store: ResultsStore, view: CurrentView) -> None:
        self.store, self.view = store, view
        self._rows: dict[tuple[str, str], dict[str, dict]] = {}

    def row(self, module: str, shard: str, path: str) -> dict[str, Any] | None:
        if (module, shard) not in self._rows:
            self._rows[module, shard] = self.store.current_rows(module, self.view.shards[shard])
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
@dataclass(frozen=True)
class DuplicateSettings(Settings):
    """The ``duplicates`` section, and the device the CLIP similarity products run on
    (quadratic in the number of images, so a GPU matters beyond ~100K images)."""

    section = "duplicates"
    near_threshold: float
    hash_distance: int
    device: str


def find_duplicates(
    layout: Layout,
    library: str | os.PathLike,
    config: DuplicateSettings,
    use_clip: bool = True,
    view_file: str | os.PathLike | None = None,
) -> DuplicateReport:
    """Exact and near duplicate groups among the library's current images (see the module
    docstring). ``use_clip``: with the embedding module's vectors. ``view_file``: the run's
    recorded library view (else the library is scanned)."""
    started = time.perf_counter()
    library = Path(library)
    view = current_shards(layout, library, view_file)
    store = ResultsStore(layout)
    settings = _settings(config, use_clip)
    images = load_images(store, view, use_clip)
    cache = DigestCache(layout.duplicate_hashes)
    exact_stats = ExactStats()
    digests = exact_digests(images.entries, library, cache, exact_stats)
    cache.save(images.entries)
    torch_device = str(choose_device(config.device)) if use_clip else "cpu"
    by_clip, searched = None, 0
    if images.vectors is not None:
        path_pairs, searched = shard_clip_pairs(store, view, config.near_threshold, torch_device)
        by_clip = _index_pairs(images, path_pairs)
    pairs, near_stats = near_pairs(images, config.hash_distance, by_clip)
    near_stats["clip_shards_searched"] = searched
    rows = _ShardRows(store, view)
    groups = _exact_groups(images, digests, rows) + _near_groups(images, pairs, digests, rows)
    stats = {
        "images": len(images.entries),
        "hashed": int(images.has_hash.sum()),
        "embedded": int(images.has_vector.sum()),
        **asdict(exact_stats),
        **near_stats,
        "seconds": round(time.perf_counter() - started, 2),
    }
    report = DuplicateReport(groups, settings, fingerprint(store, view, settings), stats)
    log.info("%s (%s)", report.summary(), stats)
    return report


def _settings(config: DuplicateSettings, use_clip: bool) -> dict[str, Any]:
    return {
        "near_threshold": config.near_threshold,
        "hash_distance": config.hash_distance,
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
    pairs = sorted_pairs(confirmed)
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
    return sorted_pairs([np.array(pairs, dtype=np.int64).reshape(-1, 2)])


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
def fingerprint(store: ResultsStore, view: CurrentView, settings: dict[str, Any]) -> str:
    """A digest of the current entries, the result files the groups read and the settings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([DUPLICATES_VERSION, settings], sort_keys=True).encode())
    for shard, current in view.shards.items():
        for entry in current.entries:
            digest.update(
                f"{entry.path}\0{entry.size}\0{entry.mtime_ns}\n".encode("utf-8", "replace")
            )
        modules = ("duplicates", "technical", "metadata", "embedding")
        files = store.versions(modules, shard, arrays=["embedding"])
        digest.update(json.dumps(files).encode())
    return digest.hexdigest()


def write_duplicates(
    layout: Layout,
    library: str | os.PathLike,
    out_json: str | os.PathLike,
    config: DuplicateSettings,
    use_clip: bool = True,
    view_file: str | os.PathLike | None = None,
) -> DuplicateReport:
    """``find_duplicates`` and write ``groups.json`` (atomically)."""
    report = find_duplicates(layout, library, config, use_clip, view_file)
    atomic_write_text(out_json, json.dumps(report.as_dict(), indent=1) + "\n")
    return report


def current_report(
    layout: Layout,
    library: str | os.PathLike,
    config: DuplicateSettings,
    use_clip: bool = True,
) -> DuplicateReport:
    """``groups.json`` when it describes the current library with these settings, else the
    groups computed now (``groups.json`` is left as it is)."""
    stored = layout.duplicate_groups
    settings = _settings(config, use_clip)
    if stored.is_file():
        data = json.loads(stored.read_text(encoding="utf-8"))
        view = current_shards(layout, library)
        current = fingerprint(ResultsStore(layout), view, settings)
        if data.get("version") == DUPLICATES_VERSION and data.get("fingerprint") == current:
            return DuplicateReport.from_dict(data)
    return find_duplicates(layout, library, config, use_clip)


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
