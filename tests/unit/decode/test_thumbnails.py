"""Thumbnail zips: one JPEG per decoded image, stored uncompressed, written atomically."""

from __future__ import annotations

import zipfile

import imagecodecs
import numpy as np
import pytest
from skimage import data

from imganalyzer.decode.thumbnails import THUMBNAIL_LONG_EDGE, ThumbnailWriter, read_thumbnail
from imganalyzer.decode.tiers import resize_long_edge


def test_thumbnails_round_trip_as_downscaled_jpegs(tmp_path):
    path = tmp_path / "thumbs.zip"
    with ThumbnailWriter(path) as writer:
        writer.add(0, data.coffee())
        writer.add(1, data.astronaut())

    coffee = imagecodecs.jpeg8_decode(read_thumbnail(path, 0))
    assert coffee.shape == (171, THUMBNAIL_LONG_EDGE, 3)
    expected = resize_long_edge(data.coffee(), THUMBNAIL_LONG_EDGE).astype(np.int16)
    assert np.abs(coffee.astype(np.int16) - expected).mean() < 6  # q80 JPEG of the same picture
    assert imagecodecs.jpeg8_decode(read_thumbnail(path, 1)).shape == (256, 256, 3)


def test_absent_index_returns_none(tmp_path):
    path = tmp_path / "thumbs.zip"
    with ThumbnailWriter(path) as writer:
        writer.add(0, data.chelsea())
        writer.add(2, data.chelsea())  # row 1 failed to decode: no thumbnail

    assert read_thumbnail(path, 1) is None
    assert read_thumbnail(path, 3) is None
    assert read_thumbnail(path, 2) is not None


def test_members_are_stored_uncompressed_and_named_by_row_index(tmp_path):
    path = tmp_path / "thumbs.zip"
    with ThumbnailWriter(path) as writer:
        writer.add(7, data.chelsea())

    with zipfile.ZipFile(path) as archive:
        (info,) = archive.infolist()
    assert info.filename == "7.jpg"
    assert info.compress_type == zipfile.ZIP_STORED


def test_small_images_are_not_upscaled_and_long_edge_is_configurable(tmp_path):
    path = tmp_path / "thumbs.zip"
    tiny = resize_long_edge(data.chelsea(), 100)
    with ThumbnailWriter(path, long_edge=128, quality=90) as writer:
        writer.add(0, tiny)
        writer.add(1, data.coffee())

    assert imagecodecs.jpeg8_decode(read_thumbnail(path, 0)).shape == tiny.shape
    assert imagecodecs.jpeg8_decode(read_thumbnail(path, 1)).shape == (85, 128, 3)


def test_empty_shard_gives_a_valid_empty_zip(tmp_path):
    path = tmp_path / "thumbs.zip"
    with ThumbnailWriter(path):
        pass

    assert read_thumbnail(path, 0) is None


def test_failed_with_body_leaves_no_file(tmp_path):
    path = tmp_path / "thumbs.zip"
    with pytest.raises(RuntimeError, match="interrupted"), ThumbnailWriter(path) as writer:
        writer.add(0, data.chelsea())
        raise RuntimeError("interrupted")

    assert list(tmp_path.iterdir()) == []


def test_adding_an_index_twice_is_rejected(tmp_path):
    with ThumbnailWriter(tmp_path / "thumbs.zip") as writer:
        writer.add(0, data.chelsea())
        with pytest.raises(ValueError, match="already added"):
            writer.add(0, data.coffee())
