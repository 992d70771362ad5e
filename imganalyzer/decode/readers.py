"""Decode an image file once, at the smallest resolution that serves every consumer.

Every supported format ends as one ``(H, W, 3)`` uint8 sRGB array, oriented as displayed, whose
long edge is at most the requested ``long_edge``. JPEGs are decoded with DCT scaling
(``Image.draft``), HEIF files from an embedded thumbnail when one is large enough, RAW files from
their embedded preview when it is large enough (else a half-size demosaic, checked against
the preview: black or noise is replaced by the preview or refused), JPEG XL through libjxl
(imagecodecs). The decoder is chosen by the file's first bytes, not its name. Width x height x
samples x bytes per sample are checked against ``max_pixels`` before anything is allocated.
Any failure raises :class:`DecodeError` with a one-line reason and the error kind that
:mod:`imganalyzer.decode.failures` gives the file.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pillow_heif
import rawpy
import tifffile
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from imganalyzer import formats
from imganalyzer.decode import jxl
from imganalyzer.decode.failures import FileError, check_file, classify

log = logging.getLogger(__name__)
pillow_heif.register_heif_opener()
# Our own max_pixels check (read from the header, before any pixel is decoded) replaces Pillow's
# decompression-bomb check, which would otherwise fire first with a different message and limit.
Image.MAX_IMAGE_PIXELS = None

RAW_EXTENSIONS = formats.RAW_EXTENSIONS
# A RAW decode whose brightest value is at most this is black: the pixel data is missing.
BLACK_LEVEL = 8
# A RAW decode whose light and dark areas correlate less than this with its embedded preview's
# is noise (a misread layout), not the photo.
MIN_PREVIEW_CORRELATION = 0.3
# A preview smaller than this (long edge) is not used in place of a failed decode.
MIN_PREVIEW_EDGE = 64
# HEIF/RAW content under this many bytes per declared pixel that decodes to black had its image
# data stripped (metadata sample files): 0.003 bytes per pixel is seen, real photos use > 0.05.
STRIPPED_BYTES_PER_PIXEL = 0.01
# Bytes one pixel may take while decoding (16-bit RGBA): with max_pixels, the byte budget that
# every decoder's declared width x height x samples x bytes per sample must stay under.
BYTES_PER_PIXEL_BUDGET = 8

# Pillow plugins by the format formats.sniff() names from the content.
_SNIFFED_PLUGINS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"} | {
    "tiff": "TIFF", "heif": "HEIF", "avif": "AVIF"
}  # fmt: skip
# What Pillow's plugins raise on a file they cannot parse.
PILLOW_ERRORS = (
    OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError, struct.error,
    Image.DecompressionBombError,
)  # fmt: skip
_ORIENTATION_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# LibRaw's `flip` is a bit mask (1 = mirror, 2 = flip, 4 = transpose); this is dcraw's own table
# from it to the EXIF orientation, the one LibRaw writes into the previews it extracts.
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
_DRAFT_FORMATS = {"JPEG": "jpeg-draft", "MPO": "jpeg-draft", "HEIF": "heif"}
_TIFFFILE_PHOTOMETRICS = frozenset(
    {tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE}
)
_SIXTEEN_BIT_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ROWS_PER_CHUNK = 512


class DecodeError(FileError):
    """A one-line, human-readable reason why an image could not be decoded, and its ``kind``
    (one of :data:`imganalyzer.results.ERROR_KINDS`)."""


@dataclass
class DecodedImage:
    """One decoded image.

    ``rgb`` is a read-only ``(H, W, 3)`` uint8 sRGB array, oriented as displayed, with its long
    edge at most the requested ``long_edge`` (never upscaled). ``original_size`` is the
    ``(width, height)`` of the full-resolution image as displayed (after EXIF orientation).
    ``method`` names the decode path: "jpeg-draft", "pillow", "heif", "jpegxl", "raw-preview",
    "raw-half-size" or "tifffile". ``note`` says when the content is not what the file's
    extension claims ("content is JPEG, not .nef").
    """

    rgb: np.ndarray
    original_size: tuple[int, int]
    method: str
    note: str | None = None


def decode_image(path: str | os.PathLike, long_edge: int, max_pixels: int) -> DecodedImage:
    """Decode ``path`` once into a :class:`DecodedImage` whose long edge is at most ``long_edge``.

    Raises :class:`DecodeError` (with a one-line reason and the file's error kind, from
    :func:`imganalyzer.decode.failures.classify`) for any file that cannot be decoded,
    including one whose header declares more than ``max_pixels`` pixels; that check runs before
    any pixel is decoded. Safe to call from several threads at once.
    """
    if long_edge < 1:
        raise ValueError(f"long_edge must be positive, got {long_edge}")
    path = os.fspath(path)
    try:
        check_file(path)
        with open(path, "rb") as handle:
            fmt = formats.sniff(handle.read(32))
        extension = os.path.splitext(path)[1].lower()
        decoded = _decode_by_content(path, fmt, extension, long_edge, max_pixels)
    except MemoryError:  # out of memory is the machine's state, not the file's
        raise
    except Exception as error:
        raise DecodeError(*classify(error, path)) from error
    decoded.note = formats.mismatch_note(fmt, extension)
    return decoded


def _decode_by_content(
    path: str, fmt: str, extension: str, long_edge: int, max_pixels: int
) -> DecodedImage:
    if formats.is_raw(fmt, extension):
        return _decode_raw(path, long_edge, max_pixels)
    if fmt == "jxl":
        return _decode_jxl(path, long_edge, max_pixels)
    if fmt == "avif" and not (_pillow_reads("AVIF") or pillow_heif.libheif_info().get("AVIF")):
        raise DecodeError("AVIF: no AVIF decoder is installed", "unsupported_format")
    return _decode_with_pillow(path, fmt, long_edge, max_pixels)


def _pillow_reads(format_name: str) -> bool:
    Image.init()
    return format_name in Image.OPEN


def open_pillow(fh: BinaryIO, filename: str = "") -> Image.Image:
    """The image in ``fh`` opened by Pillow: its header read, no pixel decoded, and no
    decompression-bomb check (callers check sizes themselves).

    The content picks the plugin: the one for the format :func:`formats.sniff` names (so that
    libheif's compact "mini" HEIF files, which pillow-heif's signature check turns away, reach
    libheif), else the plugins whose signature check accepts the first bytes, else the plugins
    without one (TGA, ...). The error of the first plugin that claims the file is raised as it
    is, so that a damaged JPEG fails as a JPEG; ``UnidentifiedImageError`` where none claims it.
    Every module that opens images with Pillow opens them here, and so meets the same error.
    """
    fh.seek(0)
    prefix = fh.read(32)
    Image.init()
    plugin = _SNIFFED_PLUGINS.get(formats.sniff(prefix), "")
    plugins = [(name, *Image.OPEN[name]) for name in list(Image.ID)]
    claiming = [factory for name, factory, _ in plugins if name == plugin] or [
        factory for _, factory, accept in plugins if accept and _accepts(accept, prefix)
    ]
    for factory in claiming or [factory for _, factory, accept in plugins if accept is None]:
        fh.seek(0)
        try:
            return factory(fh, filename)
        except PILLOW_ERRORS:
            if claiming:
                raise
    raise UnidentifiedImageError(f"cannot identify image file (starts with {prefix[:8]!r})")


def _accepts(accept: Callable[[bytes], object], prefix: bytes) -> bool:
    try:
        result = accept(prefix)
    except PILLOW_ERRORS:  # some signature checks fail on very short files
        return False
    return bool(result) and not isinstance(result, str)  # a str is a warning: not accepted


def _check_pixel_limit(
    size: tuple[int, int], max_pixels: int, samples: int = 3, bytes_per_sample: int = 1
) -> None:
    """Refuse, before any pixel is decoded, an image whose header declares more than
    ``max_pixels`` pixels or more bytes than ``max_pixels * BYTES_PER_PIXEL_BUDGET``."""
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise DecodeError(
            f"image has {pixels} pixels, over the max_pixels limit of {max_pixels}", "too_large"
        )
    needed = pixels * max(1, samples) * max(1, bytes_per_sample)
    budget = max_pixels * BYTES_PER_PIXEL_BUDGET
    if needed > budget:
        raise DecodeError(
            f"image needs {needed} bytes ({samples} samples of {bytes_per_sample} bytes per "
            f"pixel), over the byte budget of {budget}",
            "too_large",
        )


def _pillow_sample_layout(image: Image.Image) -> tuple[int, int]:
    """(samples per pixel, bytes per sample) that Pillow allocates for ``image``."""
    samples = len(image.getbands())
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        samples = max(samples, int(tags.get(277, 1) or 1))
    wide = image.mode.startswith("I;16") or image.mode in ("I", "F")
    return samples, 4 if image.mode in ("I", "F") else 2 if wide else 1


def _decode_with_pillow(path: str, fmt: str, long_edge: int, max_pixels: int) -> DecodedImage:
    with open(path, "rb") as handle:
        try:
            image = open_pillow(handle, path)
        except PILLOW_ERRORS as error:
            if fmt != "tiff":
                raise
            return _tifffile_instead(path, long_edge, max_pixels, error)
        return _decode_opened(image, path, long_edge, max_pixels)


def _tifffile_instead(
    path: str, long_edge: int, max_pixels: int, pillow_error: BaseException
) -> DecodedImage:
    """A TIFF Pillow cannot open (float RGB, ...) through tifffile. Where tifffile fails too,
    Pillow's error is the reason: the metadata job meets the same one (one kind per file)."""
    try:
        return _decode_with_tifffile(path, long_edge, max_pixels)
    except (FileError, MemoryError):
        raise
    except Exception:  # noqa: BLE001 (tifffile's own error would tell a different story)
        raise pillow_error from None


def _decode_opened(image: Image.Image, path: str, long_edge: int, max_pixels: int) -> DecodedImage:
    with image:
        stored_size = image.size
        _check_pixel_limit(stored_size, max_pixels, *_pillow_sample_layout(image))
        if _is_high_depth_colour_tiff(image):
            return _decode_with_tifffile(path, long_edge, max_pixels)
        method = _DRAFT_FORMATS.get(image.format or "", "pillow")
        if method != "pillow":
            image.draft("RGB", _draft_box(stored_size, long_edge))
        image.load()  # before getexif(), which for PNG would load and hide a load error
        # pillow-heif applies the HEIF rotation itself and resets the EXIF orientation to 1.
        orientation = 1 if image.format == "HEIF" else _exif_orientation(image)
        rgb = _to_small_srgb(image, long_edge, image.info.get("icc_profile"))
    if method == "heif":
        _refuse_stripped(path, stored_size, rgb)
    return _decoded(_apply_orientation(rgb, orientation), stored_size, orientation, method)


def _refuse_stripped(path: str, stored_size: tuple[int, int], rgb: Image.Image) -> None:
    """A black decode of a file far too small for its declared size: the image data is gone."""
    bytes_per_pixel = os.path.getsize(path) / max(1, stored_size[0] * stored_size[1])
    red = rgb.getextrema()[0]  # (min, max) of the red band
    if (
        bytes_per_pixel < STRIPPED_BYTES_PER_PIXEL
        and isinstance(red, tuple)
        and red[1] <= BLACK_LEVEL
    ):
        raise DecodeError(
            f"no image data: {stored_size[0]}x{stored_size[1]} image in a "
            f"{os.path.getsize(path)}-byte file decodes to black",
            "no_image_data",
        )


def _is_high_depth_colour_tiff(image: Image.Image) -> bool:
    """Pillow reads colour TIFFs deeper than 8 bits only by dropping the low byte: use tifffile."""
    if image.format != "TIFF" or not isinstance(image, TiffImagePlugin.TiffImageFile):
        return False
    bits = image.tag_v2.get(258, 8)
    bits = bits if isinstance(bits, tuple) else (bits,)
    return image.tag_v2.get(277, 1) >= 3 and max(bits) > 8


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when absent or unreadable: bad EXIF never fails an image."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _draft_box(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """A box of the image's own aspect ratio with the requested long edge.

    ``draft`` picks its DCT scale from the smaller of the two axis ratios, so the short side is
    rounded down to never hold the scale back.
    """
    width, height = size
    if max(width, height) <= long_edge:
        return size
    if width >= height:
        return long_edge, max(1, height * long_edge // width)
    return max(1, width * long_edge // height), long_edge


def _to_small_srgb(image: Image.Image, long_edge: int, icc_profile: bytes | None) -> Image.Image:
    """Any Pillow image -> 8-bit sRGB ``RGB`` image with long edge <= ``long_edge``."""
    image = _to_eight_bit(image)
    image = _downscale(image, long_edge)
    image = _composite_over_white(image)
    return _convert_to_srgb(image, icc_profile)


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Convert to one of the 8-bit modes L, LA, RGB, RGBA, CMYK, scaling deeper data."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    if mode in _SIXTEEN_BIT_GREY_MODES:
        return Image.fromarray(_scale_to_uint8(np.asarray(image), 65535.0))
    if mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(image), 1.0))
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray, max_value: float) -> np.ndarray:
    """Scale ``values`` (any real dtype, ``max_value`` = full scale) to uint8, rounding.

    Row chunks keep the float32 temporary small for very large images.
    """
    out = np.empty(values.shape, np.uint8)
    for start in range(0, values.shape[0], _ROWS_PER_CHUNK):
        chunk = values[start : start + _ROWS_PER_CHUNK].astype(np.float32)
        chunk *= 255.0 / max_value
        np.clip(chunk, 0.0, 255.0, out=chunk)
        np.rint(chunk, out=chunk)
        out[start : start + _ROWS_PER_CHUNK] = chunk
    return out


def _target_size(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    width, height = size
    scale = long_edge / max(width, height)
    if scale >= 1.0:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale(image: Image.Image, long_edge: int) -> Image.Image:
    size = _target_size(image.size, long_edge)
    if size == image.size:
        return image
    # reducing_gap: a fast box reduction first, then Lanczos over the last factor <= 3.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _composite_over_white(image: Image.Image) -> Image.Image:
    if image.mode not in ("RGBA", "LA"):
        return image
    if image.getchannel("A").getextrema() == (255, 255):
        return image.convert(image.mode[:-1])
    image = image.convert("RGBA")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image)
    return background


def _convert_to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Colour-manage to sRGB when a non-sRGB ICC profile is attached; a bad profile is ignored."""
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            if not _is_srgb(source):
                # A fresh sRGB profile per call: LittleCMS profiles are not safe to share
                # between threads, and creating one takes ~0.1 ms.
                srgb = ImageCms.createProfile("sRGB")
                converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
                if converted is not None:
                    return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass
    return image if image.mode == "RGB" else image.convert("RGB")


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    description = profile.profile.profile_description or ""
    return "srgb" in description.lower()


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    transpose = _ORIENTATION_TRANSPOSES.get(orientation)
    return image if transpose is None else image.transpose(transpose)


def _displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _decoded(
    image: Image.Image | np.ndarray, stored_size: tuple[int, int], orientation: int, method: str
) -> DecodedImage:
    rgb = np.asarray(image)
    rgb.flags.writeable = False
    return DecodedImage(rgb, _displayed_size(stored_size, orientation), method)


def _decode_with_tifffile(path: str, long_edge: int, max_pixels: int) -> DecodedImage:
    """Decode the first page of a TIFF that Pillow cannot read faithfully (deep colour, float)."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        stored_size = (page.imagewidth, page.imagelength)
        _check_pixel_limit(
            stored_size, max_pixels, page.samplesperpixel, np.dtype(page.dtype).itemsize
        )
        is_cmyk = (
            page.photometric == tifffile.PHOTOMETRIC.SEPARATED
            and page.samplesperpixel >= 4
            and page.tags.valueof(332, 1) == 1  # InkSet 1: CMYK
        )
        if page.photometric not in _TIFFFILE_PHOTOMETRICS and not is_cmyk:
            raise DecodeError(
                f"unsupported TIFF colour space {_photometric_name(page.photometric)}",
                "unsupported_codec",
            )
        samples = _samples_last(page.asarray(), page.axes)
        icc_profile = page.tags.valueof(34675)
        orientation = page.tags.valueof(274, 1)
        is_min_is_white = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
    eight_bit = _samples_to_uint8(samples, invert=is_min_is_white)
    if is_cmyk:  # deep CMYK (print files): 8-bit CMYK, then the usual conversion to sRGB
        cmyk = np.ascontiguousarray(eight_bit[:, :, :4])
        image = Image.frombytes("CMYK", (cmyk.shape[1], cmyk.shape[0]), cmyk.tobytes())
    else:
        image = Image.fromarray(eight_bit)
    rgb = _to_small_srgb(image, long_edge, icc_profile)
    orientation = orientation if orientation in _ORIENTATION_TRANSPOSES else 1
    return _decoded(_apply_orientation(rgb, orientation), stored_size, orientation, "tifffile")


def _photometric_name(photometric: int) -> str:
    """A TIFF colour space's name; its number where tifffile knows no name for it."""
    try:
        return tifffile.PHOTOMETRIC(photometric).name
    except ValueError:
        return str(photometric)


def _samples_last(pixels: np.ndarray, axes: str) -> np.ndarray:
    """tifffile page data -> ``(H, W)`` or ``(H, W, S)``."""
    if axes.startswith("S"):  # planar configuration
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.ndim not in (2, 3):
        raise DecodeError(f"unsupported TIFF layout (axes {axes!r})")
    return pixels


def _samples_to_uint8(samples: np.ndarray, invert: bool) -> np.ndarray:
    """``(H, W[, S])`` samples of any dtype -> uint8 grey, grey+alpha, RGB or RGBA."""
    if samples.ndim == 3 and samples.shape[2] > 4:
        samples = samples[:, :, :4]
    if samples.dtype == np.uint8:
        scaled = samples
    elif samples.dtype.kind == "f":
        scaled = _scale_to_uint8(samples, 1.0)
    elif samples.dtype.kind in "ui":
        scaled = _scale_to_uint8(samples, float(np.iinfo(samples.dtype).max))
    elif samples.dtype == np.bool_:
        scaled = samples.astype(np.uint8) * np.uint8(255)
    else:
        raise DecodeError(f"unsupported TIFF sample type {samples.dtype}")
    return 255 - scaled if invert else scaled


def _decode_jxl(path: str, long_edge: int, max_pixels: int) -> DecodedImage:
    """A JPEG XL file through libjxl (imagecodecs), which applies its orientation. Its pixels
    are taken as sRGB: libjxl hands lossy files back in their own colour space, which is sRGB
    for the files cameras and converters write."""
    with open(path, "rb") as handle:
        header = jxl.read_header(handle)
        _check_pixel_limit(header.displayed_size, max_pixels, 4, 2)
        handle.seek(0)
        data = handle.read()
    pixels = jxl.decode(data)
    image = Image.fromarray(_samples_to_uint8(pixels, invert=False))
    rgb = _to_small_srgb(image, long_edge, None)
    return _decoded(rgb, (pixels.shape[1], pixels.shape[0]), 1, "jpegxl")


def _decode_raw(path: str, long_edge: int, max_pixels: int) -> DecodedImage:
    with rawpy.imread(path) as raw:
        sizes = raw.sizes
        sensor_size = (sizes.width, sizes.height)
        if min(sizes.raw_width, sizes.raw_height, sizes.width, sizes.height) <= 0:
            raise DecodeError("RAW file without image data", "no_image_data")
        _check_pixel_limit((sizes.raw_width, sizes.raw_height), max_pixels, 1, 2)
        _check_pixel_limit(sensor_size, max_pixels, 3, 2)
        orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(sizes.flip, 1)
        preview = _raw_preview(raw, long_edge, orientation)
        if preview is not None:
            return _decoded(preview, sensor_size, orientation, "raw-preview")
        small_preview = _raw_preview(raw, long_edge, orientation, min_edge=1)  # to check
        # LibRaw applies the flip itself here. A truncated or damaged RAW is refused even where
        # its preview is intact: the user should learn that the file is damaged.
        rgb = raw.postprocess(
            half_size=True, use_camera_wb=True, output_bps=8, no_auto_bright=False
        )
    small = _downscale(Image.fromarray(rgb), long_edge)
    problem = _implausible_raw(np.asarray(small), small_preview)
    if problem is None:
        return _decoded(small, sensor_size, orientation, "raw-half-size")
    if small_preview is not None and _usable_preview(small_preview):
        log.info("%s: RAW decode is %s; using its embedded preview", path, problem)
        return _decoded(small_preview, sensor_size, orientation, "raw-preview")
    raise DecodeError(
        f"RAW file without usable image data (its decode is {problem})", ("no_image_data")
    )


def _implausible_raw(rgb: np.ndarray, preview: Image.Image | None) -> str | None:
    """Why a RAW decode cannot be right ("black", "noise"), or None where it looks like a photo.

    Black: the pixel data was stripped (metadata-only sample files). Noise: LibRaw decoded data
    in a layout it misread; judged against the embedded preview, which the camera rendered: at
    32 x 32 pixels a right decode follows the preview's light and dark areas whatever its
    white balance or brightness (correlation near 1), noise does not (near 0).
    """
    if int(rgb.max(initial=0)) <= BLACK_LEVEL:
        return "black"
    if preview is None:
        return None
    decoded, expected = _structure(rgb), _structure(np.asarray(preview))
    if expected.std() < 4.0:  # a flat preview says nothing
        return None
    if decoded.std() < 1e-6:
        return "noise"
    correlation = float(np.corrcoef(decoded.ravel(), expected.ravel())[0, 1])
    return "noise" if correlation < MIN_PREVIEW_CORRELATION else None


def _structure(rgb: np.ndarray) -> np.ndarray:
    """A 32 x 32 grey version of an image (its light and dark areas, no detail)."""
    grey = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    return np.asarray(grey.resize((32, 32), Image.Resampling.BOX), dtype=np.float32)


def _usable_preview(preview: Image.Image | None) -> bool:
    """A preview worth showing instead of a wrong decode: not tiny, not black, not flat."""
    if preview is None or max(preview.size) < MIN_PREVIEW_EDGE:
        return False
    values = np.asarray(preview)
    return int(values.max(initial=0)) > BLACK_LEVEL and float(values.std()) > 1.0


def _raw_preview(
    raw: rawpy.RawPy, long_edge: int, flip_orientation: int, min_edge: int | None = None
) -> Image.Image | None:
    """The embedded preview, oriented and downscaled to ``long_edge``, if its long edge is at
    least ``min_edge`` (default: ``long_edge``); else None.

    A missing, unsupported or broken preview is not an error: the caller demosaics instead.
    """
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        return None
    min_edge = long_edge if min_edge is None else min_edge
    if thumb.format == rawpy.ThumbFormat.BITMAP and isinstance(thumb.data, np.ndarray):
        bitmap = Image.fromarray(thumb.data)
        if max(bitmap.size) < min_edge:
            return None
        return _apply_orientation(_to_small_srgb(bitmap, long_edge, None), flip_orientation)
    if thumb.format != rawpy.ThumbFormat.JPEG or not isinstance(thumb.data, bytes):
        return None
    try:
        return _decode_preview_jpeg(thumb.data, long_edge, flip_orientation, min_edge)
    except (OSError, SyntaxError, ValueError, EOFError):
        return None


def _decode_preview_jpeg(
    data: bytes, long_edge: int, flip_orientation: int, min_edge: int
) -> Image.Image | None:
    with Image.open(io.BytesIO(data)) as preview:
        if max(preview.size) < min_edge:
            return None
        preview.draft("RGB", _draft_box(preview.size, long_edge))
        preview.load()
        # LibRaw writes the RAW's orientation into previews that carry no EXIF of their own.
        orientation = _exif_orientation(preview)
        orientation = orientation if orientation != 1 else flip_orientation
        rgb = _to_small_srgb(preview, long_edge, preview.info.get("icc_profile"))
    return _apply_orientation(rgb, orientation)
