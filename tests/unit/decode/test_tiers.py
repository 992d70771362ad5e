"""Tier stores: resizing, the Zarr layout, JPEG/Zstd round trips and atomic writing."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import zarr
import zarr.registry
from skimage import data

from imganalyzer.decode import tiers as tiers_module
from imganalyzer.decode.tiers import (
    TIER_FORMAT_VERSION,
    TierReader,
    TierWriter,
    make_tiers,
    resize_long_edge,
)

TIERS = {"detect": 256, "clip": 64}
# One JPEG MCU (16 px with 4:2:0 chroma subsampling) next to the image may carry ringing;
# padding beyond it must decode to exact zeros.
JPEG_EDGE_BLEED = 16
# Mean absolute error of JPEG q90 on these photos, measured 2.0-3.6 levels (the detailed
# coffee downscaled to 256 px is the worst); an encoding bug gives tens of levels.
JPEG_MAX_MEAN_ERROR = 4


def landscape() -> np.ndarray:
    return data.coffee()  # (400, 600, 3)


def portrait() -> np.ndarray:
    return np.ascontiguousarray(data.coffee().transpose(1, 0, 2))  # (600, 400, 3)


def square() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3)


def shard_images() -> list[np.ndarray | None]:
    """Five rows: landscape, portrait, a failed image, square, small landscape."""
    return [landscape(), portrait(), None, square(), data.chelsea()]


def write_store(path, images, compression="jpeg", block=2, tiers=TIERS) -> None:
    with TierWriter(path, len(images), tiers, block=block, compression=compression) as writer:
        for index, rgb in enumerate(images):
            writer.write(index, None if rgb is None else make_tiers(rgb, tiers))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- resize_long_edge / make_tiers -------------------------------------------------------------
def test_resize_long_edge_downscales_landscape_keeping_aspect():
    small = resize_long_edge(landscape(), 300)
    assert small.shape == (200, 300, 3)
    assert small.dtype == np.uint8


def test_resize_long_edge_downscales_portrait_keeping_aspect():
    assert resize_long_edge(portrait(), 150).shape == (150, 100, 3)


def test_resize_long_edge_rounds_the_short_edge():
    assert resize_long_edge(data.chelsea(), 100).shape == (67, 100, 3)  # 300 * 100 / 451 = 66.5


def test_resize_long_edge_never_upscales():
    image = landscape()
    assert resize_long_edge(image, 600) is image
    assert resize_long_edge(image, 4096) is image


def test_resize_long_edge_keeps_content():
    image = square()
    half = resize_long_edge(image, 256)
    assert mean_abs_diff(half, image[::2, ::2]) < 12  # same picture, not a blank or shifted one


def test_resize_long_edge_rejects_non_rgb():
    with pytest.raises(ValueError, match="uint8"):
        resize_long_edge(np.zeros((10, 10), np.uint8), 5)
    with pytest.raises(ValueError, match="uint8"):
        resize_long_edge(np.zeros((10, 10, 3), np.float32), 5)


def test_make_tiers_gives_each_tier_its_long_edge():
    result = make_tiers(landscape(), {"clip": 96, "detect": 300})
    assert {name: image.shape for name, image in result.items()} == {
        "detect": (200, 300, 3),
        "clip": (64, 96, 3),
    }


def test_make_tiers_keeps_images_smaller_than_a_tier():
    image = data.chelsea()
    result = make_tiers(image, {"detect": 1024, "clip": 384})
    assert result["detect"] is image
    assert result["clip"].shape == (255, 384, 3)


# --- TierWriter / TierReader round trips -------------------------------------------------------
@pytest.mark.parametrize("compression", ["jpeg", "zstd"])
def test_round_trip_returns_padded_images_true_sizes_and_ok(tmp_path, compression):
    images = shard_images()
    write_store(tmp_path / "tiers", images, compression)

    reader = TierReader(tmp_path / "tiers")
    assert reader.tiers == TIERS
    assert reader.n_images == 5
    pixels, sizes, ok = reader.read("detect", 0, 5)
    assert pixels.shape == (5, 256, 256, 3) and pixels.dtype == np.uint8
    assert sizes.dtype == np.int32
    assert sizes.tolist() == [[171, 256], [256, 171], [0, 0], [256, 256], [170, 256]]
    assert ok.tolist() == [True, True, False, True, True]


def test_zstd_round_trip_is_exact_with_zero_padding(tmp_path):
    images = shard_images()
    write_store(tmp_path / "tiers", images, "zstd")

    reader = TierReader(tmp_path / "tiers")
    pixels, sizes, _ = reader.read("clip", 0, 5)
    for index, rgb in enumerate(images):
        if rgb is None:
            continue
        expected = make_tiers(rgb, TIERS)["clip"]
        height, width = sizes[index]
        np.testing.assert_array_equal(pixels[index, :height, :width], expected)
        assert not pixels[index, height:].any() and not pixels[index, :, width:].any()


def test_jpeg_round_trip_is_close_with_zero_padding(tmp_path):
    images = shard_images()
    write_store(tmp_path / "tiers", images, "jpeg")

    reader = TierReader(tmp_path / "tiers")
    pixels, sizes, _ = reader.read("detect", 0, 5)
    for index, rgb in enumerate(images):
        if rgb is None:
            continue
        expected = make_tiers(rgb, TIERS)["detect"]
        height, width = sizes[index]
        assert mean_abs_diff(pixels[index, :height, :width], expected) < JPEG_MAX_MEAN_ERROR
        assert not pixels[index, height + JPEG_EDGE_BLEED :].any()
        assert not pixels[index, :, width + JPEG_EDGE_BLEED :].any()


@pytest.mark.parametrize("compression", ["jpeg", "zstd"])
def test_failed_image_reads_as_zeros(tmp_path, compression):
    write_store(tmp_path / "tiers", shard_images(), compression)

    reader = TierReader(tmp_path / "tiers")
    pixels, sizes, ok = reader.read("clip", 2, 3)
    assert not ok[0] and sizes[0].tolist() == [0, 0]
    assert not pixels.any()
    assert reader.image("clip", 2).shape == (0, 0, 3)


def test_image_is_cropped_to_its_true_size(tmp_path):
    write_store(tmp_path / "tiers", shard_images())

    reader = TierReader(tmp_path / "tiers")
    assert reader.image("detect", 1).shape == (256, 171, 3)
    assert reader.image("clip", 0).shape == (43, 64, 3)
    with pytest.raises(IndexError):
        reader.image("clip", 5)


def test_read_slices_across_shards_when_n_is_not_a_multiple_of_block(tmp_path):
    images = [landscape(), portrait()] * 3 + [square()]  # 7 rows, block 3: shards of 3, 3, 1
    write_store(tmp_path / "tiers", images, "zstd", block=3)

    reader = TierReader(tmp_path / "tiers")
    pixels, sizes, ok = reader.read("clip", 2, 7)
    assert pixels.shape == (5, 64, 64, 3)
    assert sizes.tolist() == [[43, 64], [64, 43], [43, 64], [64, 43], [64, 64]]
    assert ok.all()
    np.testing.assert_array_equal(reader.image("clip", 6), make_tiers(square(), TIERS)["clip"])


def test_empty_shard_gives_a_valid_empty_store(tmp_path):
    with TierWriter(tmp_path / "tiers", n_images=0, tiers=TIERS):
        pass

    reader = TierReader(tmp_path / "tiers")
    assert reader.n_images == 0
    pixels, sizes, ok = reader.read("detect", 0, 32)
    assert pixels.shape == (0, 256, 256, 3)
    assert sizes.shape == (0, 2) and ok.shape == (0,)


def test_store_layout_is_one_sharded_array_per_tier(tmp_path):
    write_store(tmp_path / "tiers", shard_images(), block=2)

    group = zarr.open_group(tmp_path / "tiers", mode="r")
    assert dict(group.attrs) == {
        "format_version": TIER_FORMAT_VERSION,
        "tiers": TIERS,
        "n_images": 5,
        "block": 2,
        "compression": "jpeg",
        "quality": 90,
    }
    images = group["clip/images"]
    assert images.shape == (5, 64, 64, 3)
    assert images.chunks == (1, 64, 64, 3)
    assert images.shards == (2, 64, 64, 3)
    assert group["clip/sizes"].shape == (5, 2)
    assert group["ok"].dtype == np.bool_


def test_jpeg_store_has_no_second_compressor_after_jpeg(tmp_path):
    write_store(tmp_path / "tiers", shard_images())

    metadata = json.loads((tmp_path / "tiers" / "clip" / "images" / "zarr.json").read_text())
    inner_codecs = metadata["codecs"][0]["configuration"]["codecs"]
    assert inner_codecs == [{"name": "numcodecs.imagecodecs_jpeg", "configuration": {"level": 90}}]


def test_store_is_readable_from_a_fresh_process(tmp_path):
    write_store(tmp_path / "tiers", shard_images())

    # Only importing imganalyzer.decode.tiers registers the JPEG codec; open via plain zarr
    # to prove it.
    script = (
        "import sys, zarr, imganalyzer.decode.tiers\n"
        "images = zarr.open_array(sys.argv[1] + '/detect/images', mode='r')\n"
        "print(images[3].shape, int(images[3].max()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tiers")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "(256, 256, 3) 255"


# --- atomic writing and misuse ------------------------------------------------------------------
def test_failed_with_body_leaves_no_store_and_no_temporary_directory(tmp_path):
    with (
        pytest.raises(RuntimeError, match="decode pool died"),
        TierWriter(tmp_path / "tiers", n_images=3, tiers=TIERS) as writer,
    ):
        writer.write(0, make_tiers(landscape(), TIERS))
        raise RuntimeError("decode pool died")

    assert list(tmp_path.iterdir()) == []


def test_writing_fewer_images_than_announced_fails_and_leaves_nothing(tmp_path):
    with (
        pytest.raises(ValueError, match="only 1 of 3"),
        TierWriter(tmp_path / "tiers", n_images=3, tiers=TIERS) as writer,
    ):
        writer.write(0, None)

    assert list(tmp_path.iterdir()) == []


def test_existing_store_is_replaced_only_on_success(tmp_path):
    write_store(tmp_path / "tiers", [landscape()])
    with pytest.raises(RuntimeError), TierWriter(tmp_path / "tiers", n_images=1, tiers=TIERS):
        raise RuntimeError("interrupted")
    assert TierReader(tmp_path / "tiers").read("clip", 0, 1)[2].tolist() == [True]

    write_store(tmp_path / "tiers", [None])
    assert TierReader(tmp_path / "tiers").read("clip", 0, 1)[2].tolist() == [False]


def test_write_rejects_out_of_order_index(tmp_path):
    with TierWriter(tmp_path / "tiers", n_images=2, tiers=TIERS) as writer:
        with pytest.raises(ValueError, match="expected image 0"):
            writer.write(1, None)
        writer.write(0, None)
        writer.write(1, None)


def test_write_rejects_images_larger_than_their_tier_or_missing_tiers(tmp_path):
    with TierWriter(tmp_path / "tiers", n_images=1, tiers=TIERS) as writer:
        with pytest.raises(ValueError, match="exceeds"):
            writer.write(0, {"detect": landscape(), "clip": landscape()})
        with pytest.raises(ValueError, match="expected tiers"):
            writer.write(0, {"detect": make_tiers(landscape(), TIERS)["detect"]})
        writer.write(0, None)


def test_unknown_compression_is_rejected_before_any_file_exists(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        TierWriter(tmp_path / "tiers", n_images=1, tiers=TIERS, compression="png")
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_another_format_version(tmp_path):
    write_store(tmp_path / "tiers", [None])
    group = zarr.open_group(tmp_path / "tiers", mode="r+")
    group.attrs["format_version"] = "0"

    with pytest.raises(ValueError, match="tier format"):
        TierReader(tmp_path / "tiers")


# --- guard for the private zarr API the JPEG codec relies on -------------------------------------
def test_private_zarr_numcodecs_api_is_as_expected():
    """If this fails, zarr changed `_NumcodecsArrayBytesCodec`: fix `_ImagecodecsJpeg`."""
    from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec

    codec_class = tiers_module._ImagecodecsJpeg
    assert issubclass(codec_class, _NumcodecsArrayBytesCodec)
    assert codec_class.codec_name == "numcodecs.imagecodecs_jpeg"
    assert inspect.iscoroutinefunction(_NumcodecsArrayBytesCodec._encode_single)
    assert inspect.iscoroutinefunction(_NumcodecsArrayBytesCodec._decode_single)
    # The base class decodes with `self._codec` and reshapes to the chunk shape; we override
    # `_codec`, so both must still be how it works.
    decode_source = inspect.getsource(_NumcodecsArrayBytesCodec._decode_single)
    assert "self._codec.decode" in decode_source and "reshape(chunk_spec.shape)" in decode_source

    codec = codec_class(level=75)
    assert codec.to_dict() == {
        "name": "numcodecs.imagecodecs_jpeg",
        "configuration": {"level": 75},
    }
    assert codec_class.from_dict(codec.to_dict()) == codec
    assert codec._codec.level == 75
    assert zarr.registry.get_codec_class("numcodecs.imagecodecs_jpeg") is codec_class


def test_jpeg_codec_decodes_chunks_to_their_chunk_shape(tmp_path):
    array = zarr.create_array(
        zarr.storage.LocalStore(tmp_path / "array"),
        shape=(2, 32, 32, 3),
        chunks=(1, 32, 32, 3),
        dtype="uint8",
        serializer=tiers_module._ImagecodecsJpeg(level=95),
        compressors=None,
    )
    block = np.stack([resize_long_edge(square(), 32), resize_long_edge(square(), 32)[::-1]])
    array[:] = block

    assert array[:].shape == (2, 32, 32, 3)
    assert mean_abs_diff(array[:], block) < 6


@pytest.mark.parametrize(("start", "stop"), [(0, 5), (1, 4), (2, 3), (3, 5), (4, 9), (3, 3)])
def test_jpeg_tiers_read_from_the_shard_files_as_zarr_reads_them(tmp_path, start, stop):
    write_store(tmp_path / "t.zarr", shard_images())
    reader = TierReader(tmp_path / "t.zarr")
    assert reader.encoded("detect") and reader.encoded("clip")
    for tier in TIERS:
        images, sizes, ok = reader.read(tier, start, stop)
        through_zarr, _, _ = TierReader(tmp_path / "t.zarr", shard_files=False).read(
            tier, start, stop
        )
        assert images.shape == through_zarr.shape and np.array_equal(images, through_zarr)
        assert sizes.shape[0] == ok.shape[0] == images.shape[0]


def test_read_encoded_gives_each_image_its_jpeg(tmp_path):
    import imagecodecs

    write_store(tmp_path / "t.zarr", shard_images())
    reader = TierReader(tmp_path / "t.zarr")
    chunks, sizes, ok = reader.read_encoded("clip", 0, 5)
    images, _, _ = reader.read("clip", 0, 5)
    assert len(chunks) == 5 and ok.tolist() == [True, True, False, True, True]
    for chunk, image in zip(chunks, images, strict=True):
        assert chunk is not None and chunk[:2] == b"\xff\xd8"  # a failed image: zeros, stored
        assert np.array_equal(imagecodecs.jpeg_decode(chunk), image)


def test_a_zstd_tier_reads_through_zarr_and_has_no_jpeg_bytes(tmp_path):
    write_store(tmp_path / "t.zarr", shard_images(), compression="zstd")
    reader = TierReader(tmp_path / "t.zarr")
    assert not reader.encoded("clip")
    with pytest.raises(ValueError, match="not stored as JPEG"):
        reader.read_encoded("clip", 0, 1)
    assert reader.read("clip", 0, 5)[0].shape == (5, 64, 64, 3)


def test_a_damaged_shard_index_fails_its_checksum(tmp_path):
    write_store(tmp_path / "t.zarr", shard_images())
    shard_file = next((tmp_path / "t.zarr" / "clip" / "images").rglob("c/0/*/*/*"))
    data_bytes = bytearray(shard_file.read_bytes())
    data_bytes[-10] ^= 0xFF  # inside the index, before its checksum
    shard_file.write_bytes(bytes(data_bytes))
    with pytest.raises(ValueError, match="checksum"):
        TierReader(tmp_path / "t.zarr").read("clip", 0, 2)
