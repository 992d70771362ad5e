"""imganalyzer.decode.readers: every format ends as a small, oriented, 8-bit sRGB array."""

from __future__ import annotations

import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, JpegImagePlugin
from skimage import data

from imganalyzer.decode import readers
from imganalyzer.decode.readers import DecodedImage, DecodeError, decode_image

MAX_PIXELS = 50_000_000
RED = (255, 0, 0)
GREY = (128, 128, 128)


# --- fixtures: files written in tmp_path -----------------------------------------------------


def marked_image(width: int = 96, height: int = 64) -> Image.Image:
    """A grey image with a red block in its top-left corner (to follow it through rotations)."""
    pixels = np.full((height, width, 3), GREY, np.uint8)
    pixels[: height // 3, : width // 3] = RED
    return Image.fromarray(pixels)


def save_with_orientation(image: Image.Image, path: Path, orientation: int, **params) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **params)
    return path


def corner_colours(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Mean colour of a small patch well inside each corner block of a marked image."""
    height, width = rgb.shape[:2]
    patch_h, patch_w = max(1, height // 8), max(1, width // 8)

    def mean(rows: slice, cols: slice) -> np.ndarray:
        return rgb[rows, cols].reshape(-1, 3).mean(axis=0)

    return {
        "top-left": mean(slice(0, patch_h), slice(0, patch_w)),
        "top-right": mean(slice(0, patch_h), slice(width - patch_w, width)),
        "bottom-left": mean(slice(height - patch_h, height), slice(0, patch_w)),
        "bottom-right": mean(slice(height - patch_h, height), slice(width - patch_w, width)),
    }


def red_corner(rgb: np.ndarray) -> str:
    """The one corner whose patch is red."""
    reds = [name for name, c in corner_colours(rgb).items() if c[0] > 200 and c[1] < 60]
    assert len(reds) == 1, corner_colours(rgb)
    return reds[0]


def large_photo(width: int = 2048, height: int = 1536) -> np.ndarray:
    tiles = np.tile(data.astronaut(), (height // 512 + 1, width // 512 + 1, 1))
    return np.ascontiguousarray(tiles[:height, :width])


def icc_swapping_red_and_green() -> bytes:
    """A gamma-2.2 RGB display profile whose red and green primaries are sRGB's green and red."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2
    tags = [
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    first_offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, tag in tags:
        table += signature + struct.pack(">II", first_offset + len(body), len(tag))
        body += tag
    header = struct.pack(
        ">II4s4s4s4s12s4s", first_offset + len(body), 0, b"\x02\x10\0\0", b"mntr", b"RGB ",
        b"XYZ ", b"\0" * 12, b"acsp",
    )  # fmt: skip
    header = (header + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249)).ljust(128, b"\0")
    return header + struct.pack(">I", len(tags)) + table + body


def write_dng(path: Path, cfa: np.ndarray, preview: Image.Image, orientation: int = 1) -> Path:
    """A minimal DNG: IFD0 = JPEG preview in one strip, SubIFD = 12-bit RGGB CFA data."""
    jpeg = io.BytesIO()
    preview.save(jpeg, "JPEG", quality=90)
    ifd0_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "Test Camera", True),  # UniqueCameraModel
        (274, "H", 1, orientation, True),
    ]
    identity = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)
    raw_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50717, "I", 1, 4095, True),  # WhiteLevel
        (50721, "2i", 9, identity, True),  # ColorMatrix1
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
    ]
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(
            iter([jpeg.getvalue()]),  # already compressed: written as the single strip
            shape=(preview.height, preview.width, 3),
            dtype=np.uint8,
            photometric="ycbcr",
            compression="jpeg",
            rowsperstrip=preview.height,
            subfiletype=1,
            subifds=1,
            extratags=ifd0_tags,
        )
        tiff.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
    return path


def bright_corner_cfa(width: int = 384, height: int = 256) -> np.ndarray:
    cfa = np.full((height, width), 400, np.uint16)
    cfa[: height // 3, : width // 3] = 4000
    return cfa


def bright_corner_preview(width: int = 96, height: int = 64) -> Image.Image:
    """The camera's rendering of :func:`bright_corner_cfa`: the same scene, as previews are."""
    pixels = np.full((height, width, 3), 40, np.uint8)
    pixels[: height // 3, : width // 3] = 250
    return Image.fromarray(pixels)


def brightest_corner(rgb: np.ndarray) -> str:
    colours = corner_colours(rgb)
    return max(colours, key=lambda name: colours[name].mean())


# --- JPEG ------------------------------------------------------------------------------------


def test_jpeg_draft_gives_exact_long_edge_and_true_original_size(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(large_photo(2048, 1536)).save(path, quality=90)

    decoded = decode_image(path, long_edge=500, max_pixels=MAX_PIXELS)

    assert isinstance(decoded, DecodedImage)
    assert decoded.method == "jpeg-draft"
    assert decoded.rgb.shape == (375, 500, 3)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.original_size == (2048, 1536)


def test_jpeg_draft_decodes_at_a_quarter_scale_for_a_quarter_size_target(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    Image.fromarray(large_photo(2048, 1536)).save(path, quality=90)
    drafted_sizes = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original_draft(self, mode, size)
        drafted_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)

    decode_image(path, long_edge=500, max_pixels=MAX_PIXELS)

    assert drafted_sizes == [(512, 384)]


def test_jpeg_draft_result_matches_a_full_decode_and_resize(tmp_path):
    pixels = large_photo(2048, 1536)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    with Image.open(path) as full:
        reference = np.asarray(full.resize((500, 375), Image.Resampling.LANCZOS), np.float32)

    decoded = decode_image(path, long_edge=500, max_pixels=MAX_PIXELS)

    assert np.abs(decoded.rgb.astype(np.float32) - reference).mean() < 3.0


def test_image_smaller_than_long_edge_is_never_upscaled(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(data.chelsea()).save(path)  # 451 x 300

    decoded = decode_image(path, long_edge=1024, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (300, 451, 3)
    assert decoded.original_size == (451, 300)


def test_decoded_array_is_read_only(tmp_path):
    path = tmp_path / "small.jpg"
    Image.fromarray(data.chelsea()).save(path)

    decoded = decode_image(path, long_edge=200, max_pixels=MAX_PIXELS)

    assert not decoded.rgb.flags.writeable


@pytest.mark.parametrize(
    ("orientation", "expected_corner"),
    [
        (1, "top-left"),
        (2, "top-right"),
        (3, "bottom-right"),
        (4, "bottom-left"),
        (5, "top-left"),
        (6, "top-right"),
        (7, "bottom-right"),
        (8, "bottom-left"),
    ],
)
def test_jpeg_exif_orientation_moves_pixels_to_the_displayed_position(
    tmp_path, orientation, expected_corner
):
    path = save_with_orientation(marked_image(96, 64), tmp_path / "o.jpg", orientation, quality=95)

    decoded = decode_image(path, long_edge=1024, max_pixels=MAX_PIXELS)

    is_transposed = orientation >= 5
    assert decoded.rgb.shape[:2] == ((96, 64) if is_transposed else (64, 96))
    assert decoded.original_size == ((64, 96) if is_transposed else (96, 64))
    assert red_corner(decoded.rgb) == expected_corner


def test_jpeg_orientation_6_is_rotated_to_portrait_with_draft(tmp_path):
    image = marked_image(1200, 800)
    path = save_with_orientation(image, tmp_path / "o6.jpg", 6, quality=95)

    decoded = decode_image(path, long_edge=300, max_pixels=MAX_PIXELS)

    assert decoded.method == "jpeg-draft"
    assert decoded.rgb.shape == (300, 200, 3)
    assert decoded.original_size == (800, 1200)
    assert red_corner(decoded.rgb) == "top-right"


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :32] = RED
    pixels[:, 32:] = (0, 0, 255)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(pixels).convert("CMYK").save(path, quality=95)  # an Adobe (inverted) CMYK JPEG

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(decoded.rgb[32, 8], RED, atol=20)
    np.testing.assert_allclose(decoded.rgb[32, 56], (0, 0, 255), atol=20)


def test_non_srgb_icc_profile_is_converted_to_srgb(tmp_path):
    path = tmp_path / "swapped.png"
    Image.new("RGB", (16, 16), RED).save(path, icc_profile=icc_swapping_red_and_green())

    decoded = decode_image(path, long_edge=16, max_pixels=MAX_PIXELS)

    # The profile says channel 1 holds sRGB green.
    np.testing.assert_allclose(decoded.rgb[0, 0], (0, 255, 0), atol=3)


@pytest.mark.parametrize(
    "profile",
    [
        b"not an icc profile at all",
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
    ],
    ids=["garbage", "lab-profile-on-rgb"],
)
def test_unusable_icc_profile_falls_back_to_plain_conversion(tmp_path, profile):
    path = tmp_path / "bad-profile.png"
    Image.new("RGB", (16, 16), RED).save(path, icc_profile=profile)

    decoded = decode_image(path, long_edge=16, max_pixels=MAX_PIXELS)

    assert tuple(decoded.rgb[0, 0]) == RED


# --- PNG, TIFF, GIF: modes and bit depths ----------------------------------------------------


def test_png_alpha_is_composited_over_white(tmp_path):
    pixels = np.zeros((32, 32, 4), np.uint8)  # black throughout
    pixels[:, :16, 3] = 255  # left: opaque
    pixels[:, 16:24, 3] = 128  # middle: half transparent
    path = tmp_path / "rgba.png"  # right: fully transparent
    Image.fromarray(pixels).save(path)

    decoded = decode_image(path, long_edge=32, max_pixels=MAX_PIXELS)

    assert decoded.method == "pillow"
    assert tuple(decoded.rgb[5, 5]) == (0, 0, 0)
    np.testing.assert_allclose(decoded.rgb[5, 20], (127, 127, 127), atol=2)
    assert tuple(decoded.rgb[5, 30]) == (255, 255, 255)


def test_palette_png_transparency_is_composited_over_white(tmp_path):
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 16, 32))  # left half red, right half index 0 (transparent)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)

    decoded = decode_image(path, long_edge=32, max_pixels=MAX_PIXELS)

    assert tuple(decoded.rgb[10, 5]) == RED
    assert tuple(decoded.rgb[10, 25]) == (255, 255, 255)


def test_sixteen_bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    pixels = np.array([[65535, 32768, 0, 257]], np.uint16).repeat(4, axis=0)
    path = tmp_path / "grey16.png"
    Image.fromarray(pixels).save(path)

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (4, 4, 3)
    assert decoded.rgb[0, :, 0].tolist() == [255, 128, 0, 1]
    assert (decoded.rgb[..., 0] == decoded.rgb[..., 2]).all()


def test_sixteen_bit_rgb_tiff_is_decoded_with_tifffile_and_scaled(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint16)
    pixels[...] = (65535, 32768, 257 * 10)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, pixels, photometric="rgb")

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.method == "tifffile"
    assert decoded.original_size == (8, 8)
    assert tuple(decoded.rgb[0, 0]) == (255, 128, 10)


def test_float_rgb_tiff_that_pillow_cannot_open_is_decoded_with_tifffile(tmp_path):
    pixels = np.zeros((8, 12, 3), np.float32)
    pixels[...] = (1.0, 0.5, 0.0)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, pixels, photometric="rgb")

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.method == "tifffile"
    assert decoded.rgb.shape == (8, 12, 3)
    assert tuple(decoded.rgb[0, 0]) == (255, 128, 0)


def test_tifffile_path_applies_tiff_orientation_and_downscales(tmp_path):
    marked = np.asarray(marked_image(96, 64)).astype(np.uint16) * 257
    path = tmp_path / "rgb16-o6.tif"
    tifffile.imwrite(path, marked, photometric="rgb", extratags=[(274, "H", 1, 6, True)])

    decoded = decode_image(path, long_edge=48, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (48, 32, 3)
    assert decoded.original_size == (64, 96)
    assert red_corner(decoded.rgb) == "top-right"


def test_sixteen_bit_cmyk_tiff_decodes(tmp_path):
    path = tmp_path / "cmyk16.tif"
    cmyk = np.zeros((8, 8, 4), np.uint16)
    cmyk[:, :, 0] = 65535  # full cyan
    tifffile.imwrite(path, cmyk, photometric="separated")

    decoded = decode_image(path, long_edge=8, max_pixels=MAX_PIXELS)

    red, green, blue = (int(v) for v in decoded.rgb[4, 4])
    assert decoded.method == "tifffile"
    assert red < 40 and green > 200 and blue > 200


def test_deep_tiff_in_an_unsupported_colour_space_raises_decode_error(tmp_path):
    path = tmp_path / "lab16.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint16), photometric="cielab")

    assert_one_line_decode_error(path, "unsupported TIFF colour space CIELAB")


def test_tiff_colour_space_without_a_name_is_named_by_its_number(tmp_path):
    path = tmp_path / "unknown-space.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint16), photometric="cielab")
    with tifffile.TiffFile(path) as tiff:
        offset, byteorder = tiff.pages[0].tags[262].valueoffset, tiff.byteorder
    with open(path, "r+b") as handle:  # PhotometricInterpretation 9999: no such colour space
        handle.seek(offset)
        handle.write(struct.pack(byteorder + "H", 9999))

    assert_one_line_decode_error(path, "unsupported TIFF colour space 9999")


def test_float_greyscale_tiff_is_scaled_from_unit_range(tmp_path):
    path = tmp_path / "float-grey.tif"
    tifffile.imwrite(path, np.full((4, 4), 0.5, np.float32), photometric="minisblack")

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert tuple(decoded.rgb[0, 0]) == (128, 128, 128)


def test_one_bit_image_becomes_black_and_white_rgb(tmp_path):
    image = Image.new("1", (16, 16), 0)
    image.paste(1, (0, 0, 8, 16))
    path = tmp_path / "bilevel.png"
    image.save(path)

    decoded = decode_image(path, long_edge=16, max_pixels=MAX_PIXELS)

    assert tuple(decoded.rgb[0, 0]) == (255, 255, 255)
    assert tuple(decoded.rgb[0, 15]) == (0, 0, 0)


def test_multi_page_tiff_decodes_the_first_page(tmp_path):
    path = tmp_path / "pages.tif"
    first, second = Image.new("RGB", (20, 10), RED), Image.new("RGB", (30, 30), (0, 0, 255))
    first.save(path, save_all=True, append_images=[second])

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (10, 20, 3)
    assert tuple(decoded.rgb[5, 5]) == RED


def test_animated_gif_decodes_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert tuple(decoded.rgb[8, 8]) == RED


def test_large_png_is_downscaled_to_long_edge(tmp_path):
    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path, compress_level=1)  # 600 x 400

    decoded = decode_image(path, long_edge=300, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (200, 300, 3)
    assert decoded.original_size == (600, 400)


# --- HEIC --------------------------------------------------------------------------------------


def test_heic_with_orientation_6_is_rotated_exactly_once(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "o6.heic"
    # Passed as bytes, pillow-heif turns the EXIF orientation into a HEIF `irot` transform.
    marked_image(256, 192).save(path, exif=exif.tobytes(), quality=90)

    decoded = decode_image(path, long_edge=128, max_pixels=MAX_PIXELS)

    assert decoded.method == "heif"
    assert decoded.rgb.shape == (128, 96, 3)
    assert decoded.original_size == (192, 256)
    assert red_corner(decoded.rgb) == "top-right"


def test_heic_exif_orientation_without_irot_is_ignored_as_the_heif_spec_requires(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "exif-only.heic"
    # Passed as an Exif object, pillow-heif stores the tag but writes no `irot` transform.
    marked_image(256, 192).save(path, exif=exif, quality=90)

    decoded = decode_image(path, long_edge=256, max_pixels=MAX_PIXELS)

    assert decoded.original_size == (256, 192)
    assert red_corner(decoded.rgb) == "top-left"


def test_heic_with_embedded_thumbnail_decodes_to_long_edge(tmp_path):
    path = tmp_path / "thumb.heic"
    Image.fromarray(data.astronaut()[:192, :256]).save(path, quality=80, thumbnails=[64])

    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)

    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.original_size == (256, 192)


# --- RAW (DNG) ---------------------------------------------------------------------------------


def test_dng_with_large_enough_preview_uses_the_preview(tmp_path):
    path = write_dng(tmp_path / "a.dng", bright_corner_cfa(), marked_image(384, 256))

    decoded = decode_image(path, long_edge=192, max_pixels=MAX_PIXELS)

    assert decoded.method == "raw-preview"
    assert decoded.rgb.shape == (128, 192, 3)
    assert decoded.original_size == (384, 256)
    assert red_corner(decoded.rgb) == "top-left"


def test_dng_preview_is_rotated_by_the_raw_orientation(tmp_path):
    path = write_dng(tmp_path / "a.DNG", bright_corner_cfa(), marked_image(384, 256), 6)

    decoded = decode_image(path, long_edge=192, max_pixels=MAX_PIXELS)

    assert decoded.method == "raw-preview"
    assert decoded.rgb.shape == (192, 128, 3)
    assert decoded.original_size == (256, 384)
    assert red_corner(decoded.rgb) == "top-right"


def test_dng_with_small_preview_is_demosaiced_at_half_size(tmp_path):
    path = write_dng(tmp_path / "a.dng", bright_corner_cfa(384, 256), bright_corner_preview())

    decoded = decode_image(path, long_edge=160, max_pixels=MAX_PIXELS)

    assert decoded.method == "raw-half-size"
    assert decoded.rgb.shape == (107, 160, 3)
    assert decoded.original_size == (384, 256)
    assert brightest_corner(decoded.rgb) == "top-left"


def test_dng_half_size_output_is_rotated_by_the_raw_orientation(tmp_path):
    path = write_dng(tmp_path / "a.dng", bright_corner_cfa(384, 256), bright_corner_preview(), 6)

    decoded = decode_image(path, long_edge=1024, max_pixels=MAX_PIXELS)

    assert decoded.method == "raw-half-size"
    assert decoded.rgb.shape == (192, 128, 3)
    assert decoded.original_size == (256, 384)
    assert brightest_corner(decoded.rgb) == "top-right"


def test_dng_over_the_pixel_limit_is_refused(tmp_path):
    path = write_dng(tmp_path / "a.dng", bright_corner_cfa(384, 256), marked_image(96, 64))

    with pytest.raises(DecodeError, match="image has 98304 pixels, over the max_pixels limit"):
        decode_image(path, long_edge=64, max_pixels=10_000)


def test_file_with_raw_extension_that_is_not_raw_raises_decode_error(tmp_path):
    path = tmp_path / "fake.nef"
    path.write_bytes(np.random.default_rng(1).bytes(20_000))

    with pytest.raises(DecodeError, match="RAW format LibRaw cannot read") as caught:
        decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert caught.value.kind == "unsupported_format"


# --- failures --------------------------------------------------------------------------------


def assert_one_line_decode_error(path: Path, reason: str, max_pixels: int = MAX_PIXELS) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_image(path, long_edge=256, max_pixels=max_pixels)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message


def test_truncated_jpeg_raises_decode_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    assert_one_line_decode_error(path, "truncated JPEG file (it ends early)")


def test_truncated_png_raises_decode_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    assert_one_line_decode_error(path, "truncated PNG file (it ends early)")


def test_zero_byte_file_raises_decode_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()

    assert_one_line_decode_error(path, "empty file (0 bytes)")


def test_random_bytes_named_jpg_raise_decode_error(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(5000))

    assert_one_line_decode_error(path, "not an image: its content is no format")


def test_text_file_named_png_raises_decode_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("shopping list: milk, eggs\n")

    assert_one_line_decode_error(path, "not an image: its content is no format")


def test_missing_file_raises_decode_error(tmp_path):
    assert_one_line_decode_error(tmp_path / "missing.jpg", "file not found")


def test_directory_raises_decode_error(tmp_path):
    path = tmp_path / "folder.jpg"
    path.mkdir()

    assert_one_line_decode_error(path, "is a directory")


def test_fifo_raises_decode_error_instead_of_blocking(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)

    assert_one_line_decode_error(path, "not a regular file")


def test_truncated_heic_raises_decode_error(tmp_path):
    buffer = io.BytesIO()
    marked_image(128, 96).save(buffer, "HEIF", quality=80)
    path = tmp_path / "truncated.heic"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    with pytest.raises(DecodeError):
        decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)


def test_unreadable_file_raises_decode_error(tmp_path):
    path = tmp_path / "secret.jpg"
    Image.fromarray(data.chelsea()).save(path)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as a user who can read any file (root)")

    assert_one_line_decode_error(path, "permission denied")


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1-bit PNG whose header claims ``width`` x ``height`` (its data is a single tiny row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(20_000, 20_000))

    assert_one_line_decode_error(
        path, "image has 400000000 pixels, over the max_pixels limit of 50000000"
    )


def test_jpeg_over_a_small_pixel_limit_is_refused(tmp_path):
    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)

    assert_one_line_decode_error(path, "image has 135300 pixels", max_pixels=100_000)


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_decodes_match_sequential_decodes(tmp_path):
    paths = []
    for index, photo in enumerate([data.astronaut(), data.coffee(), data.chelsea()] * 2):
        path = tmp_path / f"{index}.jpg"
        save_with_orientation(Image.fromarray(photo), path, 1 + index % 8, quality=90)
        paths.append(path)
    sequential = [decode_image(p, long_edge=200, max_pixels=MAX_PIXELS).rgb for p in paths]

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(
            pool.map(lambda p: decode_image(p, long_edge=200, max_pixels=MAX_PIXELS).rgb, paths)
        )

    for one, other in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(one, other)


def test_permission_error_while_opening_is_reported_as_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(readers, "open_pillow", refuse)

    assert_one_line_decode_error(path, "permission denied")


def test_unexpected_decoder_exception_is_wrapped_with_its_type(tmp_path, monkeypatch):
    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)

    def explode(*args, **kwargs):
        raise RuntimeError("decoder\nexploded")

    monkeypatch.setattr(readers, "open_pillow", explode)

    assert_one_line_decode_error(path, "corrupt JPEG file: RuntimeError: decoder exploded")


def test_memory_error_is_not_swallowed(tmp_path, monkeypatch):
    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)

    def exhaust(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(readers, "open_pillow", exhaust)

    with pytest.raises(MemoryError):
        decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)


# --- decoding by content, error kinds, refusing rather than guessing --------------------------


def _photo(height: int = 120, width: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)


def test_jpeg_named_as_raw_decodes_as_jpeg_and_says_so(tmp_path):
    path = tmp_path / "export.cr2"
    Image.fromarray(_photo()).save(path, "JPEG", quality=95)
    decoded = decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert decoded.method == "jpeg-draft"
    assert decoded.original_size == (160, 120)
    assert decoded.note == "content is JPEG, not .cr2"


def test_correctly_named_file_has_no_note(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(_photo()).save(path, "JPEG")
    assert decode_image(path, long_edge=64, max_pixels=MAX_PIXELS).note is None


def test_tiff_with_thousands_of_samples_per_pixel_is_refused_before_allocation(tmp_path):
    path = tmp_path / "many_samples.tif"
    tifffile.imwrite(
        path, np.zeros((8, 8, 2000), np.uint16), photometric="minisblack", planarconfig="contig"
    )
    # 64 pixels are far under max_pixels, but 64 x 2000 samples x 2 bytes are not under 8 x it.
    with pytest.raises(DecodeError, match="over the byte budget") as caught:
        decode_image(path, long_edge=64, max_pixels=10_000)
    assert caught.value.kind == "too_large"


def test_pixel_limit_error_kind_is_too_large(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(_photo(200, 300)).save(path)
    with pytest.raises(DecodeError) as caught:
        decode_image(path, long_edge=64, max_pixels=1000)
    assert caught.value.kind == "too_large"


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("empty.jpg", b"", "empty"),
        ("noise.jpg", b"not an image at all" * 50, "unsupported_format"),
        ("zeros.jxl", b"\xff\x0a" + bytes(200), "corrupt"),
        ("cut.jpg", None, "truncated"),
    ],
)
def test_error_kinds(tmp_path, name, content, kind):
    path = tmp_path / name
    if content is None:
        buffer = io.BytesIO()
        Image.fromarray(_photo()).save(buffer, "JPEG")
        content = buffer.getvalue()[:-300]
    path.write_bytes(content)
    with pytest.raises(DecodeError) as caught:
        decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert caught.value.kind == kind
    assert "\n" not in str(caught.value)


def test_missing_file_is_vanished(tmp_path):
    with pytest.raises(DecodeError) as caught:
        decode_image(tmp_path / "gone.jpg", long_edge=64, max_pixels=MAX_PIXELS)
    assert caught.value.kind == "vanished"


def test_raw_without_image_data_is_refused_not_black(tmp_path):
    from imganalyzer.decode.metadata import read_metadata
    from imganalyzer.example.writers import write_dng

    path = write_dng(tmp_path / "stripped.dng", np.zeros((64, 96, 3), np.uint8), None, None)
    with pytest.raises(DecodeError) as caught:
        decode_image(path, long_edge=64, max_pixels=MAX_PIXELS)
    assert caught.value.kind == "no_image_data"
    assert read_metadata(path)["format"] == "dng"  # its metadata row is still ok


def test_raw_decode_is_deterministic(tmp_path):
    from imganalyzer.example.writers import write_dng

    path = write_dng(tmp_path / "a.dng", _photo(128, 192), None, None)
    first = decode_image(path, long_edge=96, max_pixels=MAX_PIXELS)
    second = decode_image(path, long_edge=96, max_pixels=MAX_PIXELS)
    assert first.method == "raw-half-size"
    assert np.array_equal(first.rgb, second.rgb)


def test_a_raw_decode_is_judged_against_its_preview():
    from imganalyzer.decode.readers import _implausible_raw

    photo = _photo(96, 128)
    noise = np.random.default_rng(3).integers(0, 256, photo.shape, np.uint8)
    preview = Image.fromarray(photo)
    assert _implausible_raw(photo, preview) is None
    assert _implausible_raw(noise, preview) == "noise"  # Panasonic RW2 misread as noise
    assert _implausible_raw(np.zeros_like(photo), preview) == "black"
    assert _implausible_raw(np.zeros_like(photo), None) == "black"
    assert _implausible_raw(noise, None) is None  # nothing to judge against: kept


def test_a_right_raw_decode_passes_the_check_against_its_small_preview(tmp_path):
    from imganalyzer.example.writers import write_dng as write_camera_dng

    path = write_camera_dng(tmp_path / "a.dng", _photo(256, 384), None, preview_long_edge=64)
    decoded = decode_image(path, long_edge=128, max_pixels=MAX_PIXELS)
    assert decoded.method == "raw-half-size"  # the preview is too small; the decode is kept


def test_a_raw_decode_unlike_its_preview_is_replaced_by_the_preview(tmp_path):
    noise = np.random.default_rng(5).integers(0, 4095, (256, 384)).astype(np.uint16)
    path = write_dng(tmp_path / "misread.dng", noise, bright_corner_preview(96, 64))
    decoded = decode_image(path, long_edge=160, max_pixels=MAX_PIXELS)
    assert decoded.method == "raw-preview"
    assert brightest_corner(decoded.rgb) == "top-left"


def test_bmp_and_the_first_frame_of_a_gif_decode(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.bmp")
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "b.gif", save_all=True, append_images=frames[1:], duration=100)

    bmp = decode_image(tmp_path / "a.bmp", long_edge=64, max_pixels=MAX_PIXELS)
    gif = decode_image(tmp_path / "b.gif", long_edge=64, max_pixels=MAX_PIXELS)

    assert bmp.original_size == (160, 120) and bmp.note is None
    red, green, blue = (int(v) for v in gif.rgb[15, 20])
    assert red > 200 and blue < 50  # the first frame, not the last
