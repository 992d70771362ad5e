"""The contract every model module keeps, checked for each module of the registry
(``runtime.registry.MODELS``) through its tiny model (tests/support/tiny_*.py, a random
open_clip, a fake vision API) and the one job skeleton (``runtime.job.run_model_job``):

- batch-size invariance: batches of 1 and of 4 give the same rows (and array);
- error rows: a file that failed to decode becomes an error row; every manifest row gets
  one row, in manifest order, and the job's summary counts the errors;
- gates: a gated module (faces: ``has_person``, ocr: ``has_text``) runs only on the images
  the objects rows flag and skips the others with an ok row; every other module runs on
  every decoded image whatever the objects rows say.

A new module in the registry fails here until ``DRIVERS`` builds it from a tiny model.
OCR runs rapidocr's real bundled models (seconds an image): its cases are marked slow.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.config import Settings
from imganalyzer.decode.jobs import run_decode_shard
from imganalyzer.files import atomic_open
from imganalyzer.layout import Layout
from imganalyzer.modules.aesthetic import AestheticHead, AestheticSettings
from imganalyzer.modules.captions import CaptionSettings
from imganalyzer.modules.cloud_job import RUN_ID_ENV
from imganalyzer.modules.embedding import EmbeddingSettings
from imganalyzer.modules.faces import FaceSettings
from imganalyzer.modules.objects import ObjectSettings
from imganalyzer.modules.ocr import OcrSettings
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import MODELS
from tests.support.fake_vision_api import FakeVisionApi, settings_for
from tests.support.tiny_blip2 import build_tiny_blip2
from tests.support.tiny_groundingdino import build_tiny_groundingdino
from tests.support.tiny_insightface import build_tiny_insightface
from tests.unit.conftest import TEST_TIERS, TINY_CLIP

SHARD, JOB = "000001-00000", "000001-00000-00000"
FAILED = 2  # the row whose file is not an image
# Objects flags of the seven rows (row 2: the objects job failed on it too).
HAS_PERSON = [True, False, None, True, False, True, False]
HAS_TEXT = [False, True, None, True, False, False, True]
GATES = {"faces": HAS_PERSON, "ocr": HAS_TEXT}
EMBEDDING_DIM = 768  # the aesthetic head's input


def photos() -> list[np.ndarray | None]:
    coffee, astronaut, chelsea = data.coffee(), data.astronaut(), data.chelsea()
    return [coffee, np.ascontiguousarray(coffee.transpose(1, 0, 2)), None, astronaut, chelsea,
            astronaut[100:160, 50:250], np.ascontiguousarray(chelsea[::-1])]  # fmt: skip


@dataclass
class World:
    """A results folder with one shard as the jobs before the model modules leave it (the
    real decode job's tiers and technical rows; objects and embedding rows written here),
    its library, the tiny models and the fake vision API."""

    results: Path
    library: Path
    tiny: dict[str, Path]
    api: FakeVisionApi

    def copy(self, folder: Path) -> Layout:
        """A fresh copy of the results folder: each run writes its own rows."""
        shutil.copytree(self.results, folder)
        return Layout(folder)


def write_world(root: Path) -> tuple[Path, Path]:
    library, layout = root / "library", Layout(root / "results")
    entries, images = [], photos()
    for i, rgb in enumerate(images):
        path = library / f"photos/{i:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if rgb is None:
            path.write_bytes(b"not a jpeg at all")
        else:
            Image.fromarray(rgb).save(path, quality=90)
        stat = path.stat()
        entries.append(Entry(f"photos/{i:02d}.jpg", stat.st_size, stat.st_mtime_ns))
    layout.manifest(SHARD).parent.mkdir(parents=True)
    write_manifest(layout.manifest(SHARD), entries)
    run_decode_shard(
        layout.manifest(SHARD), library, layout.tiers(SHARD), layout.technical(SHARD),
        layout.thumbnails(SHARD), tiers=TEST_TIERS,
    )  # fmt: skip
    failure = list(read_rows(layout.technical(SHARD)))[FAILED]["error"]
    objects = [
        error_row(e, failure) if person is None else ok_row(e, {"has_person": person,
                                                                "has_text": text})
        for e, person, text in zip(entries, HAS_PERSON, HAS_TEXT, strict=True)
    ]  # fmt: skip
    write_rows(layout.rows("objects", SHARD), objects)
    vectors = np.random.default_rng(0).standard_normal((len(images), EMBEDDING_DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[FAILED] = 0
    with atomic_open(layout.array("embedding", SHARD), "wb") as handle:
        np.save(handle, vectors.astype(np.float16))
    write_rows(layout.rows("embedding", SHARD), [
        error_row(e, failure) if row == FAILED else ok_row(e, {"model": "tiny"})
        for row, e in enumerate(entries)
    ])  # fmt: skip
    return layout.root, library


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_clip_weights: Path) -> Iterator[World]:
    root = tmp_path_factory.mktemp("contract")
    results, library = write_world(root)
    torch.manual_seed(3)
    head = root / "models" / "aesthetic.pth"
    head.parent.mkdir()
    torch.save(AestheticHead(EMBEDDING_DIM).state_dict(), head)
    tiny = {
        "embedding": tiny_clip_weights,
        "aesthetic": head,
        "objects": build_tiny_groundingdino(root / "models" / "groundingdino"),
        "captions": build_tiny_blip2(root / "models" / "blip2"),
        "faces": build_tiny_insightface(root / "models" / "insightface"),
    }
    with FakeVisionApi() as api:
        yield World(results, library, tiny, api)


# Each registry module's settings for its tiny model (the schema's defaults otherwise): the
# job builds the module from its entry, as the workflow does (``ModelSpec.model_class``).
DRIVERS: dict[str, Callable[[World], Settings]] = {
    "embedding": lambda w: EmbeddingSettings.defaults(
        model=TINY_CLIP, pretrained=str(w.tiny["embedding"]), device="cpu"
    ),
    "aesthetic": lambda w: AestheticSettings.defaults(weights=str(w.tiny["aesthetic"])),
    "objects": lambda w: ObjectSettings.defaults(
        model=str(w.tiny["objects"]), prompts=("person", "cup", "text"), device="cpu"
    ),
    "captions": lambda w: CaptionSettings.defaults(
        model=str(w.tiny["captions"]),
        max_new_tokens=6,
        device="cpu",
        questions={"Is it indoors?": "Question: is it indoors? Answer:"},
    ),  # fmt: skip
    "ocr": lambda w: OcrSettings.defaults(library=str(w.library), max_side=640, device="cpu"),
    "faces": lambda w: FaceSettings.defaults(pack=str(w.tiny["faces"]), det_size=160, device="cpu"),
    "cloud": lambda w: settings_for(w.api),
}


# Modules whose real models run here (not tiny ones) and take seconds an image: their cases
# run with the slow tests.
SLOW = {"ocr"}  # rapidocr's bundled PP-OCR models: ~3 s an image on a busy 2-core machine
CASES = [pytest.param(m, marks=[pytest.mark.slow] if m in SLOW else []) for m in MODELS]


@dataclass
class Run:
    model: BatchedModel
    rows: list[dict[str, Any]]
    array: np.ndarray | None
    summary: dict[str, Any]


def run(world: World, module: str, folder: Path, batch_size: int | str = "auto") -> Run:
    if module not in DRIVERS:
        pytest.fail(f"{module}: add a driver that builds it from a tiny model to DRIVERS")
    layout = world.copy(folder)
    model = MODELS[module].model_class().for_job(DRIVERS[module](world), layout, gated=True)
    model.requested_batch_size = batch_size
    run_model_job(model, layout, JOB, [SHARD], threads=2)
    array = np.load(layout.array(module, SHARD)) if MODELS[module].array else None
    return Run(
        model,
        list(read_rows(layout.rows(module, SHARD))),
        array,
        json.loads(layout.job_summary(module, JOB).read_text()),
    )


def same(first: Any, second: Any, where: str = "") -> None:
    """Equal, floats to 1e-3 (a batch's padding and kernels move the last digits)."""
    if isinstance(first, dict) and isinstance(second, dict):
        assert first.keys() == second.keys(), where
        for key in first:
            same(first[key], second[key], f"{where}.{key}")
    elif isinstance(first, list) and isinstance(second, list):
        assert len(first) == len(second), where
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(first, float) or isinstance(second, float):
        assert math.isclose(first, second, rel_tol=1e-3, abs_tol=1e-3), (where, first, second)
    else:
        assert first == second, (where, first, second)


@pytest.fixture(autouse=True)
def no_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-contract")
    monkeypatch.delenv(RUN_ID_ENV, raising=False)


@pytest.mark.parametrize("module", CASES)
def test_batches_of_one_and_of_four_give_the_same_rows(
    world: World, module: str, tmp_path: Path
) -> None:
    one = run(world, module, tmp_path / "one", batch_size=1)
    four = run(world, module, tmp_path / "four", batch_size=4)
    assert one.model.batch_size == 1 and four.model.batch_size == 4
    for row, (a, b) in enumerate(zip(one.rows, four.rows, strict=True)):
        same(a, b, f"{module} row {row}")
    assert (one.array is None) == (four.array is None)
    if one.array is not None:
        assert one.array.shape == four.array.shape and one.array.dtype == four.array.dtype
        np.testing.assert_allclose(one.array.astype(np.float32), four.array.astype(np.float32),
                                   atol=2e-3)  # fmt: skip


@pytest.mark.parametrize("module", CASES)
def test_a_failed_decode_is_an_error_row_in_its_place(
    world: World, module: str, tmp_path: Path
) -> None:
    result = run(world, module, tmp_path / "results")
    manifest = [f"photos/{i:02d}.jpg" for i in range(len(photos()))]
    assert [row["path"] for row in result.rows] == manifest
    statuses = [row["status"] for row in result.rows]
    assert statuses == ["error" if row == FAILED else "ok" for row in range(len(manifest))]
    technical = list(read_rows(Layout(world.results).technical(SHARD)))
    assert technical[FAILED]["error"] in result.rows[FAILED]["error"]  # the decoder's reason
    assert result.summary["errors"] == 1 and result.summary["shards"] == [SHARD]


@pytest.mark.parametrize("module", CASES)
def test_only_gated_modules_leave_out_the_images_objects_did_not_flag(
    world: World, module: str, tmp_path: Path
) -> None:
    result = run(world, module, tmp_path / "results")
    flags = GATES.get(module, [True] * len(photos()))
    expected = [row for row, flag in enumerate(flags) if flag and row != FAILED]
    skipped = [row for row, r in enumerate(result.rows) if "skipped" in r]
    assert result.model.stats.images == len(expected)
    assert skipped == [row for row, flag in enumerate(flags) if flag is False]
    assert all(result.rows[row]["status"] == "ok" for row in skipped)
