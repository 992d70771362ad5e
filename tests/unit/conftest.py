"""Fixtures of the model-module tests: a tiny open_clip model with random weights saved to
a file (loaded back through the same ``pretrained=<file>`` path as real models) and a
small shard (manifest, tier store, technical rows) with one failed decode."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from skimage import data

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode.tiers import TierWriter, make_tiers
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, write_rows

if TYPE_CHECKING:
    from tests.support.duplicates_library import Analysed

TINY_CLIP = "imganalyzer-test-tiny-ViT"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 2,
    },
}
TINY_DIM = TINY_CLIP_CONFIG["embed_dim"]
TEST_TIERS = {"detect": 160, "clip": 96}
DECODE_FAILURE = "cannot identify image file"


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Registers the tiny config with open_clip and returns its random weights file."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    weights = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return weights


SHARD_ID = "000001-00000"


@dataclass
class Shard:
    """A shard written at its places in a results folder (``layout``), as ``id``."""

    manifest: Path
    tiers: Path
    technical: Path
    entries: list[Entry]
    images: list[np.ndarray | None]  # the clip tier image of each row (None: failed)
    layout: Layout
    id: str


def shard_images() -> list[np.ndarray | None]:
    """Seven rows of different shapes; row 2 failed to decode."""
    coffee, astronaut, chelsea = data.coffee(), data.astronaut(), data.chelsea()
    return [
        coffee,
        np.ascontiguousarray(coffee.transpose(1, 0, 2)),
        None,
        astronaut,
        chelsea,
        astronaut[100:160, 50:250],  # a wide strip, smaller than the tier
        np.ascontiguousarray(chelsea[::-1]),
    ]


def write_shard(folder: Path, images: list[np.ndarray | None], shard: str = SHARD_ID) -> Shard:
    """Manifest, tier store and technical rows of a shard in the results folder ``folder``."""
    layout = Layout(folder)
    entries = [Entry(f"photos/{i:02d}.jpg", 1000 + i, 10**18 + i) for i in range(len(images))]
    manifest, tiers, technical = (
        layout.manifest(shard),
        layout.tiers(shard),
        layout.technical(shard),
    )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, entries)
    clip_images = []
    with TierWriter(tiers, n_images=len(images), tiers=TEST_TIERS) as writer:
        for index, rgb in enumerate(images):
            tier_images = None if rgb is None else make_tiers(rgb, TEST_TIERS)
            writer.write(index, tier_images)
            clip_images.append(None if tier_images is None else tier_images["clip"])
    rows = [
        error_row(e, DECODE_FAILURE) if rgb is None else ok_row(e, {"sharpness": 1.0})
        for e, rgb in zip(entries, images, strict=True)
    ]
    write_rows(technical, rows)
    return Shard(manifest, tiers, technical, entries, clip_images, layout, shard)


@pytest.fixture(scope="session")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Shard:
    return write_shard(tmp_path_factory.mktemp("shard"), shard_images())


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    """The duplicates tests' library, analysed (tests/support/duplicates_library.py)."""
    from tests.support.duplicates_library import analysed_library  # it imports TEST_TIERS

    return analysed_library(tmp_path_factory.mktemp("dups"))


@pytest.fixture
def fresh(analysed: Analysed, tmp_path: Path) -> Analysed:
    """A copy of its results (so a test may add files to it) over the same library."""
    from tests.support.duplicates_library import copied

    return copied(analysed, tmp_path)
