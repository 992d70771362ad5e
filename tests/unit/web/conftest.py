"""A results folder written the way the workflow writes it (manifests, result rows,
thumbnails, tiers, people, duplicate groups, the index) and a test client over it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.decode.tiers import TierWriter, make_tiers
from imganalyzer.results import ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.steps import people as people_module
from imganalyzer.web import create_app
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

HOSTILE = "<img src=x onerror=alert(1)>.jpg"
FACE_BOX = [100.0, 50.0, 300.0, 250.0]
OBJECT_BOX = [10.0, 20.0, 500.0, 400.0]
WIDTH, HEIGHT = 600, 400
PARIS = ["2021/paris/IMG_0001.jpg", "2021/paris/IMG_0002.jpg"]
# newest first: EXIF dates, then the two photos without one, dated by their file times (2020)
TIMELINE = [
    "2022/home/receipt.jpg", "2022/home/cat.jpg", "2021/paris/IMG_0002.jpg",
    "2021/paris/IMG_0001.jpg", HOSTILE, "scans/old.jpg",
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path_factory.mktemp("web"))
    photos = [*sample_photos(), Photo(HOSTILE, caption="hostile name", vector=unit_vector(9))]
    shard = lib.add_shard(photos)
    entries = lib.catalog.read(shard)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, :, 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    with ThumbnailWriter(lib.results / "thumbnails" / f"{shard}.zip") as thumbnails:
        for row in range(len(entries)):
            thumbnails.add(row, rgb)
    with TierWriter(
        lib.results / "tiers" / f"{shard}.zarr", len(entries), {"clip": 64, "detect": 320}
    ) as tiers:
        for row in range(len(entries)):
            tiers.write(row, make_tiers(rgb, tiers.tiers))
    size = {"width": WIDTH, "height": HEIGHT}
    write_rows(
        lib.results / "technical" / f"{shard}.jsonl",
        [ok_row(e, {"sharpness": 50.0 + i, **size}) for i, e in enumerate(entries)],
    )
    detection = {"label": "cat", "score": 0.9, "box": OBJECT_BOX}
    write_rows(
        lib.results / "objects" / f"{shard}.jsonl",
        [
            ok_row(
                e,
                {
                    "labels": ["cat"],
                    "detections": [detection],
                    "has_text": False,
                    "has_person": True,
                },
            )
            for e in entries
        ],
    )
    write_rows(lib.results / "faces" / f"{shard}.jsonl",
               [ok_row(e, {"n_faces": 1, "faces": [{"box": FACE_BOX, "score": 0.8}]})
                for e in entries])  # fmt: skip
    write_people(lib, shard, [e.path for e in entries])
    write_groups(lib)
    update_index(
        lib.layout,
        lib.library,
        ["metadata", "technical", "objects", "captions", "ocr", "faces", "embedding", "aesthetic"],
    )
    return lib


def write_people(lib: ResultsLibrary, shard: str, paths: list[str]) -> None:
    faces = {
        f"face{row}": people_module.FaceRecord(path, shard, row, 0, FACE_BOX, 0.8)
        for row, path in enumerate(paths)
    }
    people = people_module.PeopleFile(
        people={
            1: people_module.Person(
                1, faces=["face0", "face2"], representative="face0", crop="crops/1.jpg"
            ),
            2: people_module.Person(2, faces=[f for f in faces if f not in ("face0", "face2")]),
        },
        faces=faces,
        next_id=3,
    )
    people_module.save_people(lib.layout, people)
    crop = lib.results / "faces" / "crops" / "1.jpg"
    crop.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "gray").save(crop)


def write_groups(lib: ResultsLibrary) -> None:
    member = {"size": 100, "width": 600, "height": 400, "sharpness": 50.0, "format": "jpeg",
              "raw": False}  # fmt: skip
    group = {
        "kind": "near",
        "keeper": "2021/paris/IMG_0001.jpg",
        "reason": "more pixels",
        "members": [
            {**member, "path": "2021/paris/IMG_0001.jpg"},
            {**member, "path": "2021/paris/IMG_0002.jpg", "cosine": 0.97},
        ],
    }
    path = lib.results / "duplicates" / "groups.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1", "groups": [group]}))


def config_of(lib: ResultsLibrary) -> dict:
    return {
        "library": str(lib.library),
        "results": str(lib.results),
        "modules": ["metadata", "technical", "objects", "faces", "embedding"],
        "embedding": {"model": "no-such-model", "pretrained": None},
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def client(site: ResultsLibrary) -> Iterator[TestClient]:
    with TestClient(create_app(config_of(site)), base_url="http://127.0.0.1") as test_client:
        yield test_client


def csrf_of(client: TestClient) -> str:
    return client.app.state.csrf


def tiles(page: str) -> list[str]:
    """The paths of a grid page's tiles, in page order."""
    return [
        html.unescape(p) for p in re.findall(r'<a href="/view\?path=[^"]*" title="([^"]*)"', page)
    ]
