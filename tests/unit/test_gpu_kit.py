"""The GPU benchmark kit (bench/gpu/) cannot rot between GPU runs: its CPU smoke mode runs
every section with the tiny models, and its code imports without the decode stack, which
the GPU machine does not get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "bench" / "gpu"
# Not among the wheels the kit carries (bench/gpu/requirements.txt): a model module that
# imported one of them would fail on the GPU machine.
NOT_CARRIED = ("tantivy", "snakemake", "fastapi", "uvicorn")
BLOCKER = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not carried to the GPU machine")
sys.meta_path.insert(0, Blocked())
sys.path[:0] = [{root!r}, {bench!r}]
import gpu.kit, gpu.comparisons
import imganalyzer.modules.embedding, imganalyzer.modules.objects
import imganalyzer.modules.captions, imganalyzer.modules.faces
import imganalyzer.modules.aesthetic, imganalyzer.steps.duplicates
print("ok")
"""


def test_model_modules_and_kit_import_without_the_decode_stack() -> None:
    code = BLOCKER.format(blocked=set(NOT_CARRIED), root=str(ROOT), bench=str(ROOT / "bench"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_requirements_pin_one_version_of_each_package() -> None:
    lines = [line for line in (KIT / "requirements.txt").read_text().splitlines() if line]
    pins = [line for line in lines if not line.startswith("#")]
    assert pins and all("==" in pin for pin in pins)
    names = [pin.split("==")[0].lower().replace("_", "-") for pin in pins]
    assert len(names) == len(set(names))


@pytest.mark.slow
def test_cpu_smoke_measures_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(KIT / "run.sh"), "--cpu-smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_kit.json").read_text())
    assert results["mode"] == "cpu-smoke"
    assert not results.get("errors") and not results.get("skipped")
    modules = results["modules"]
    for name in ("embedding", "objects", "captions", "faces", "aesthetic"):
        assert modules[name]["images_per_s"] > 0, name
    for name in ("embedding", "objects", "captions", "faces"):
        assert modules[name]["bare_images_per_s"] > 0, name
    assert modules["faces"]["faces"] == 3 * modules["faces"]["images"]
    once = modules["captions"]["features_once"]
    total = once["images"] * once["prompts"]
    assert once["identical_texts"] == f"{total}/{total}"  # fp32: the same tokens
    assert modules["duplicates"]["pairs_only_on_one"] == 0
    table = (tmp_path / "gpu_kit.md").read_text()
    assert "| embedding (cpu, float32) |" in table


@pytest.mark.slow
def test_fetch_wheels_stays_within_the_size_limit(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(KIT / "fetch_wheels.sh"), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(tmp_path.glob("*.whl"))
    assert sum(w.stat().st_size for w in wheels) <= 48 * 2**20
    assert any(w.name.startswith("open_clip_torch") for w in wheels)
