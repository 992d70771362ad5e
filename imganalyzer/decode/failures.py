"""Why a file cannot be read: one answer per file, whichever module asks.

The decode job, the metadata job and OCR each read the original file; the modules that work
from the decode job's rows (duplicates, the model jobs) pass its answer on. So that one bad
file gets one ``error_kind`` everywhere, every reader turns what went wrong into its reason
and kind through :func:`classify`, and they open the file the same way (one header opener
per format, :func:`imganalyzer.decode.readers.open_pillow`; libheif, LibRaw and the JPEG XL
header for their formats): the same damage raises the same exception in each of them.

The kind comes from the file first, then from what the reader met:

* ``vanished``, ``unreadable``, ``empty``: the file itself (:func:`check_file`);
* ``unsupported_format``: content that is no image format we know ("not an image"), or a
  format no installed decoder reads;
* ``truncated``: the reader ran out of bytes; ``corrupt``: any other damage;
* ``too_large``, ``no_image_data``, ``unsupported_codec``: a reader's own verdict, raised as a
  :class:`FileError` with that kind and passed on unchanged.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

import rawpy
from PIL import Image, UnidentifiedImageError

from imganalyzer import formats

# What the readers raise on data they cannot parse.
_PARSE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# The first box of ISO BMFF files: ftyp (HEIF, AVIF, CR3) or the JPEG XL signature box.
_FIRST_BOXES = (b"ftyp", b"JXL ")
# Words in a reader's message that say the data ended before the reader was done.
_ENDS_EARLY = ("truncated", "end of file", "ends early", "need_more_input", "premature end") + (
    "failed to read",  # tifffile: "failed to read 30720 bytes, got 15224"
)


class FileError(Exception):
    """A one-line, human-readable reason why a file cannot be read, and its ``kind`` (one of
    :data:`imganalyzer.results.ERROR_KINDS`)."""

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind


def check_file(path: str | os.PathLike) -> None:
    """Raise :class:`FileError` unless ``path`` is a non-empty regular file."""
    try:
        status = os.stat(path)
    except OSError as error:
        raise FileError(*classify(error, path)) from None
    if stat.S_ISDIR(status.st_mode):
        raise FileError("is a directory, not an image file", "unreadable")
    if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block or never end
        raise FileError("not a regular file", "unreadable")
    if status.st_size == 0:
        raise FileError("empty file (0 bytes)", "empty")


def classify(error: BaseException, path: str | os.PathLike) -> tuple[str, str]:
    """The one-line reason and ``error_kind`` for ``error``, raised while reading ``path``."""
    if isinstance(error, FileError):
        return str(error), error.kind
    if isinstance(error, FileNotFoundError):
        return "file not found (deleted after it was catalogued)", "vanished"
    if isinstance(error, PermissionError):
        return "permission denied", "unreadable"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not an image file", "unreadable"
    message = _one_line(error)
    if isinstance(error, OSError) and error.errno not in (None, errno.EINVAL):
        # The system could not read the file (EIO, ...); a decoder's OSError has no errno, and
        # EINVAL comes from seeking to an offset that damaged data gave.
        return f"cannot read file: {error.strerror or message}", "unreadable"
    if isinstance(error, rawpy.LibRawError):
        return _libraw(error, message)
    fmt = _sniffed(path)
    if fmt is None:
        return f"cannot read file: {message}", "unreadable"
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large: {message}", "too_large"
    if _is_heif_codec_error(error, message):
        return f"HEIF image in a codec this libheif build cannot decode ({message})", (
            "unsupported_codec"
        )
    if isinstance(error, UnidentifiedImageError):  # no reader claims the content
        head = _head(path)[:8]
        return f"not an image: its content is no format imganalyzer reads (starts with {head!r})", (
            "unsupported_format"
        )
    name = "image" if fmt == "unknown" else f"{fmt.upper()} file"
    if (
        isinstance(error, EOFError)
        or any(word in message.lower() for word in _ENDS_EARLY)
        or _boxes_end_early(path)
    ):
        return f"truncated {name} (it ends early): {message}", "truncated"
    if not isinstance(error, _PARSE_ERRORS):  # a decoder's own exception: its name helps
        message = f"{type(error).__name__}: {message}"
    return f"corrupt {name}: {message}", "corrupt"


def _libraw(error: Exception, message: str) -> tuple[str, str]:
    if isinstance(error, rawpy.LibRawFileUnsupportedError):
        return f"RAW format LibRaw cannot read: {message}", "unsupported_format"
    if isinstance(error, rawpy.LibRawIOError):  # LibRaw reads past the end of the file
        return "truncated RAW file (its data ends early)", "truncated"
    if isinstance(error, rawpy.LibRawRequestForNonexistentImageError):
        return "RAW file without image data", "no_image_data"
    if isinstance(error, rawpy.LibRawTooBigError):
        return f"RAW image too large: {message}", "too_large"
    return f"corrupt RAW file: {message}", "corrupt"


def _is_heif_codec_error(error: BaseException, message: str) -> bool:
    lowered = message.lower()
    return "invalid image index" in lowered or (
        isinstance(error, RuntimeError | ValueError | OSError)
        and ("no decoding plugin" in lowered or "unsupported codec" in lowered)
    )


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split())
    if message.startswith(("b'", 'b"')):  # rawpy puts LibRaw's bytes message through repr()
        message = message[2:-1]
    return message or type(error).__name__


def _boxes_end_early(path: str | os.PathLike) -> bool:
    """Whether a file of ISO BMFF boxes (HEIF, AVIF, CR3, a JPEG XL container) declares a box
    that runs past its end: the file was cut, whatever a reader made of the rest."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        if handle.read(8)[4:8] not in _FIRST_BOXES:
            return False
        position = 0
        while position + 8 <= end:
            handle.seek(position)
            header = handle.read(16)
            size = int.from_bytes(header[:4], "big")
            if size == 1 and len(header) == 16:  # a 64-bit size follows
                size = int.from_bytes(header[8:16], "big")
            if size == 0:  # the last box, to the end of the file
                return False
            if size < 8:
                return False  # not a box structure this check can follow
            position += size
        return position > end


def _head(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(32)


def _sniffed(path: str | os.PathLike) -> str | None:
    """The format of the file's content; None where it cannot be read at all."""
    try:
        return formats.sniff(_head(path))
    except OSError:
        return None
