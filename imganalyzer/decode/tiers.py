"""Downscaled image *tiers* of one shard, stored in one Zarr v3 store for batched GPU reads.

A shard's images are decoded once; each decoded RGB array is downscaled to a few long-edge
sizes (tiers, e.g. ``{"detect": 1024, "clip": 384}``) and written here, so that every GPU
module reads a batch of images with one slice instead of decoding originals again.

Store layout (one directory per shard, a Zarr v3 group)::

    <store>/
      zarr.json                 group attributes:
                                  format_version  TIER_FORMAT_VERSION
                                  tiers           {name: long edge S}
                                  n_images, block, compression ("jpeg" | "zstd"), quality
      ok                        (n,) bool: False for images that failed to decode
      <tier>/images             (n, S, S, 3) uint8, RGB, image at the top-left, zero padding
                                at bottom/right; chunks (1, S, S, 3), shards (block, S, S, 3)
      <tier>/sizes              (n, 2) int32: true (height, width) of each image in the tier

Rows follow the shard manifest's row order. A failed image has ``ok=False``, size (0, 0) and
all-zero pixels (zarr stores no chunk for it). With ``compression="jpeg"`` each chunk (one
padded image) is a JPEG, via a numcodecs codec wrapped for zarr 3 (see ``_ImagecodecsJpeg``);
importing this module registers it, which is all a reader in another process needs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import imagecodecs.numcodecs
import numpy as np
import zarr
import zarr.codecs
import zarr.storage
from PIL import Image
from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec
from zarr.errors import ZarrUserWarning
from zarr.registry import register_codec

from imganalyzer.files import atomic_directory
from imganalyzer.versions import TIER_FORMAT_VERSION

Compression = Literal["jpeg", "zstd"]

# Images per Zarr shard: a GPU batch (32) or two per file read, and a writer buffer of
# 64 x 3 MiB = 192 MiB for a 1024 px tier, which a decode job can afford.
DEFAULT_BLOCK = 64
# JPEG q90: 140-220 KiB per 1024 px photo, mean error 2-3.5 levels (tiers only feed networks).
DEFAULT_JPEG_QUALITY = 90
# Lossless alternative. Plain Zstd level 3, measured on a 1024 px photo chunk: 1.7 MiB, 10 ms
# encode, 1.4 ms decode; Blosc/Zstd was 3x slower to encode and larger (byte shuffle is
# useless for uint8 samples), level 1 is 2.5x faster but 25% larger.
_ZSTD_CODEC = zarr.codecs.ZstdCodec(level=3)

# For downscales of 6x or more (e.g. a RAW decoded at full size), Pillow first `reduce`s by an
# integer factor, then applies LANCZOS: measured 8000 -> 1024 px 2.2x faster than LANCZOS alone,
# 0.2 levels mean difference. Smaller ratios (the usual DCT-scaled decode) are pure LANCZOS.
_REDUCING_GAP = 3.0

_OK_ARRAY = "ok"


# --- JPEG codec for zarr 3 -------------------------------------------------------------------
# zarr 3.1.6 has no public way to use a numcodecs codec that zarr itself does not ship, and
# imagecodecs registers its codecs for zarr 2 only. The private `_NumcodecsArrayBytesCodec` does
# the zarr 3 plumbing (config <-> JSON, running encode/decode in threads, reshaping the decoded
# chunk back to the chunk shape). This is the only place that depends on it; pyproject pins
# zarr and test_private_zarr_numcodecs_api_is_as_expected (tests/unit/decode/test_tiers.py)
# guards it.
#
# Shapes: a chunk reaches `encode` as (1, S, S, 3); imagecodecs' Jpeg squeezes it to the
# (S, S, 3) image. `decode` returns (S, S, 3) and the base class reshapes it to (1, S, S, 3).
class _ImagecodecsJpeg(_NumcodecsArrayBytesCodec, codec_name="imagecodecs_jpeg"):
    """JPEG (libjpeg-turbo via imagecodecs) as a zarr 3 array->bytes codec; config ``level``."""

    def __init__(self, **codec_config: Any) -> None:
        # zarr warns on every construction (i.e. every array open) that numcodecs codecs are
        # not in the v3 spec; we know, and the store is only ever read by this module.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZarrUserWarning)
            super().__init__(**codec_config)

    @cached_property
    def _codec(self) -> imagecodecs.numcodecs.Jpeg:
        # Built directly instead of via the numcodecs registry, which knows no imagecodecs codec
        # unless imagecodecs.numcodecs.register_codecs() mutated it first.
        config: dict[str, Any] = {
            key: value for key, value in self.codec_config.items() if key != "id"
        }
        return imagecodecs.numcodecs.Jpeg(**config)


# "numcodecs.imagecodecs_jpeg" in store metadata. zarr declares codec_name per instance but
# sets it on the class (in __init_subclass__), which is where it is read here.
JPEG_CODEC_NAME: str = _ImagecodecsJpeg.codec_name  # type: ignore[misc]
# Registering twice overwrites the same key with the same class: importing is idempotent.
register_codec(JPEG_CODEC_NAME, _ImagecodecsJpeg)


# --- Resizing ----------------------------------------------------------------------------------
def resize_long_edge(rgb: np.ndarray, long_edge: int) -> np.ndarray:
    """Downscale (H, W, 3) uint8 so that its long edge is ``long_edge``; never upscales.

    Returns (h, w, 3) uint8 with ``max(h, w) == long_edge`` and the aspect ratio kept (short
    edge rounded, at least 1), or ``rgb`` itself if ``max(H, W) <= long_edge``.
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    if max(height, width) <= long_edge:
        return rgb
    scale = long_edge / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (w, h)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    resized = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return np.asarray(resized)


def make_tiers(rgb: np.ndarray, tiers: dict[str, int]) -> dict[str, np.ndarray]:
    """One downscaled copy of (H, W, 3) uint8 ``rgb`` per tier name -> (h, w, 3) uint8.

    Each tier is resized from the next larger one, so the small tiers cost little. Tiers at
    least as large as the image share the input array (treat the results as read-only).
    """
    result: dict[str, np.ndarray] = {}
    source = rgb
    for name, long_edge in sorted(tiers.items(), key=lambda item: -item[1]):
        source = resize_long_edge(source, long_edge)
        result[name] = source
    return result


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")


# --- Writing -----------------------------------------------------------------------------------
def _image_codecs(compression: Compression, quality: int) -> dict[str, Any]:
    """``create_array`` keyword arguments that select the pixel codec."""
    if compression == "jpeg":
        # zarr 3 otherwise appends its default Zstd compressor after the serializer: wasted
        # CPU on JPEG bytes.
        return {"serializer": _ImagecodecsJpeg(level=quality), "compressors": None}
    if compression == "zstd":
        return {"compressors": _ZSTD_CODEC}
    raise ValueError(f"unknown tier compression {compression!r}; expected 'jpeg' or 'zstd'")


class _TierBuffer:
    """One tier's block of rows in memory, written to its Zarr array in one assignment."""

    def __init__(
        self,
        group: zarr.Group,
        name: str,
        long_edge: int,
        n: int,
        block: int,
        codecs: dict[str, Any],
    ) -> None:
        side = long_edge
        self.long_edge = long_edge
        self.images = group.create_array(
            f"{name}/images",
            shape=(n, side, side, 3),
            chunks=(1, side, side, 3),
            shards=(block, side, side, 3),
            dtype="uint8",
            fill_value=0,
            # By default zarr compares every chunk with the fill value to skip empty ones; that
            # check costs more than the JPEG encode (~5 ms per 1024 px chunk in zarr 3.1.6).
            # Only failed images are empty, and they cost ~17 KiB as JPEG.
            config={"write_empty_chunks": True},
            **codecs,
        )
        self.sizes = np.zeros((n, 2), dtype=np.int32)
        self.block = np.zeros((min(block, max(n, 1)), side, side, 3), dtype=np.uint8)
        self.block_start = 0

    def put(self, index: int, rgb: np.ndarray | None) -> None:
        row = index - self.block_start
        self.block[row] = 0
        if rgb is None:
            return
        height, width = rgb.shape[:2]
        self.block[row, :height, :width] = rgb
        self.sizes[index] = (height, width)

    def flush(self, stop: int) -> None:
        """Write rows ``block_start:stop`` (a whole Zarr shard, or the last one) at once."""
        if stop > self.block_start:
            self.images[self.block_start : stop] = self.block[: stop - self.block_start]
        self.block_start = stop


class TierWriter:
    """Writes one shard's tier store atomically; see the module docstring for the layout.

    Usage::

        with TierWriter(path, n_images=len(manifest), tiers={"detect": 1024, "clip": 384}) as w:
            for i, rgb in enumerate(decoded):          # rgb: (H, W, 3) uint8 or None
                w.write(i, make_tiers(rgb, w.tiers) if rgb is not None else None)

    The store is built in a temporary directory beside ``path`` and renamed onto ``path``
    only if the ``with`` body succeeds and all ``n_images`` rows were written. At most
    ``block`` images per tier are held in memory; each full block is one Zarr shard, written
    once, in one assignment (zarr rewrites a whole shard on any partial write).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_images: int,
        tiers: dict[str, int],
        block: int = DEFAULT_BLOCK,
        compression: Compression = "jpeg",
        quality: int = DEFAULT_JPEG_QUALITY,
    ) -> None:
        if n_images < 0 or block < 1 or not tiers or min(tiers.values()) < 1:
            raise ValueError(f"invalid tier store: {n_images=}, {block=}, {tiers=}")
        _image_codecs(compression, quality)  # fail on a bad option before any file exists
        self.path = Path(path)
        self.n_images = n_images
        self.tiers = dict(tiers)
        self.block = block
        self.compression = compression
        self.quality = quality
        self._next_index = 0
        self._exit_stack = contextlib.ExitStack()

    def __enter__(self) -> TierWriter:
        with self._exit_stack as stack:
            directory = stack.enter_context(atomic_directory(self.path))
            self._open(directory)
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None:
            try:
                self._finish()
            except BaseException as error:
                self._exit_stack.__exit__(type(error), error, error.__traceback__)
                raise
        # With an exception this removes the temporary directory, else renames it onto path.
        return bool(self._exit_stack.__exit__(exc_type, exc, traceback))

    def _open(self, directory: Path) -> None:
        self._group = zarr.open_group(zarr.storage.LocalStore(directory), mode="w")
        self._group.attrs.update(
            {
                "format_version": TIER_FORMAT_VERSION,
                "tiers": self.tiers,
                "n_images": self.n_images,
                "block": self.block,
                "compression": self.compression,
                "quality": self.quality,
            }
        )
        codecs = _image_codecs(self.compression, self.quality)
        self._buffers = {
            name: _TierBuffer(self._group, name, side, self.n_images, self.block, codecs)
            for name, side in self.tiers.items()
        }
        self._ok = np.zeros(self.n_images, dtype=bool)

    def write(self, index: int, tiers: dict[str, np.ndarray] | None) -> None:
        """Add image ``index`` (must be the next one, 0..n-1): {tier name: (h, w, 3) uint8}
        with ``max(h, w) <=`` the tier's long edge, or None for an image that failed."""
        if index != self._next_index or index >= self.n_images:
            raise ValueError(f"expected image {self._next_index} of {self.n_images}, got {index}")
        if tiers is not None:
            self._check_tiers(tiers)
        for name, buffer in self._buffers.items():
            buffer.put(index, None if tiers is None else tiers[name])
        self._ok[index] = tiers is not None
        self._next_index += 1
        if self._next_index % self.block == 0 or self._next_index == self.n_images:
            for buffer in self._buffers.values():
                buffer.flush(self._next_index)

    def _check_tiers(self, tiers: dict[str, np.ndarray]) -> None:
        if tiers.keys() != self.tiers.keys():
            raise ValueError(f"expected tiers {sorted(self.tiers)}, got {sorted(tiers)}")
        for name, rgb in tiers.items():
            _check_rgb(rgb)
            if max(rgb.shape[:2]) > self.tiers[name]:
                raise ValueError(f"tier {name!r} image {rgb.shape} exceeds {self.tiers[name]} px")

    def _finish(self) -> None:
        if self._next_index != self.n_images:
            raise ValueError(f"only {self._next_index} of {self.n_images} images were written")
        chunk_rows = max(self.n_images, 1)  # zarr needs chunks >= 1 even for an empty shard
        for name, buffer in self._buffers.items():
            sizes = self._group.create_array(
                f"{name}/sizes", shape=(self.n_images, 2), chunks=(chunk_rows, 2), dtype="int32"
            )
            sizes[:] = buffer.sizes
        ok = self._group.create_array(
            _OK_ARRAY, shape=(self.n_images,), chunks=(chunk_rows,), dtype="bool"
        )
        ok[:] = self._ok


# --- Reading -----------------------------------------------------------------------------------
# zarr's marker of a chunk that was never written, in a shard's index.
_NO_CHUNK = 2**64 - 1
# A shard index entry: the chunk's offset and length in the shard file (little-endian uint64).
_INDEX_ENTRY = 16
_CRC32C = 4


class _JpegShards:
    """A JPEG tier's images read straight from its Zarr shard files: the shard's index (at
    the end of the file, protected by a CRC32C), then the requested chunks' bytes in one
    read, decoded by the same libjpeg-turbo codec zarr would call. zarr itself spends more
    time per chunk than the decode (~2.3 ms per 384 px image, measured) in its per-chunk
    machinery, which holds the interpreter lock that the other loader threads need.

    Only for the layout ``TierWriter`` writes (``of`` checks it; other stores read through
    zarr): one JPEG chunk per image, ``block`` images per shard, index at the end."""

    def __init__(self, folder: Path, array: zarr.Array) -> None:
        self.folder, self.array = folder, array
        self.block = int(array.shards[0]) if array.shards else 1
        self.shape = tuple(int(v) for v in array.shape[1:])

    @classmethod
    def of(cls, folder: Path, array: zarr.Array) -> _JpegShards | None:
        """The reader of ``array`` (in ``folder``), or None if it is not laid out as
        ``TierWriter`` writes a JPEG tier."""
        from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
        from zarr.codecs.sharding import ShardingCodecIndexLocation

        codecs: tuple[Any, ...] = tuple(getattr(array.metadata, "codecs", ()))
        sharding = codecs[0] if len(codecs) == 1 else None
        if not isinstance(sharding, ShardingCodec):
            return None
        index = [type(codec) for codec in sharding.index_codecs]
        if (
            len(sharding.codecs) != 1
            or not isinstance(sharding.codecs[0], _ImagecodecsJpeg)
            or tuple(sharding.chunk_shape) != (1, *array.shape[1:])
            or index != [BytesCodec, Crc32cCodec]
            or sharding.index_location != ShardingCodecIndexLocation.end
        ):
            return None
        return cls(folder, array)

    def encoded(self, start: int, stop: int) -> list[bytes | None]:
        """The JPEG bytes of images ``start:stop`` (None: an image never written)."""
        found: list[bytes | None] = []
        for shard in range(
            start // self.block, (stop - 1) // self.block + 1 if stop > start else 0
        ):
            first = max(start, shard * self.block) - shard * self.block
            last = min(stop, (shard + 1) * self.block) - shard * self.block
            found += self._shard_chunks(shard, first, last)
        return found

    def _shard_chunks(self, shard: int, first: int, last: int) -> list[bytes | None]:
        key = self.array.metadata.encode_chunk_key((shard, 0, 0, 0))
        path = self.folder / key
        if not path.exists():  # no chunk of the shard was ever written
            return [None] * (last - first)
        with open(path, "rb") as handle:
            index_bytes = _INDEX_ENTRY * self.block + _CRC32C
            handle.seek(-index_bytes, os.SEEK_END)
            raw_index = handle.read(index_bytes)
            _check_crc32c(raw_index, path)
            index = np.frombuffer(raw_index[:-_CRC32C], dtype="<u8").reshape(self.block, 2)
            wanted = index[first:last]
            written = wanted[:, 0] != _NO_CHUNK
            if not written.any():
                return [None] * (last - first)
            begin = int(wanted[written, 0].min())
            end = int((wanted[written, 0] + wanted[written, 1]).max())
            handle.seek(begin)
            data = handle.read(end - begin)
        return [
            data[int(offset) - begin : int(offset + length) - begin] if ok else None
            for (offset, length), ok in zip(wanted, written, strict=True)
        ]

    def decode(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop``: (n, S, S, 3) uint8, zeros where none was written."""
        images = np.zeros((max(0, stop - start), *self.shape), dtype=np.uint8)
        for slot, data in zip(images, self.encoded(start, stop), strict=True):
            if data is not None:
                imagecodecs.jpeg_decode(data, out=slot)
        return images


def _check_crc32c(raw_index: bytes, path: Path) -> None:
    import google_crc32c

    expected = int.from_bytes(raw_index[-_CRC32C:], "little")
    if google_crc32c.value(raw_index[:-_CRC32C]) != expected:
        raise ValueError(f"{path}: the shard index fails its checksum (a damaged tier store)")


class TierReader:
    """Reads a tier store written by ``TierWriter``.

    ``tiers`` maps tier name -> long edge S; ``n_images`` is the number of rows.
    ``shard_files=False`` reads JPEG tiers through zarr too (the GPU kit's baseline).
    """

    def __init__(self, path: str | os.PathLike, shard_files: bool = True) -> None:
        self.path = Path(path)
        self._group = zarr.open_group(zarr.storage.LocalStore(self.path, read_only=True), mode="r")
        attrs: dict[str, Any] = self._group.attrs.asdict()
        if attrs.get("format_version") != TIER_FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: tier format {attrs.get('format_version')!r}, "
                f"expected {TIER_FORMAT_VERSION!r}"
            )
        self.tiers: dict[str, int] = {name: int(side) for name, side in attrs["tiers"].items()}
        self.n_images: int = int(attrs["n_images"])
        self.compression: str = attrs["compression"]
        self._ok = np.asarray(self._array(_OK_ARRAY)[:], dtype=bool)
        self._sizes = {name: np.asarray(self._array(f"{name}/sizes")[:]) for name in self.tiers}
        self._images = {name: self._array(f"{name}/images") for name in self.tiers}
        self._jpeg = {
            name: shards
            for name, array in self._images.items()
            if shard_files
            and (shards := _JpegShards.of(self.path / name / "images", array)) is not None
        }

    def _array(self, name: str) -> zarr.Array:
        found = self._group[name]
        if not isinstance(found, zarr.Array):
            raise ValueError(f"{self.path}: {name} is not an array")
        return found

    def read(self, tier: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of ``tier`` in one slice.

        Returns images (n, S, S, 3) uint8 zero-padded at bottom/right, sizes (n, 2) int32 true
        (height, width) within the tier, and ok (n,) bool.
        """
        start, stop, _ = slice(start, stop).indices(self.n_images)
        jpeg = self._jpeg.get(tier)
        if jpeg is not None:
            images = jpeg.decode(start, stop)
        else:
            images = np.asarray(self._tier_images(tier)[start:stop])
        return images, self._sizes[tier][start:stop].copy(), self._ok[start:stop].copy()

    def encoded(self, tier: str) -> bool:
        """Whether ``read_encoded`` can read ``tier`` (a JPEG tier as TierWriter writes it)."""
        return tier in self._jpeg

    def read_encoded(
        self, tier: str, start: int, stop: int
    ) -> tuple[list[bytes | None], np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of a JPEG ``tier`` undecoded: each image's JPEG bytes (of the
        padded (S, S, 3) image; None where no image was written), sizes and ok as ``read``."""
        if tier not in self._jpeg:
            raise ValueError(f"{self.path}: tier {tier!r} is not stored as JPEG chunks")
        start, stop, _ = slice(start, stop).indices(self.n_images)
        chunks = self._jpeg[tier].encoded(start, stop)
        return chunks, self._sizes[tier][start:stop].copy(), self._ok[start:stop].copy()

    def image(self, tier: str, index: int) -> np.ndarray:
        """Image ``index`` of ``tier`` cropped to its true size: (h, w, 3) uint8."""
        if not 0 <= index < self.n_images:
            raise IndexError(f"image {index} out of range for {self.n_images} images")
        height, width = self._sizes[tier][index]
        return np.asarray(self._tier_images(tier)[index, :height, :width])

    def _tier_images(self, tier: str) -> zarr.Array:
        if tier not in self._images:
            raise KeyError(f"no tier {tier!r} in {self.path}; tiers: {sorted(self.tiers)}")
        return self._images[tier]
