"""A tiny library with hand-written module results, for the index, search and export tests:
image files (a few bytes each) with the catalogued size and mtime, shard manifests, per-shard
JSON-lines results and embedding matrices, written the way the workflow writes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.scan import content_fingerprint
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, read_rows, write_rows

DIM = 8


def unit_vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float16)


@dataclass
class Photo:
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)
    technical: dict[str, Any] = field(default_factory=dict)
    aesthetic: float | None = None
    caption: str | None = None
    ocr: str | None = None
    people: list[str] | None = None
    vector: np.ndarray | None = None  # None: the embedding failed (an error row)


class ResultsLibrary:
    def __init__(self, root: Path) -> None:
        self.library = root / "library"
        self.results = root / "results"
        self.layout = Layout(self.results)
        self.catalog = Catalog(self.layout)
        self.library.mkdir(parents=True)
        self._mtime = 1_600_000_000 * 10**9

    def add_shard(self, photos: list[Photo]) -> str:
        """Write the photos' files and one new shard (its own ingest batch) of results."""
        shards = self.catalog.shard_ids()
        shard = f"{int(shards[-1].split('-')[0]) + 1 if shards else 1:06d}-00000"
        entries = [self._write_file(photo) for photo in photos]
        write_manifest(self.catalog.manifest_path(shard), entries)
        pairs = list(zip(entries, photos, strict=True))
        self._write(
            "metadata", shard, [ok_row(e, {"format": "JPEG", **p.metadata}) for e, p in pairs]
        )
        self._write("technical", shard, [ok_row(e, p.technical) for e, p in pairs])
        self._write("captions", shard, [ok_row(e, {"caption": p.caption}) for e, p in pairs])
        self._write("ocr", shard, [ok_row(e, {"text": p.ocr}) for e, p in pairs])
        self._write("faces", shard, [ok_row(e, {"people": p.people or []}) for e, p in pairs])
        embedding = [
            ok_row(e, {"model": "test"}) if p.vector is not None else error_row(e, "not decoded")
            for e, p in pairs
        ]
        self._write("embedding", shard, embedding)
        aesthetic = [
            ok_row(e, {"aesthetic": p.aesthetic}) if p.vector is not None else error_row(e, "x")
            for e, p in pairs
        ]
        self._write("aesthetic", shard, aesthetic)
        dim = next((len(p.vector) for p in photos if p.vector is not None), DIM)
        vectors = np.zeros((len(photos), dim), dtype=np.float16)
        for row, photo in enumerate(photos):
            if photo.vector is not None:
                vectors[row] = photo.vector
        np.save(self.results / "embedding" / f"{shard}.npy", vectors)
        return shard

    def delete(self, path: str) -> None:
        (self.library / path).unlink()

    def add_fingerprints(self, shard: str) -> None:
        """Content fingerprints in the shard's technical rows, as the decode job writes
        them: a moved file is then recognised."""
        rows = [
            row | {"fingerprint": content_fingerprint(self.library / row["path"])}
            for row in read_rows(self.layout.technical(shard))
        ]
        write_rows(self.layout.technical(shard), rows)

    def move(self, old: str, new: str, mtime_ns: int) -> None:
        """Move a file the way a copy that does not keep the mtime does, and catalog it."""
        target = self.library / new
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.library / old, target)
        os.utime(target, ns=(mtime_ns, mtime_ns))
        assert self.catalog.ingest(self.library, shard_size=100).moved == 1

    def _write_file(self, photo: Photo) -> Entry:
        file = self.library / photo.path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"jpeg " + os.fsencode(photo.path) + os.urandom(4).hex().encode())
        self._mtime += 10**9
        os.utime(file, ns=(self._mtime, self._mtime))
        return Entry(photo.path, file.stat().st_size, self._mtime)

    def _write(self, module: str, shard: str, rows: list[dict]) -> None:
        write_rows(self.results / module / f"{shard}.jsonl", rows)


def sample_photos() -> list[Photo]:
    """Five photos with distinct captions, text, cameras, dates, places and scores."""
    return [
        Photo(
            "2021/paris/IMG_0001.jpg",
            metadata={
                "make": "FUJIFILM",
                "model": "X-T4",
                "lens": "XF23mmF2 R WR",
                "datetime_original": "2021-06-05T18:30:00+02:00",
                "gps_latitude": 48.8584,
                "gps_longitude": 2.2945,
                "width": 6240,
                "height": 4160,
            },
            technical={"sharpness": 120.0, "noise": 1.5},
            aesthetic=6.5,
            caption="the eiffel tower at sunset",
            people=["Alice"],
            vector=unit_vector(1),
        ),
        Photo(
            "2021/paris/IMG_0002.jpg",
            metadata={
                "make": "FUJIFILM",
                "model": "X-T4",
                "datetime_original": "2021-06-06T10:00:00",
                "gps_latitude": 48.8606,
                "gps_longitude": 2.3376,
            },
            technical={"sharpness": 15.0},
            aesthetic=4.0,
            caption="a crowded museum hall",
            ocr="Musée du Louvre entrance",
            vector=unit_vector(2),
        ),
        Photo(
            "2022/home/cat.jpg",
            metadata={
                "make": "Canon",
                "model": "Canon EOS R5",
                "datetime_original": "2022-01-10T08:00:00",
            },
            technical={"sharpness": 80.0},
            aesthetic=5.5,
            caption="a red car parked at night",
            people=["Bob"],
            vector=unit_vector(3),
        ),
        Photo(
            "2022/home/receipt.jpg",
            metadata={
                "make": "Apple",
                "model": "iPhone 13",
                "datetime_original": "2022-03-01T12:00:00",
            },
            technical={"sharpness": 60.0},
            aesthetic=2.0,
            caption="a piece of paper on a table",
            ocr="TOTAL 42.00 EUR thank you",
            vector=unit_vector(4),
        ),
        Photo(
            "scans/old.jpg",
            technical={"sharpness": 5.0},
            caption="a black and white family portrait",
            people=["Alice", "Bob"],
            vector=None,
        ),
    ]
