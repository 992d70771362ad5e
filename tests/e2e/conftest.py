"""A tiny generated photo library and a helper that runs the real workflow on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter
from skimage import data

from imganalyzer.example.writers import (
    ExifInfo,
    write_dng,
    write_heic,
    write_jpeg,
    write_png,
    write_tiff16,
)
from tests.support.exif_samples import X_T4_WEST
from tests.support.fake_vision_api import FakeVisionApi

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# Small tiers keep the end-to-end run fast; the code path is the one real runs take.
TEST_TIERS = {"detect": 320, "clip": 160}

GPS_EXIF = X_T4_WEST


def upscale(rgb: np.ndarray, factor: float) -> np.ndarray:
    image = Image.fromarray(rgb)
    size = (round(image.width * factor), round(image.height * factor))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def blurred(rgb: np.ndarray, radius: float = 4) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def build_test_library(root: Path) -> dict[str, Path]:
    """The awkward mix the issue asks for; returns name -> path."""
    coffee = upscale(data.coffee(), 2)  # 800 x 1200
    chelsea = data.chelsea()  # 300 x 451
    astronaut = data.astronaut()  # 512 x 512
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 128, np.uint8)])
    deep = (upscale(data.rocket(), 1).astype(np.uint16) * 257)[..., :3]
    files = {
        "gps": write_jpeg(root / "2023/trip/paris.jpg", coffee, GPS_EXIF),
        "blurred": write_jpeg(root / "2023/trip/paris_blurred.jpg", blurred(coffee), GPS_EXIF),
        # stored landscape, displayed portrait
        "rotated": write_jpeg(
            root / "2023/trip/cat portrait.jpg", chelsea, ExifInfo(make="Canon", orientation=6)
        ),
        "alpha": write_png(root / "misc/alpha.png", rgba),
        "deep": write_tiff16(root / "misc/deep.tif", deep),
        "heic": write_heic(root / "phone/IMG_0001.HEIC", chelsea, ExifInfo(make="Apple")),
        "dng_preview": write_dng(
            root / "raw/with_preview.dng", coffee, ExifInfo(make="Leica"), preview_long_edge=640
        ),
        "dng_plain": write_dng(
            root / "raw/no_preview.DNG", astronaut, ExifInfo(make="Leica"), preview_long_edge=None
        ),
    }
    truncated = root / "bad/truncated.jpg"
    truncated.parent.mkdir(parents=True, exist_ok=True)
    truncated.write_bytes(files["gps"].read_bytes()[:5000])
    (root / "bad/empty.jpg").write_bytes(b"")
    (root / "bad/notes.jpg").write_text("this is a text file with an image extension\n")
    files.update(truncated=truncated, empty=root / "bad/empty.jpg", text=root / "bad/notes.jpg")
    return files


@dataclass
class Workspace:
    root: Path
    library: Path
    results: Path
    config: Path
    files: dict[str, Path] = field(default_factory=dict)

    def snakemake(
        self, *args: str, check: bool = True, preexec_fn: Callable[[], None] | None = None
    ) -> subprocess.CompletedProcess:
        command = [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            str(self.config),
            "--cores",
            "2",
            *args,
        ]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=600,
            preexec_fn=preexec_fn,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
        return result

    def imganalyzer(self, *args: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "imganalyzer.cli",
            *args,
            "--config",
            str(self.config),
        ]
        return subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, env=_env(), check=True
        )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config of the model modules pointing at tiny random-weight models on disk, loaded
    through the same code paths as real ones (open_clip local-dir, a head state dict)."""
    import open_clip
    import torch

    from imganalyzer.modules.aesthetic import AestheticHead

    from ..unit.conftest import TINY_CLIP, TINY_CLIP_CONFIG

    folder = tmp_path_factory.mktemp("tiny_models")
    clip_dir = folder / "clip"
    clip_dir.mkdir()
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}
    (clip_dir / "open_clip_config.json").write_text(json.dumps(config))
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    torch.save(model.state_dict(), clip_dir / "open_clip_pytorch_model.bin")
    head = folder / "aesthetic_head.pth"
    torch.save(AestheticHead(TINY_CLIP_CONFIG["embed_dim"]).state_dict(), head)
    return {
        "device": "cpu",
        "embedding": {"model": f"local-dir:{clip_dir}", "pretrained": None, "batch_size": 4},
        "aesthetic": {"weights": str(head)},
        "modules": ["metadata", "technical", "embedding", "aesthetic"],
    }


@pytest.fixture(scope="session")
def tiny_vision_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config of objects, captions and faces on tiny random-weight models on disk (tiny
    GroundingDINO, BLIP-2 and InsightFace pack), loaded through the real loaders."""
    from imganalyzer.config import default_config
    from tests.support.tiny_blip2 import build_tiny_blip2
    from tests.support.tiny_groundingdino import build_tiny_groundingdino
    from tests.support.tiny_insightface import build_tiny_insightface

    folder = tmp_path_factory.mktemp("tiny_vision")
    prompts = default_config()["objects"]["prompts"]
    return {
        "objects": {
            "model": str(build_tiny_groundingdino(folder / "groundingdino")),
            # random weights: low thresholds give every image detections, and every label
            # counts as text and person, so OCR and faces run on every image
            "box_threshold": 0.05,
            "text_threshold": 0.05,
            "text_labels": prompts,
            "person_labels": prompts,
            "batch_size": 2,
        },
        "captions": {"model": str(build_tiny_blip2(folder / "blip2")), "max_new_tokens": 6},
        "faces": {"pack": str(build_tiny_insightface(folder / "faces")), "min_face_size": 8},
        "people": {"min_cluster_size": 1},
    }


@pytest.fixture
def api() -> Iterator[FakeVisionApi]:
    """The fake remote vision API the cloud module talks to (tests/support/fake_vision_api)."""
    with FakeVisionApi() as server:
        yield server


def make_workspace(root: Path, **config) -> Workspace:
    library = root / "library"
    results = root / "results"
    settings = {
        "library": str(library),
        "results": str(results),
        "shard_size": 100,
        "tiers": TEST_TIERS,
        "threads_per_decode_job": 2,
        "modules": ["metadata", "technical"],
    } | config
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    return Workspace(root, library, results, config_path)


@pytest.fixture
def workspace(tmp_path: Path, tiny_models: dict) -> Workspace:
    ws = make_workspace(tmp_path, **tiny_models)
    ws.files = build_test_library(ws.library)
    return ws
