"""A new model module is one file plus one registry entry, and nothing else: in a copy of the
repository with only those two changes, the module runs in the real workflow, preflight
checks its weights, ``imganalyzer models list`` and ``status`` show it, and the index
searches its results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import REPO, SNAKEMAKE, TEST_TIERS, build_test_library

pytestmark = pytest.mark.slow

# The module: the mean brightness of each image's clip tier, times the one weight its
# weights file holds, and a word for it. A host model (no torch), as InsightFace's is.
TOY_MODULE = '''\
"""The toy module: each image's mean brightness times a weight, and a word for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imganalyzer.config import Settings
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import HostItems, RowBatch
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS
from imganalyzer.runtime.weights import locate_weights_file, weights_file


@dataclass(frozen=True)
class ToySettings(Settings):
    section = "toy"
    weights: str
    threshold: float


class ToyModel(BatchedModel):
    spec = MODELS["toy"]
    on_torch = False

    def __init__(self, settings: ToySettings) -> None:
        super().__init__("cpu", "auto")
        self.settings = settings

    @property
    def model_id(self) -> str:
        return locate_weights_file(self.module, self.settings.weights).model

    def load_model(self, device: Any, dtype: Any) -> None:
        self.weight = float(np.load(weights_file(self.module, self.settings.weights))[0])

    def preprocess(self, batch: RowBatch) -> HostItems:
        return HostItems(
            float(image[:h, :w].mean())
            for image, (h, w) in zip(batch.data, batch.image_sizes, strict=True)
        )

    def predict_batch(self, inputs: HostItems) -> list[float]:
        return [value * self.weight for value in inputs]

    def postprocess(self, outputs: list[float]) -> list[float]:
        return outputs

    def row_fields(self, result: float, shard: JobShard, row: int) -> dict[str, Any]:
        tone = "luminous" if result >= self.settings.threshold else "gloomy"
        return {"brightness": round(result, 4), "tone": tone, "model": self.model_id}
'''

TOY_ENTRY = """\
    ModelSpec(
        module="toy",
        model="imganalyzer.modules.toy:ToyModel",
        settings="imganalyzer.modules.toy:ToySettings",
        weights=Weights("weights-file", ("weights",)),
        tier="clip",
        config_keys=(),
        threads=1,
        mem_mb=500,
        index=(Indexed("tone", kind="text", boost=1.0), Indexed("brightness", kind="float")),
        schema={
            "weights": {"type": "string", "minLength": 1, "default": "toy.npy"},
            "threshold": {"type": "number", "minimum": 0, "default": 0.5},
        },
    ),
"""


def copy_with_toy_module(destination: Path) -> Path:
    """The repository's files (tracked, or new and not ignored) copied to ``destination``,
    plus the module's file and its registry entry: the only two changes."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source, target = REPO / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    (destination / "imganalyzer/modules/toy.py").write_text(TOY_MODULE)
    registry = destination / "imganalyzer/runtime/registry.py"
    text = registry.read_text()
    start = text.index("MODELS: Mapping[str, ModelSpec] = _registry(")
    end = text.index("\n)\n", start) + 1
    registry.write_text(text[:end] + TOY_ENTRY + text[end:])
    return destination


def run(copy: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy))
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_a_module_added_as_one_file_and_one_entry_runs_everywhere(tmp_path: Path) -> None:
    copy = copy_with_toy_module(tmp_path / "repo")
    library, results = tmp_path / "library", tmp_path / "results"
    build_test_library(library)
    weights = tmp_path / "toy_weights.npy"
    settings = {
        "library": str(library), "results": str(results), "shard_size": 100,
        "tiers": TEST_TIERS, "modules": ["metadata", "technical", "toy"],
        "toy": {"weights": str(weights), "threshold": 0.4},
    }  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    snakemake = [str(SNAKEMAKE), "--snakefile", str(copy / "Snakefile"), "--cores", "2"]
    snakemake += ["--configfile", str(config)]
    cli = [sys.executable, "-m", "imganalyzer.cli"]

    # preflight: its weights file is missing, so nothing runs; the message names it
    refused = run(copy, *snakemake, "-n", check=False)
    assert refused.returncode != 0
    assert "toy: toy_weights.npy: not there" in refused.stdout + refused.stderr
    models_list = [*cli, "models", "list", "--config", str(config)]
    listed = run(copy, *models_list).stdout.splitlines()[2:]  # after the config and header
    assert [line.split()[:3] for line in listed] == [["toy", "toy_weights.npy", "no"]]

    np.save(weights, np.array([1 / 255], dtype=np.float32))
    listed = run(copy, *models_list).stdout.splitlines()[2:]
    assert [line.split()[:3] for line in listed] == [["toy", "toy_weights.npy", "yes"]]
    run(copy, *snakemake)

    rows = [json.loads(line) for path in sorted((results / "toy").glob("*.jsonl"))
            for line in path.read_text().splitlines()]  # fmt: skip
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 8 and len(rows) == 11  # the three bad files are error rows
    assert all(0 <= row["brightness"] <= 1 for row in ok)
    assert {row["tone"] for row in ok} == {"luminous", "gloomy"}

    status = json.loads(run(copy, *cli, "status", "--json", "--config", str(config)).stdout)
    assert status["modules"]["toy"] == {"done": 8, "errors": 3, "pending": 0}
    for tone in ("luminous", "gloomy"):
        found = run(copy, *cli, "search", tone, "--json", "--config", str(config)).stdout
        hits = json.loads(found)
        expected = {row["path"] for row in ok if row["tone"] == tone}
        assert {hit["path"] for hit in hits} == expected
        assert all(hit["tone"] == tone and "brightness" in hit for hit in hits)
