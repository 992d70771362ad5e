"""Small JPEG thumbnails for result listings: one zip file per shard.

Member ``f"{index}.jpg"`` holds the thumbnail of manifest row ``index``; failed images have
no member. Members are stored uncompressed (``ZIP_STORED``): JPEG does not deflate further,
and a stored member is read with one seek.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path
from types import TracebackType

import imagecodecs
import numpy as np

from imganalyzer.decode.tiers import resize_long_edge
from imganalyzer.files import atomic_open

# 256 px fills a listing cell of 128 CSS px on a 2x (HiDPI) screen and costs ~12 KiB at q80,
# i.e. ~35 MB for a shard of 3000 images; larger belongs to the tiers, not to listings.
THUMBNAIL_LONG_EDGE = 256
# q80 shows no visible artefacts at thumbnail size and is ~30% smaller than q90.
DEFAULT_QUALITY = 80


def _member_name(index: int) -> str:
    return f"{index}.jpg"


class ThumbnailWriter:
    """Writes one shard's thumbnail zip atomically (temporary file beside ``path``, renamed
    onto it only if the ``with`` body succeeds).

    Usage::

        with ThumbnailWriter(path) as thumbnails:
            thumbnails.add(index, rgb)   # for each image that decoded
    """

    def __init__(
        self,
        path: str | os.PathLike,
        long_edge: int = THUMBNAIL_LONG_EDGE,
        quality: int = DEFAULT_QUALITY,
    ) -> None:
        self.path = Path(path)
        self.long_edge = long_edge
        self.quality = quality
        self._exit_stack = contextlib.ExitStack()
        self._zip: zipfile.ZipFile | None = None
        self._indices: set[int] = set()

    def __enter__(self) -> ThumbnailWriter:
        with self._exit_stack as stack:
            handle = stack.enter_context(atomic_open(self.path, "wb"))
            self._zip = stack.enter_context(zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED))
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        # Closes the zip (writing its directory), then renames the file, or removes it on error.
        return bool(self._exit_stack.__exit__(exc_type, exc, traceback))

    def add(self, index: int, rgb: np.ndarray) -> None:
        """Downscale (H, W, 3) uint8 ``rgb`` to the thumbnail size, JPEG-encode it and store
        it as the thumbnail of manifest row ``index`` (each index at most once)."""
        small = resize_long_edge(rgb, self.long_edge)
        self.add_jpeg(
            index, imagecodecs.jpeg8_encode(np.ascontiguousarray(small), level=self.quality)
        )

    def add_jpeg(self, index: int, jpeg: bytes | bytearray) -> None:
        """Store already encoded thumbnail bytes (e.g. copied from another shard's zip)."""
        if self._zip is None:
            raise RuntimeError("ThumbnailWriter.add() outside its 'with' block")
        if index in self._indices:
            raise ValueError(f"thumbnail {index} was already added")
        self._zip.writestr(_member_name(index), jpeg)
        self._indices.add(index)


def read_thumbnail(path: str | os.PathLike, index: int) -> bytes | None:
    """JPEG bytes of manifest row ``index``'s thumbnail, or None if it has none (failed image)."""
    with zipfile.ZipFile(path) as archive:
        try:
            return archive.read(_member_name(index))
        except KeyError:
            return None
