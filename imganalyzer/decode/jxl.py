"""JPEG XL: the size and orientation from a file's header, and its pixels through imagecodecs.

A JPEG XL file is a bare codestream (``FF 0A``) or an ISO BMFF-style container (a ``JXL ``
signature box, then ``ftyp``, the codestream in one ``jxlc`` box or split over ``jxlp`` boxes,
and metadata boxes: ``Exif`` and ``xml `` may come before the codestream, possibly
Brotli-compressed in ``brob`` boxes). exiv2 reads the Exif and XMP boxes
(:mod:`imganalyzer.decode.exif_fields`); the size and orientation are read here from the
codestream's first bytes (ISO/IEC 18181-1: ``SizeHeader``, then ``ImageMetadata``).

The orientation is the codestream's: libjxl applies it when it decodes and ignores the one in
the Exif box, so it is the one that says how the image is displayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import imagecodecs
import numpy as np

CODESTREAM_SIGNATURE = b"\xff\x0a"
CONTAINER_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# Codestream bytes read for the header: SizeHeader and the start of ImageMetadata take at most
# 14 bytes after the signature.
HEADER_BYTES = 32
# SizeHeader's fixed aspect ratios (width / height), by their 3-bit code.
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
# U32 distributions of a dimension that is not a multiple of 8: Bits(n) + 1, by selector.
_DIMENSION_BITS = (9, 13, 18, 30)
_CODESTREAM_BOXES = (b"jxlc", b"jxlp")


@dataclass(frozen=True)
class JxlHeader:
    """The image as stored (``width`` x ``height``) and its orientation (1..8, as EXIF's)."""

    width: int
    height: int
    orientation: int

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(width, height) as displayed: swapped for orientations 5-8."""
        swap = self.orientation in (5, 6, 7, 8)
        return (self.height, self.width) if swap else (self.width, self.height)


def read_header(fh: BinaryIO) -> JxlHeader:
    """The header of the JPEG XL file open in ``fh`` (any position; it is read from the start).

    Raises EOFError where the file ends inside the header, ValueError where it is no JPEG XL
    file or its header is invalid.
    """
    fh.seek(0)
    head = fh.read(len(CONTAINER_SIGNATURE))
    if head.startswith(CODESTREAM_SIGNATURE):
        codestream = head + fh.read(HEADER_BYTES - len(head))
    elif head == CONTAINER_SIGNATURE:
        codestream = _codestream_start(fh)
    else:
        raise ValueError("not a JPEG XL file (no JPEG XL signature)")
    return parse_codestream_header(codestream)


def parse_codestream_header(codestream: bytes) -> JxlHeader:
    """Size and orientation from the first bytes of a codestream (signature included)."""
    if not codestream.startswith(CODESTREAM_SIGNATURE):
        raise ValueError("JPEG XL codestream without its signature")
    bits = _Bits(codestream[2:])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else _dimension(bits)
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = _RATIOS[ratio]
        width = height * numerator // denominator
    else:
        width = (bits.read(5) + 1) * 8 if small else _dimension(bits)
    orientation = 1
    all_default = bits.read(1)
    if not all_default and bits.read(1):  # extra_fields: the orientation is stored
        orientation = bits.read(3) + 1
    return JxlHeader(width, height, orientation)


def decode(data: bytes) -> np.ndarray:
    """The first frame of a JPEG XL file, oriented as displayed: ``(H, W)`` grey or
    ``(H, W, C)`` with C = 2 (grey + alpha), 3 (RGB) or 4 (RGBA); uint8, uint16 or float32
    (0..1), as libjxl hands it back. Raises ``imagecodecs.JpegxlError``."""
    # One thread: the decode job already decodes one image per thread.
    return imagecodecs.jpegxl_decode(data, index=0, numthreads=1)


def _dimension(bits: _Bits) -> int:
    return bits.read(_DIMENSION_BITS[bits.read(2)]) + 1


def _codestream_start(fh: BinaryIO) -> bytes:
    """The first ``HEADER_BYTES`` of the codestream in a container, read from just after its
    signature box."""
    start = fh.tell()
    end = fh.seek(0, 2)
    fh.seek(start)
    collected = b""
    while len(collected) < HEADER_BYTES and fh.tell() < end:
        box_type, payload_end = _box_header(fh, end)
        if payload_end > end and box_type not in _CODESTREAM_BOXES:
            raise EOFError(f"JPEG XL file ends inside its {box_type.decode('latin-1')!r} box")
        if box_type in _CODESTREAM_BOXES:  # a cut one still holds the header
            if box_type == b"jxlp":
                _read_exactly(fh, 4)  # the part's index
            collected += fh.read(min(HEADER_BYTES - len(collected), payload_end - fh.tell()))
        fh.seek(min(payload_end, end))
    if not collected:
        raise ValueError("JPEG XL container without a codestream box")
    return collected


def _box_header(fh: BinaryIO, end: int) -> tuple[bytes, int]:
    """A box's type and where it ends (past ``end`` where the file was cut)."""
    box_start = fh.tell()
    header = _read_exactly(fh, 8)
    size, box_type = int.from_bytes(header[:4], "big"), header[4:]
    if size == 1:  # a 64-bit size follows
        size = int.from_bytes(_read_exactly(fh, 8), "big")
    elif size == 0:  # the box runs to the end of the file
        size = end - box_start
    if size < fh.tell() - box_start:
        raise ValueError(f"JPEG XL box {box_type!r} with an invalid size {size}")
    return box_type, box_start + size


def _read_exactly(fh: BinaryIO, count: int) -> bytes:
    data = fh.read(count)
    if len(data) < count:
        raise EOFError("JPEG XL file ends inside a box header")
    return data


class _Bits:
    """A JPEG XL bit reader: bits are taken from each byte's least significant bit up."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "little")
        self.available = 8 * len(data)
        self.position = 0

    def read(self, count: int) -> int:
        if self.position + count > self.available:
            raise EOFError("JPEG XL file ends inside its header")
        value = (self.value >> self.position) & ((1 << count) - 1)
        self.position += count
        return value
