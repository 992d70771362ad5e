"""Every module in one workflow run on tiny offline models: objects, captions, OCR of the
images with text, faces and people with a name that survives re-runs, duplicates, cloud
descriptions from a fake API, XMP sidecars, and the search index over all of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.config import default_config
from imganalyzer.example.writers import write_jpeg
from imganalyzer.results import read_rows
from tests.support.fake_vision_api import FakeVisionApi
from tests.unit.modules.test_ocr import font

from .conftest import TEST_TIERS, Workspace, build_test_library, make_workspace

pytestmark = pytest.mark.slow

KEY_VARIABLE = "IMGANALYZER_E2E_API_KEY"
KEY = "sk-e2e-secret-key-never-written"
MODULES = [
    "metadata", "technical", "embedding", "aesthetic", "objects", "captions", "ocr", "faces",
    "duplicates", "cloud",
]  # fmt: skip
SIGN = "signs/hello.jpg"
PROMPTS = default_config()["objects"]["prompts"]
FACES = "people/bright.jpg"
COPY = "copies/paris copy.jpg"


def text_image() -> np.ndarray:
    image = Image.new("RGB", (900, 300), "white")
    ImageDraw.Draw(image).text((40, 100), "HELLO WORLD", fill="black", font=font(80))
    return np.asarray(image)


def bright_cells() -> np.ndarray:
    """White squares on grey: the tiny face detector fires on bright cells."""
    rgb = np.full((640, 640, 3), 60, np.uint8)
    for y, x in ((96, 96), (96, 416), (416, 256)):
        rgb[y : y + 128, x : x + 128] = 255
    return rgb


@pytest.fixture
def everything(
    tmp_path: Path,
    tiny_models: dict,
    tiny_vision_models: dict,
    api: FakeVisionApi,
    monkeypatch: pytest.MonkeyPatch,
) -> Workspace:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    return everything_workspace(tmp_path, tiny_models, tiny_vision_models, api)


def everything_workspace(
    root: Path, tiny_models: dict, tiny_vision_models: dict, api: FakeVisionApi
) -> Workspace:
    """Every module on the tiny models (cloud: ``api``, its key in $KEY_VARIABLE) over the
    test library plus a sign with text, bright cells the face detector fires on, and an
    exact copy."""
    cloud = {
        "base_url": api.base_url("anthropic"),
        "api_key_env": KEY_VARIABLE,
        "backoff_base_s": 0.01,
        "timeout_s": 10,
    }
    config = tiny_models | tiny_vision_models | {"modules": MODULES, "cloud": cloud}
    ws = make_workspace(root, **config, xmp={"enabled": True})
    ws.files = build_test_library(ws.library)
    write_jpeg(ws.library / SIGN, text_image())
    write_jpeg(ws.library / FACES, bright_cells())
    (ws.library / COPY).parent.mkdir(parents=True)
    shutil.copy2(ws.files["gps"], ws.library / COPY)
    return ws


def rows(ws: Workspace, module: str) -> dict[str, dict]:
    found = {}
    for path in sorted((ws.results / module).glob("*.jsonl")):
        found.update({row["path"]: row for row in read_rows(path)})
    return found


def search(ws: Workspace, *words: str) -> list[str]:
    hits = json.loads(ws.imganalyzer("search", *words, "--mode", "text", "--json").stdout)
    return [hit["path"] for hit in hits]


def test_every_module_runs_and_names_survive_reruns(everything: Workspace, api) -> None:
    ws = everything
    ws.snakemake()
    manifest = read_manifest(next((ws.results / "catalog" / "shards").glob("*.tsv")))
    paths = {entry.path for entry in manifest}
    bad = {p for p in paths if p.startswith("bad/")}
    for module in ("objects", "captions", "ocr", "faces", "cloud"):
        found = rows(ws, module)
        assert set(found) == paths, module
        assert {p for p, row in found.items() if row["status"] == "error"} == bad, module

    objects, captions = rows(ws, "objects"), rows(ws, "captions")
    good = paths - bad
    assert all(objects[p]["has_text"] and objects[p]["has_person"] for p in good)
    assert all(captions[p]["caption"] and set(captions[p]["answers"]) for p in good)
    ocr = rows(ws, "ocr")[SIGN]
    assert "HELLO" in ocr["text"].upper() and "WORLD" in ocr["text"].upper()
    assert search(ws, "hello") == [SIGN]

    faces = rows(ws, "faces")
    assert faces[FACES]["n_faces"] > 0
    vectors = np.load(ws.results / "faces" / f"{manifest_shard(ws)}.npy")
    assert vectors.shape == (sum(row.get("n_faces", 0) for row in faces.values()), 512)
    # the fake API describes the image it was sent: the detect tier (at most 1568 px)
    long_edge = TEST_TIERS["detect"]
    size = f"{long_edge}x{round(300 * long_edge / 900)}"
    assert rows(ws, "cloud")[SIGN]["description"] == f"a photo of {size} pixels"
    assert set(search(ws, "rectangle", "--limit", "100")) == good  # the cloud's objects
    sent = len(api.requests)

    groups = json.loads(ws.imganalyzer("duplicates", "--json").stdout)
    exact = [g for g in groups if g["kind"] == "exact"]
    assert [sorted(m["path"] for m in g["members"]) for g in exact] == [
        sorted([COPY, "2023/trip/paris.jpg"])
    ]

    person = next(p for p in people_of(ws) if FACES in {f["path"] for f in p["faces"]})
    ws.imganalyzer("people", "name", str(person["id"]), "Alice Example")
    ws.snakemake()
    assert FACES in search(ws, "alice")
    sidecar = ws.results / "xmp" / "sidecars" / f"{FACES}.xmp"
    assert "Alice Example" in sidecar.read_text(encoding="utf-8")
    assert len(api.requests) == sent  # described images are never sent twice

    # a moved photo keeps its faces and its person's name; nothing is decoded or re-run
    logs = {p: p.stat().st_mtime_ns for p in (ws.results / "logs").rglob("*.log")}
    moved = "people/moved here/bright.jpg"
    (ws.library / moved).parent.mkdir()
    (ws.library / FACES).rename(ws.library / moved)
    ws.snakemake()
    assert moved in search(ws, "alice")
    assert FACES not in search(ws, "alice")
    person = next(p for p in people_of(ws) if p["name"] == "Alice Example")
    assert moved in {f["path"] for f in person["faces"]}
    rerun = {p for p, t in logs.items() if p.stat().st_mtime_ns != t}
    global_steps = {"faces", "index", "xmp", "duplicates", "report", "catalog"}  # + the view
    assert {p.parent.name for p in rerun} <= global_steps
    assert not any(p.name.startswith("0") for p in rerun)  # no shard or model job ran

    # nothing left to do; the key was never written anywhere, the report included
    assert "Nothing to be done" in ws.snakemake("-n").stdout
    ws.snakemake("--report", str(ws.root / "report.html"))
    assert KEY not in (ws.root / "report.html").read_text(errors="replace")
    for path in ws.results.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".log", ".tsv", ".xmp"):
            assert KEY not in path.read_text(errors="replace"), path


def people_of(ws: Workspace) -> list[dict]:
    listed = json.loads(ws.imganalyzer("people", "list", "--json").stdout)
    return [
        json.loads(ws.imganalyzer("people", "show", str(p["id"]), "--json").stdout) for p in listed
    ]


def manifest_shard(ws: Workspace) -> str:
    return next((ws.results / "catalog" / "shards").glob("*.tsv")).stem
