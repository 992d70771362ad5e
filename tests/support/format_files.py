"""Write real files of the formats the example library has none of: JPEG XL (libjxl through
imagecodecs: a bare codestream, or a container with an ``Exif`` box before the codestream, as
photo tools write it) and HEIF in libheif's compact "mini" form (ISO/IEC 23008-12 amendment 2).

pillow-heif cannot write a mini file, but the libheif it bundles can: its C API is driven
here through ctypes (``heif_context_set_write_mini_format``, libheif >= 1.19), encoding with
the x265 encoder inside pillow-heif's wheel. :func:`mini_heif_writable` says whether this
libheif can.
"""

from __future__ import annotations

import ctypes
import glob
import io
import os
from functools import cache
from pathlib import Path

import imagecodecs
import numpy as np
import pillow_heif
from PIL import Image

from imganalyzer.example.writers import ExifInfo, exif_bytes

JXL_SIGNATURE_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_HEIF_COMPRESSION_HEVC = 1
_HEIF_COLORSPACE_RGB = 1
_HEIF_CHROMA_INTERLEAVED_RGB = 10
_HEIF_CHANNEL_INTERLEAVED = 10


def _box(box_type: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + box_type + payload


def _tiff(exif: ExifInfo) -> bytes:
    """The EXIF of ``exif`` as a TIFF block (without the ``Exif\\0\\0`` prefix)."""
    return exif_bytes(exif).removeprefix(b"Exif\x00\x00")


def write_jxl(
    path: str | os.PathLike, rgb: np.ndarray, exif: ExifInfo | None = None, container: bool = False
) -> Path:
    """A lossy JPEG XL of ``rgb`` ((H, W, 3) uint8). With ``exif`` (or ``container``) it is a
    container: signature, ``ftyp``, an ``Exif`` box (4-byte offset 0, then TIFF), then the
    codestream in a ``jxlc`` box."""
    codestream = bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(rgb), distance=1.0, effort=3))
    if exif is None and not container:
        data = codestream
    else:
        boxes = [JXL_SIGNATURE_BOX, _box(b"ftyp", b"jxl " + bytes(4) + b"jxl ")]
        if exif is not None:
            boxes.append(_box(b"Exif", bytes(4) + _tiff(exif)))
        data = b"".join([*boxes, _box(b"jxlc", codestream)])
    Path(path).write_bytes(data)
    return Path(path)


def write_jxl_from_jpeg(path: str | os.PathLike, rgb: np.ndarray, exif: ExifInfo) -> Path:
    """A JPEG XL that losslessly holds a JPEG of ``rgb`` with ``exif``: libjxl moves the EXIF
    orientation into the codestream and keeps the EXIF in a Brotli-compressed ``brob`` box."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(
        buffer, "JPEG", quality=90, exif=exif_bytes(exif)
    )
    Path(path).write_bytes(bytes(imagecodecs.jpegxl_encode_jpeg(buffer.getvalue())))
    return Path(path)


class _HeifError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


@cache
def _libheif() -> ctypes.CDLL | None:
    """pillow-heif's own libheif (the one that decodes here), where it can write mini files."""
    folder = os.path.dirname(pillow_heif.__file__) + ".libs"
    found = sorted(glob.glob(os.path.join(folder, "libheif*.so*")))
    if not found:
        return None
    lib = ctypes.CDLL(found[0])
    if not hasattr(lib, "heif_context_set_write_mini_format"):
        return None
    pointer, error = ctypes.c_void_p, _HeifError
    signatures = {
        "heif_context_alloc": (pointer, []),
        "heif_context_free": (None, [pointer]),
        "heif_context_get_encoder_for_format": (
            error,
            [pointer, ctypes.c_int, ctypes.POINTER(pointer)],
        ),
        "heif_encoder_set_lossy_quality": (error, [pointer, ctypes.c_int]),
        "heif_encoder_release": (None, [pointer]),
        "heif_image_create": (
            error,
            [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(pointer)],
        ),
        "heif_image_release": (None, [pointer]),
        "heif_image_add_plane": (
            error,
            [pointer, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int],
        ),
        "heif_image_get_plane": (
            ctypes.POINTER(ctypes.c_uint8),
            [pointer, ctypes.c_int, ctypes.POINTER(ctypes.c_int)],
        ),
        "heif_context_encode_image": (
            error,
            [pointer, pointer, pointer, pointer, ctypes.POINTER(pointer)],
        ),
        "heif_image_handle_release": (None, [pointer]),
        "heif_context_add_exif_metadata": (
            error,
            [pointer, pointer, ctypes.c_char_p, ctypes.c_int],
        ),
        "heif_context_set_write_mini_format": (None, [pointer, ctypes.c_int]),
        "heif_context_write_to_file": (error, [pointer, ctypes.c_char_p]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib


def mini_heif_writable() -> bool:
    """Whether pillow-heif's libheif here can write compact "mini" HEIF files."""
    return _libheif() is not None


def _checked(error: _HeifError) -> None:
    if error.code:
        raise RuntimeError(f"libheif: {error.message.decode('utf-8', 'replace')}")


def write_mini_heic(
    path: str | os.PathLike, rgb: np.ndarray, exif: ExifInfo | None = None, quality: int = 80
) -> Path:
    """A HEVC-coded HEIF of ``rgb`` ((H, W, 3) uint8) in the compact "mini" form: ftyp brand
    ``mif3`` (minor version ``heic``) and one ``mini`` box. Keep the sides multiples of 16 (this
    libheif writes other sizes padded). Raises RuntimeError where libheif cannot write it."""
    lib = _libheif()
    if lib is None:
        raise RuntimeError("this libheif cannot write mini HEIF files")
    height, width = rgb.shape[:2]
    context, encoder, image, handle = (
        lib.heif_context_alloc(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    )  # fmt: skip
    try:
        _checked(
            lib.heif_context_get_encoder_for_format(
                context, _HEIF_COMPRESSION_HEVC, ctypes.byref(encoder)
            )
        )
        _checked(lib.heif_encoder_set_lossy_quality(encoder, quality))
        _checked(
            lib.heif_image_create(
                width, height, _HEIF_COLORSPACE_RGB, _HEIF_CHROMA_INTERLEAVED_RGB,
                ctypes.byref(image),
            )
        )  # fmt: skip
        _checked(lib.heif_image_add_plane(image, _HEIF_CHANNEL_INTERLEAVED, width, height, 8))
        stride = ctypes.c_int()
        plane = lib.heif_image_get_plane(image, _HEIF_CHANNEL_INTERLEAVED, ctypes.byref(stride))
        rows = np.ctypeslib.as_array(plane, (height * stride.value,)).reshape(height, -1)
        rows[:, : width * 3] = np.ascontiguousarray(rgb).reshape(height, width * 3)
        _checked(lib.heif_context_encode_image(context, image, encoder, None, ctypes.byref(handle)))
        if exif is not None:
            block = _tiff(exif)
            _checked(lib.heif_context_add_exif_metadata(context, handle, block, len(block)))
        lib.heif_context_set_write_mini_format(context, 1)
        _checked(lib.heif_context_write_to_file(context, os.fsencode(path)))
    finally:
        for release, resource in (
            (lib.heif_image_handle_release, handle),
            (lib.heif_image_release, image),
            (lib.heif_encoder_release, encoder),
        ):
            if resource:
                release(resource)
        lib.heif_context_free(context)
    return Path(path)
