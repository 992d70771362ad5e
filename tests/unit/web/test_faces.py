"""Face crops cut from the stored thumbnails: the box (original pixels) scaled to the
thumbnail, a margin around it, at most SIDE pixels a side."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.steps.people import FaceRecord
from imganalyzer.web.data import ResultsData
from imganalyzer.web.faces import SIDE, FaceCrops
from tests.support.results_library import Photo, ResultsLibrary

from .conftest import config_of

# A 100 x 50 thumbnail of a 1000 x 500 original: black, a white face at original pixels
# (400, 200)-(600, 300), which is (40, 20)-(60, 30) in the thumbnail.
FACE = [400.0, 200.0, 600.0, 300.0]
Shot = tuple[ResultsLibrary, str]


@pytest.fixture
def shot(tmp_path: Path) -> Shot:
    lib = ResultsLibrary(tmp_path)
    shard = lib.add_shard([Photo("a.jpg"), Photo("b.jpg")])
    entries = lib.catalog.read(shard)
    write_rows(lib.layout.technical(shard), [
        ok_row(entries[0], {"width": 1000, "height": 500}),
        error_row(entries[1], "no size known", "truncated"),
    ])  # fmt: skip
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[20:30, 40:60] = 255
    with ThumbnailWriter(lib.layout.thumbnails(shard)) as thumbnails:
        thumbnails.add(0, rgb)
        thumbnails.add(1, rgb)
    return lib, shard


def decoded(jpeg: bytes | None) -> np.ndarray:
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), np.int16)


def test_a_crop_is_the_face_scaled_to_the_thumbnail_with_a_margin(shot: Shot) -> None:
    lib, shard = shot
    crops = FaceCrops(ResultsData(config_of(lib)))
    crop = decoded(crops.jpeg(FaceRecord("a.jpg", shard, 0, 0, FACE, 0.9)))
    # 20 x 10 thumbnail pixels and 0.3 x 20 = 6 on each side: 32 x 22
    assert crop.shape == (22, 32)
    assert crop[11, 16] > 200 and crop[6:16, 6:26].mean() > 200  # the face, in the middle
    assert crop[:4, :].mean() < 40 and crop[:, :4].mean() < 40  # the margin around it


def test_a_crop_is_at_most_side_pixels_long(tmp_path: Path) -> None:
    lib = ResultsLibrary(tmp_path)
    shard = lib.add_shard([Photo("big.jpg")])
    with ThumbnailWriter(lib.layout.thumbnails(shard)) as thumbnails:
        thumbnails.add(0, np.full((400, 400, 3), 128, np.uint8))
    face = FaceRecord("big.jpg", shard, 0, 0, [0.0, 0.0, 400.0, 300.0], 0.9)
    crop = decoded(FaceCrops(ResultsData(config_of(lib))).jpeg(face))
    assert max(crop.shape) == SIDE and crop.shape == (SIDE, SIDE)  # clipped to the image


def test_without_the_original_width_the_box_is_read_in_thumbnail_pixels(shot: Shot) -> None:
    lib, shard = shot
    crops = FaceCrops(ResultsData(config_of(lib)))
    # row 1's technical row failed: scale 1, and a box beyond the thumbnail gives it whole
    whole = decoded(crops.jpeg(FaceRecord("b.jpg", shard, 1, 0, FACE, 0.9)))
    assert whole.shape == (48, 96)
    small = decoded(crops.jpeg(FaceRecord("b.jpg", shard, 1, 0, [40.0, 20.0, 60.0, 30.0], 0.9)))
    assert small.shape == (22, 32)


def test_a_new_technical_file_changes_the_scale(shot: Shot) -> None:
    lib, shard = shot
    crops = FaceCrops(ResultsData(config_of(lib)))
    face = FaceRecord("a.jpg", shard, 0, 0, FACE, 0.9)
    assert decoded(crops.jpeg(face)).shape == (22, 32)
    technical = lib.layout.technical(shard)
    entries = lib.catalog.read(shard)
    write_rows(technical, [ok_row(e, {"width": 100, "height": 50}) for e in entries])
    stat = technical.stat()
    os.utime(technical, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert decoded(crops.jpeg(face)).shape == (48, 96)  # the box now lies beyond it: whole


def test_a_face_without_a_thumbnail_has_no_crop(shot: Shot) -> None:
    lib, shard = shot
    crops = FaceCrops(ResultsData(config_of(lib)))
    assert crops.jpeg(FaceRecord("a.jpg", shard, 7, 0, FACE, 0.9)) is None
    assert crops.jpeg(FaceRecord("a.jpg", "000009-00000", 0, 0, FACE, 0.9)) is None
    lib.layout.thumbnails(shard).write_bytes(b"not a zip")
    assert crops.jpeg(FaceRecord("a.jpg", shard, 0, 0, FACE, 0.9)) is None


def test_a_face_crop_is_a_jpeg_and_an_unknown_face_is_not_found(client: TestClient) -> None:
    crop = client.get("/faces/face0.jpg")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert client.get("/faces/nope.jpg").status_code == 404
