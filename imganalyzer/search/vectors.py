"""The index's vectors: the CLIP embeddings of every current image gathered into
``vectors.npy`` (rows sorted by key_id) with ``vector_ids.npy`` and ``vector_keys.txt``, and
their int8 codes with error bounds for the exact ranking (:mod:`.vector_scan`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imganalyzer.catalog.current import CurrentView
from imganalyzer.catalog.manifests import escape_path
from imganalyzer.files import atomic_open, temporary_file
from imganalyzer.layout import IndexFiles
from imganalyzer.search.documents import key_id
from imganalyzer.search.vector_scan import write_codes
from imganalyzer.store import EMBEDDING, ResultsStore

Known = dict[str, tuple[list[str], np.ndarray]]  # shard -> (current paths, array rows)


def write_vectors(
    out_dir: Path, store: ResultsStore, view: CurrentView, known: Known | None = None
) -> int:
    """Gather the embeddings of every current image into ``out_dir/vectors.npy`` with
    ``vector_ids.npy``, ``vector_keys.txt`` and the codes of :func:`write_codes` (``known``:
    see gather_vectors). Returns the number of rows; with no embeddings at all the files are
    removed."""
    files = IndexFiles(out_dir)
    gathered = gather_vectors(store, view, files.vectors, known)
    if gathered is None:
        for path in files.vector_files:
            path.unlink(missing_ok=True)
        return 0
    keys, ids = gathered
    write_codes(out_dir)
    with atomic_open(files.vector_ids, "wb") as handle:
        np.save(handle, ids)
    with atomic_open(
        files.vector_keys, "w", encoding="utf-8", errors="surrogateescape", newline="\n"
    ) as handle:
        handle.writelines(f"{escape_path(key)}\n" for key in keys)
    return len(keys)


def gather_vectors(
    store: ResultsStore, view: CurrentView, matrix_path: Path, known: Known | None = None
) -> tuple[list[str], np.ndarray] | None:
    """Write the embeddings of every current image to ``matrix_path`` (float16 (n, dim),
    L2-normalised, rows sorted by key_id), atomically. Returns (the path of each row, the
    uint64 key_id of each row), or None (nothing written) when no image has an embedding.
    ``known``: shard -> its vectors (``ShardResults.vectors``) where the caller read its
    rows already; the other shards' are read here.

    Streams shard by shard into a memory-mapped file: memory stays small at any size.
    """
    known = known or {}
    parts = [
        (shard, found)
        for shard, current in view.shards.items()
        if (found := known.get(shard) or store.current_vectors(current))
    ]
    keys = [path for _, (paths, _) in parts for path in paths]
    if not keys:
        return None
    ids = np.fromiter((key_id(k) for k in keys), dtype=np.uint64, count=len(keys))
    order = np.argsort(ids, kind="stable")
    if np.any(np.diff(ids[order]) == 0):
        raise ValueError("two current paths share a 64-bit key id (a hash collision)")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    dim = store.array(EMBEDDING, parts[0][0], mmap=True).shape[1]
    matrix_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_file(matrix_path)  # umask permissions, not mkstemp's 0600
    try:
        matrix = np.lib.format.open_memmap(tmp, "w+", np.float16, (len(keys), dim))
        offset = 0
        for shard, (paths, rows) in parts:
            source = store.array(EMBEDDING, shard, mmap=True)
            if source.shape[1] != dim:
                raise ValueError(f"embedding/{shard}.npy: {source.shape[1]}-d vectors, not {dim}")
            matrix[position[offset : offset + len(paths)]] = source[rows]
            offset += len(paths)
        matrix.flush()
        del matrix
        os.replace(tmp, matrix_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return [keys[i] for i in order], ids[order]
