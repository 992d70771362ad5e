"""A generated library for the duplicates tests, run through the real catalog, decode and
hash steps: resized, re-compressed, slightly cropped and shifted copies of one photo, a
byte-identical copy, a RAW with its JPEG export, and other photos that must not match."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

import imganalyzer.steps.duplicates_hashes as duplicates_hashes
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.example.writers import write_dng, write_jpeg
from imganalyzer.layout import Layout
from imganalyzer.steps.duplicates import DuplicateSettings
from tests.unit.conftest import TEST_TIERS

# The step's settings: the schema's (near_threshold 0.95, hash_distance 8), on the CPU.
SETTINGS = DuplicateSettings.defaults(device="cpu")
BASE = "photos/astronaut.jpg"
COPIES = {  # near copies of BASE
    "photos/astronaut_half.jpg",
    "photos/astronaut_q60.jpg",
    "photos/astronaut_crop.jpg",
    "photos/astronaut_burst.jpg",
    "backup/astronaut.jpg",  # byte-identical
}
DIFFERENT = ["other/coffee.jpg", "other/rocket.jpg", "other/camera.jpg", "other/brick.jpg"]
RAW, RAW_EXPORT = "raw/chelsea.dng", "raw/chelsea_export.jpg"
SAME_SIZE = "other/moon_padded.jpg"  # a photo padded to BASE's size: same size, other bytes
CORRUPT = "other/broken.jpg"


def grey(image: np.ndarray) -> np.ndarray:
    return np.stack([image] * 3, axis=-1)


def build_library(library: Path) -> None:
    base = data.astronaut()
    write_jpeg(library / BASE, base)
    (library / "backup").mkdir()
    shutil.copy2(library / BASE, library / "backup/astronaut.jpg")
    half = Image.fromarray(base).resize((256, 256), Image.Resampling.LANCZOS)
    write_jpeg(library / "photos/astronaut_half.jpg", np.asarray(half))
    write_jpeg(library / "photos/astronaut_q60.jpg", base, quality=60)
    write_jpeg(library / "photos/astronaut_crop.jpg", base[:, : int(base.shape[1] * 0.97)])
    write_jpeg(library / "photos/astronaut_burst.jpg", np.roll(base, (4, 6), axis=(0, 1)))
    others = [data.coffee(), data.rocket(), grey(data.camera()), grey(data.brick())]
    for name, rgb in zip(DIFFERENT, others, strict=True):
        write_jpeg(library / name, rgb)
    padded = write_jpeg(library / SAME_SIZE, grey(data.moon()), quality=50).read_bytes()
    target = (library / BASE).stat().st_size
    assert len(padded) < target
    (library / SAME_SIZE).write_bytes(padded + b"\0" * (target - len(padded)))
    chelsea = data.chelsea()
    write_dng(library / RAW, chelsea)
    bigger = Image.fromarray(chelsea).resize((564, 376), Image.Resampling.LANCZOS)
    write_jpeg(library / RAW_EXPORT, np.asarray(bigger))  # more pixels than the RAW
    (library / CORRUPT).write_bytes(b"not a jpeg at all")


def analyse(library: Path, results: Path) -> list[str]:
    """Catalog, decode, metadata and hashes of every shard, as the workflow runs them."""
    catalog = Catalog(Layout(results))
    shards = catalog.ingest(library, shard_size=6, exclude=[results]).new_shards
    for shard in shards:
        manifest = catalog.manifest_path(shard)
        tiers, technical = (
            results / "tiers" / f"{shard}.zarr",
            results / "technical" / f"{shard}.jsonl",
        )
        run_decode_shard(
            manifest, library, tiers, technical, results / "thumbnails" / f"{shard}.zip",
            tiers=TEST_TIERS,
        )  # fmt: skip
        run_metadata_shard(manifest, library, results / "metadata" / f"{shard}.jsonl")
        out = results / "duplicates" / f"{shard}.jsonl"
        duplicates_hashes.shard_hashes(tiers, manifest, out, tier="clip", technical=technical)
    return shards


@dataclass
class Analysed:
    library: Path
    results: Path
    shards: list[str]


def analysed_library(root: Path) -> Analysed:
    """The library built and analysed under ``root``."""
    library, results = root / "library", root / "results"
    build_library(library)
    return Analysed(library, results, analyse(library, results))


def copied(analysed: Analysed, folder: Path) -> Analysed:
    """A copy of the results (so a test may add files to it) over the same library."""
    results = folder / "results"
    shutil.copytree(analysed.results, results)
    return Analysed(analysed.library, results, analysed.shards)


def groups_of(report, kind: str) -> list[set[str]]:
    return [{m.path for m in g.members} for g in report.groups if g.kind == kind]


def groups_of_one(group) -> set[str]:
    return {m.path for m in group.members}


def pixels(member) -> int:
    return member.width * member.height
