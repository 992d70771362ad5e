"""Grouping faces into people: new faces matched to the nearest person's centroid, the
leftovers clustered (DBSCAN over a cosine radius graph), the user's edits re-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imganalyzer.config import Settings
from imganalyzer.steps.people_edits import Edits, apply_edits, named_people

_ASSIGN_CHUNK = 4096  # new faces scored against all centroids at once
_GRAPH_BLOCK_VALUES = 1 << 25  # similarities computed per block of the radius graph: 128 MB


@dataclass(frozen=True)
class PeopleSettings(Settings):
    """The ``people`` section: cosine distances between ArcFace (buffalo_l) embeddings. The
    same person mostly lies below ~0.6, different people above ~0.8; a centroid averages
    out pose and light, so a new face is matched a little more generously than two faces
    are linked when clustering (Immich uses 0.5 for both)."""

    section = "people"
    match_distance: float
    cluster_distance: float
    min_cluster_size: int


@dataclass
class Grouping:
    """The outcome of ``group_faces``: person -> face ids (in input order), and counts."""

    members: dict[int, list[str]]
    unassigned: list[str]
    next_id: int
    centroids: dict[int, np.ndarray]
    kept: int = 0  # faces that stayed with their person
    matched: int = 0  # new faces that joined an existing person
    clustered: int = 0  # new faces in new people
    new_people: int = 0
    dropped_people: int = 0


def group_faces(
    face_ids: Sequence[str],
    embeddings: np.ndarray,
    previous: dict[int, Iterable[str]],
    edits: Edits,
    next_id: int = 1,
    previous_centroids: dict[int, np.ndarray] | None = None,
    settings: PeopleSettings | None = None,
    recluster: bool = False,
    threads: int = 2,
) -> Grouping:
    """Group the current faces (ids, (n, d) L2-normalised embeddings) into people, keeping
    ``previous`` memberships (person -> face ids) and re-applying ``edits``. ``settings``:
    the schema's by default; ``threads``: DBSCAN's."""
    settings = settings or PeopleSettings.defaults()
    index = {face: i for i, face in enumerate(face_ids)}
    vectors = np.asarray(embeddings, dtype=np.float32)
    next_id = max([next_id, edits.max_id + 1, *(p + 1 for p in previous)])
    if recluster:
        members, next_id = _recluster(face_ids, vectors, previous, next_id, settings, threads)
    else:
        members = {p: {f for f in faces if f in index} for p, faces in previous.items()}
    apply_edits(members, edits, index)
    kept = sum(len(faces) for faces in members.values())
    centroids = _centroids(members, vectors, index, previous_centroids or {}, edits)
    assigned = {face for faces in members.values() for face in faces}
    new = [face for face in face_ids if face not in assigned]
    matched = _match(new, vectors, index, centroids, members, edits, settings.match_distance)
    leftovers = [face for face in new if face not in matched]
    clusters = cluster_embeddings(vectors[[index[f] for f in leftovers]], settings, threads)
    new_ids: dict[int, int] = {}
    for face, label in zip(leftovers, clusters.tolist(), strict=True):
        if label != -1:
            if label not in new_ids:
                new_ids[label], next_id = next_id, next_id + 1
            members.setdefault(new_ids[label], set()).add(face)
    named = named_people(edits)
    dropped = [p for p, faces in members.items() if not faces and p not in named]
    for person in dropped:
        del members[person]
    for person in named:
        members.setdefault(person, set())  # a named person stays, even without faces
    centroids = _centroids(members, vectors, index, centroids, edits)
    ordered = {p: sorted(members[p], key=index.__getitem__) for p in sorted(members)}
    in_people = {face for faces in members.values() for face in faces}
    return Grouping(
        members=ordered,
        unassigned=[face for face in face_ids if face not in in_people],
        next_id=next_id,
        centroids={p: c for p, c in centroids.items() if p in members},
        kept=kept,
        matched=len(matched),
        clustered=sum(1 for c in clusters if c != -1),
        new_people=len(new_ids),
        dropped_people=len(dropped),
    )


def cluster_embeddings(vectors: np.ndarray, settings: PeopleSettings, threads: int) -> np.ndarray:
    """DBSCAN labels (-1: noise) of L2-normalised vectors under cosine distance.

    The neighbour graph comes from blocked float32 matrix products (BLAS) and goes to DBSCAN
    as a sparse precomputed matrix: twice as fast as scikit-learn's own brute-force cosine
    search on 10K faces here (bench/bench_faces.py), with the same labels.
    """
    if len(vectors) < max(1, settings.min_cluster_size):
        return np.full(len(vectors), -1, dtype=np.int64)
    from sklearn.cluster import DBSCAN

    graph = radius_graph(np.asarray(vectors, dtype=np.float32), settings.cluster_distance)
    dbscan = DBSCAN(
        eps=settings.cluster_distance, min_samples=settings.min_cluster_size,
        metric="precomputed", n_jobs=max(1, threads),
    )  # fmt: skip
    return dbscan.fit_predict(graph)


def radius_graph(vectors: np.ndarray, radius: float) -> Any:
    """Sparse (n, n) CSR matrix of the cosine distances <= ``radius`` (self included, stored
    as a tiny positive distance: DBSCAN ignores entries that are not stored)."""
    from scipy.sparse import csr_matrix

    n = len(vectors)
    block = max(1, _GRAPH_BLOCK_VALUES // max(1, n))
    rows, columns, distances = [], [], []
    for start in range(0, n, block):
        distance = 1.0 - vectors[start : start + block] @ vectors.T
        row, column = np.nonzero(distance <= radius)
        rows.append(row + start)
        columns.append(column)
        distances.append(np.maximum(distance[row, column], 1e-9))
    data = np.concatenate(distances) if distances else np.zeros(0, np.float32)
    return csr_matrix(
        (data, (np.concatenate(rows), np.concatenate(columns))), shape=(n, n), dtype=np.float32
    )


def _recluster(
    face_ids: Sequence[str],
    vectors: np.ndarray,
    previous: dict[int, Iterable[str]],
    next_id: int,
    settings: PeopleSettings,
    threads: int,
) -> tuple[dict[int, set[str]], int]:
    """Cluster every face afresh; each cluster takes the id of the old person it shares most
    faces with (greedily, largest overlaps first), the others get new ids."""
    labels = cluster_embeddings(vectors, settings, threads)
    old_owner = {face: person for person, faces in previous.items() for face in faces}
    overlaps: dict[tuple[int, int], int] = {}
    for face, label in zip(face_ids, labels, strict=True):
        if label != -1 and face in old_owner:
            key = (int(label), old_owner[face])
            overlaps[key] = overlaps.get(key, 0) + 1
    ids: dict[int, int] = {}
    for (label, person), _ in sorted(overlaps.items(), key=lambda item: (-item[1], item[0])):
        if label not in ids and person not in ids.values():
            ids[label] = person
    members: dict[int, set[str]] = {}
    for label in sorted(set(labels.tolist()) - {-1}):
        if label not in ids:
            ids[label], next_id = next_id, next_id + 1
        members[ids[label]] = set()
    for face, label in zip(face_ids, labels, strict=True):
        if label != -1:
            members[ids[int(label)]].add(face)
    return members, next_id


def _centroids(
    members: dict[int, set[str]],
    vectors: np.ndarray,
    index: dict[str, int],
    fallback: dict[int, np.ndarray],
    edits: Edits,
) -> dict[int, np.ndarray]:
    """Normalised mean embedding of each person with faces; a named person without faces
    keeps its last centroid."""
    centroids = {}
    named = named_people(edits)
    for person, faces in members.items():
        if faces:
            mean = vectors[[index[f] for f in faces]].mean(axis=0)
            centroids[person] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        elif person in fallback and person in named:
            centroids[person] = fallback[person]
    return centroids


def _match(
    new: list[str],
    vectors: np.ndarray,
    index: dict[str, int],
    centroids: dict[int, np.ndarray],
    members: dict[int, set[str]],
    edits: Edits,
    match_distance: float,
) -> set[str]:
    """Add each new face to the nearest person within ``match_distance`` (never to a person
    it was split from); returns the faces added."""
    people = sorted(centroids)
    if not new or not people:
        return set()
    column = {p: j for j, p in enumerate(people)}
    matrix = np.stack([centroids[p] for p in people]).astype(np.float32)
    matched = set()
    for start in range(0, len(new), _ASSIGN_CHUNK):
        chunk = new[start : start + _ASSIGN_CHUNK]
        similarity = vectors[[index[f] for f in chunk]] @ matrix.T
        for row, face in enumerate(chunk):
            for person in edits.cannot_link.get(face, ()):
                if edits.resolve(person) in column:
                    similarity[row, column[edits.resolve(person)]] = -np.inf
        best = similarity.argmax(axis=1)
        for row, face in enumerate(chunk):
            if 1.0 - similarity[row, best[row]] <= match_distance:
                members[people[best[row]]].add(face)
                matched.add(face)
    return matched
