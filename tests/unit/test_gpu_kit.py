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
import gpu.kit, gpu.comparisons, gpu.before_after, gpu.onnx_cuda, gpu.sharing
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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The kit's CPU smoke run: its JSON results (every section, the tiny models)."""
    out = tmp_path_factory.mktemp("gpu_kit")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(KIT / "run.sh"), "--cpu-smoke", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "gpu_kit.json").read_text())
    results["_table"] = (out / "gpu_kit.md").read_text()
    return results


@pytest.mark.slow
def test_cpu_smoke_measures_every_section(smoke: dict) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu.kit import SECTIONS

    assert smoke["mode"] == "cpu-smoke"
    assert not smoke.get("errors") and not smoke.get("skipped")
    modules = smoke["modules"]
    assert set(modules) == {name for name, _, _ in SECTIONS}
    for name in ("embedding", "objects", "captions", "faces", "ocr", "aesthetic"):
        assert modules[name]["images_per_s"] > 0, name
    for name in ("embedding", "objects", "captions", "faces"):
        assert modules[name]["bare_images_per_s"] > 0, name
    assert modules["faces"]["faces"] == 3 * modules["faces"]["images"]
    once = modules["captions"]["features_once"]
    total = once["images"] * once["prompts"]
    assert once["identical_texts"] == f"{total}/{total}"  # fp32: the same tokens
    assert modules["duplicates"]["pairs_only_on_one"] == 0
    assert "| embedding (cpu, float32) |" in smoke["_table"]


@pytest.mark.slow
def test_cpu_smoke_measures_each_change_beside_the_path_before_it(smoke: dict) -> None:
    modules = smoke["modules"]
    pairs = [p for row in modules.values() for p in row.get("before_after", [])]
    changes = " ".join(p["change"] for p in pairs)
    for change in ("shard files", "decoded on the device", "own size", "two calls",
                   "static KV cache", "compiled forward", "compile time", "faces:", "ocr:",
                   "GPU sharing"):  # fmt: skip
        assert change in changes, change
    assert all(p["before_value"] > 0 and p["after_value"] > 0 for p in pairs)
    assert "| change | before | after | after / before |" in smoke["_table"]
    # the results hold: the same vectors, the same boxes at the same size, the same graphs
    assert modules["embedding"]["device_decode"]["min_cosine"] > 0.999
    assert modules["objects"]["same_size"]["max_box_diff_tier_px"] < 1
    assert modules["objects_compile"]["compiled_graphs"]
    faces = modules["faces"]["max_difference_to_onnxruntime"]
    assert faces and max(faces.values()) < 1e-3
    ocr = modules["ocr"]["forward"]
    assert max(ocr[g]["max_difference_to_onnxruntime"] for g in ("det", "rec")) < 1e-3
    assert modules["faces"]["providers"][0].startswith("onnx2torch (cpu")
    assert set(modules["captions_static"]["variants"]) == {
        f"{lengths}, {calls}" for lengths in ("worst", "realistic")
        for calls in ("one call", "two calls")
    }  # fmt: skip


@pytest.mark.slow
def test_the_projection_takes_every_gpu_rate_from_the_kit(smoke: dict, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_projection import GPU_ASSUMED, gpu_rows, measured_gpu_rates

    path = tmp_path / "gpu_kit.json"
    path.write_text(json.dumps({k: v for k, v in smoke.items() if k != "_table"}))
    rates = measured_gpu_rates([str(path)])
    assert set(rates) == set(GPU_ASSUMED)  # no assumed GPU rate left
    rows, seconds = gpu_rows(rates, people=0.5, text=0.1)
    assert not any(row.name.startswith("assumed") for row in rows)
    assert seconds["worst"] >= seconds["realistic"] > 0


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
