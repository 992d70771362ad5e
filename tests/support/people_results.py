"""People test data: synthetic face embeddings of known identities (ArcFace-like distances)
and a small results folder (catalog, technical rows, a detect tier with a coloured square
at each face, faces rows and matrix) for the people step."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.tiers import TierWriter, make_tiers
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, write_rows
from imganalyzer.steps.people import load_people, update_people
from imganalyzer.steps.people_clusters import PeopleSettings

DIM = 512
# Per-dimension noise giving two faces of one person a cosine similarity of ~0.7
# (distance ~0.3, ArcFace-like); random identities are ~orthogonal (distance ~1).
NOISE = 0.029


def identities(n: int, seed: int = 0) -> np.ndarray:
    centres = np.random.default_rng(seed).standard_normal((n, DIM))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def samples(centre: np.ndarray, n: int, seed: int) -> np.ndarray:
    noisy = centre + NOISE * np.random.default_rng(seed).standard_normal((n, DIM))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def faces_of(centres: np.ndarray, per_person: int, seed: int, prefix: str = "f"):
    """ids, vectors and true person index of ``per_person`` faces of each centre."""
    ids, vectors, truth = [], [], []
    for k, centre in enumerate(centres):
        vectors.append(samples(centre, per_person, seed * 1000 + k))
        ids += [f"{prefix}{k}-{i}" for i in range(per_person)]
        truth += [k] * per_person
    return ids, np.concatenate(vectors), truth


TIER = {"detect": 160}
ORIGINAL = (320, 240)  # width, height: the detect tier is 160 x 120 (half size)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


class FakeResults:
    """A library of empty-ish image files and, per shard, the catalog manifest, technical
    rows, a detect tier with a coloured square at each face and faces rows + matrix."""

    def __init__(self, root: Path) -> None:
        self.library, self.results = root / "library", root / "results"
        self.layout = Layout(self.results)
        self.catalog = Catalog(self.layout)
        self.library.mkdir(parents=True)
        self.mtime = 1_600_000_000 * 10**9
        self.centres = identities(len(COLOURS), seed=5)
        self.seed = 0

    def add_shard(self, photos: dict[str, list[int]]) -> str:
        """photos: path -> the identity of each face in it (one face per identity)."""
        shards = self.catalog.shard_ids()
        shard = f"{int(shards[-1].split('-')[0]) + 1 if shards else 1:06d}-00000"
        entries = [self._file(path) for path in photos]
        write_manifest(self.catalog.manifest_path(shard), entries)
        technical = [ok_row(e, {"width": ORIGINAL[0], "height": ORIGINAL[1]}) for e in entries]
        write_rows(self.results / "technical" / f"{shard}.jsonl", technical)
        rows, vectors = [], []
        tiers = self.results / "tiers" / f"{shard}.zarr"
        with TierWriter(tiers, n_images=len(entries), tiers=TIER) as writer:
            for index, (entry, people) in enumerate(zip(entries, photos.values(), strict=True)):
                rgb = np.zeros((ORIGINAL[1], ORIGINAL[0], 3), dtype=np.uint8)
                faces = []
                for k in people:
                    box = self.box(k)
                    rgb[box[1] : box[3], box[0] : box[2]] = COLOURS[k]
                    self.seed += 1
                    vectors.append(samples(self.centres[k], 1, self.seed)[0])
                    faces.append({"box": [float(v) for v in box], "score": 0.9,
                                  "embedding_row": len(vectors) - 1})  # fmt: skip
                writer.write(index, make_tiers(rgb, TIER))
                rows.append(ok_row(entry, {"model": "test", "n_faces": len(faces), "faces": faces}))
        write_rows(self.results / "faces" / f"{shard}.jsonl", rows)
        np.save(self.results / "faces" / f"{shard}.npy", np.array(vectors, dtype=np.float16))
        return shard

    @staticmethod
    def box(k: int) -> list[int]:
        """Identity k's face: a 60 px square at a distinct place (original pixels)."""
        return [20 + 70 * k, 40, 80 + 70 * k, 100]

    def delete(self, path: str) -> None:
        (self.library / path).unlink()

    def _file(self, path: str) -> Entry:
        file = self.library / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"jpeg " + os.fsencode(path))
        self.mtime += 10**9
        os.utime(file, ns=(self.mtime, self.mtime))
        return Entry(path, file.stat().st_size, self.mtime)

    def update(self, recluster: bool = False, **settings) -> object:
        """The people step at the schema's settings (``settings`` changed)."""
        people = PeopleSettings.defaults(**settings)
        return update_people(self.layout, self.library, people, recluster=recluster)

    def person_of(self, path: str) -> set[int]:
        people = load_people(self.layout)
        return {p.id for p in people.people.values() for f in p.faces
                if people.faces[f].path == path}  # fmt: skip
