"""What flows into a model: batches of a shard's rows (``RowBatch``), their sources (a tier
store's rows, stored vectors, several shards as one stream), the inputs a model's
``preprocess`` makes of them (``PaddedImages``, ``HostItems``), and ``RowFailure``, a result
that makes a row an error row. ``BatchedModel`` (runtime.batched) runs over them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

if TYPE_CHECKING:  # torch is imported where it runs: a host model's job never loads it
    import torch


@dataclass
class RowBatch:
    """Usable rows of a shard as a source hands them to ``preprocess``.

    ``indices``: (n,) int64 row numbers in manifest order. ``data``: for tier sources
    (n, S, S, 3) uint8 RGB, image top-left, zero padding bottom/right; for vector sources
    (n, d). ``sizes``: for tier sources (n, 2) int32 true (height, width) in tier pixels.
    """

    indices: np.ndarray
    data: np.ndarray
    sizes: np.ndarray | None = None

    @property
    def image_sizes(self) -> np.ndarray:
        """``sizes`` of a batch of tier images; ValueError for a batch of vectors."""
        if self.sizes is None:
            raise ValueError("a batch of vectors has no image sizes")
        return self.sizes


@dataclass
class PaddedImages:
    """Tier images on their way to the device, for models that resize there: ``pixels``
    (n, 3, S, S) uint8 RGB, image at the top-left, zero padding; ``sizes`` (n, 2) int64 true
    (height, width). The loader only converts (no resampling on its CPU), and uint8 moves a
    third of the bytes a float32 batch at the model's size would. Behaves like a tensor
    where the runtime handles inputs: pinned, sliced by rows, moved to a device."""

    pixels: torch.Tensor
    sizes: torch.Tensor

    @classmethod
    def from_rows(cls, batch: RowBatch) -> PaddedImages:
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch.data)).permute(0, 3, 1, 2)
        sizes = torch.from_numpy(np.asarray(batch.sizes, dtype=np.int64))
        return cls(pixels.contiguous(), sizes)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, rows: slice) -> PaddedImages:
        return PaddedImages(self.pixels[rows], self.sizes[rows])

    def pin_memory(self) -> PaddedImages:
        return PaddedImages(self.pixels.pin_memory(), self.sizes)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PaddedImages:
        """The pixels on ``device``; the sizes stay on the host (read there, never waited for)."""
        return PaddedImages(self.pixels.to(device, non_blocking=non_blocking), self.sizes)

    def is_floating_point(self) -> bool:
        return False

    def true_regions(self) -> list[torch.Tensor]:
        """Each image's (3, h, w) uint8 region, on the pixels' device."""
        return [
            image[:, :height, :width]
            for image, (height, width) in zip(self.pixels, self.sizes.tolist(), strict=True)
        ]


class EncodedImages:
    """Tier images still JPEG-encoded on their way to the device, for models that decode
    them there (``decode``: nvJPEG on CUDA): ``chunks`` one uint8 tensor of JPEG bytes per
    image (of the padded (S, S, 3) image), ``sizes`` (n, 2) int64 true (height, width). The
    loader only reads bytes; ``to`` keeps them on the host and notes the device."""

    def __init__(self, chunks: list[torch.Tensor], sizes: torch.Tensor, device: Any = None):
        self.chunks, self.sizes, self.device = chunks, sizes, device

    @classmethod
    def from_rows(cls, batch: RowBatch) -> EncodedImages:
        import torch

        chunks = [
            torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()) for data in batch.data
        ]
        return cls(chunks, torch.from_numpy(np.asarray(batch.sizes, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, rows: slice) -> EncodedImages:
        return EncodedImages(self.chunks[rows], self.sizes[rows], self.device)

    def pin_memory(self) -> EncodedImages:
        return self

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EncodedImages:
        return EncodedImages(self.chunks, self.sizes, device)

    def is_floating_point(self) -> bool:
        return False

    def decode(self) -> PaddedImages:
        """The images decoded on the noted device (torchvision's ``decode_jpeg``: nvJPEG on
        CUDA, libjpeg-turbo on the CPU), as ``PaddedImages``."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        device = self.device or "cpu"
        pixels = decode_jpeg(self.chunks, mode=ImageReadMode.RGB, device=device)
        return PaddedImages(torch.stack(pixels), self.sizes)


class HostItems:
    """Per-image inputs that stay on the host (decoded images, JPEG bytes) for models that
    do not run in torch (onnxruntime, a remote API): the runtime slices them by rows and
    never moves them to a device."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, rows: slice) -> HostItems:
        return HostItems(self.items[rows])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def pin_memory(self) -> HostItems:
        return self

    def to(self, device: torch.device | str, non_blocking: bool = False) -> HostItems:
        return self

    def is_floating_point(self) -> bool:
        return False


if TYPE_CHECKING:
    # What ``preprocess`` makes: the runtime slices it by rows, pins it and moves it.
    ModelInputs: TypeAlias = torch.Tensor | PaddedImages | EncodedImages | HostItems


@dataclass(frozen=True)
class RowFailure:
    """A result (or decision) that makes an image's row an error row with ``reason`` and,
    where known, its ``error_kind``."""

    reason: str
    kind: str | None = None

    @classmethod
    def passed_on(cls, row: dict[str, Any], default: str, prefix: str = "") -> RowFailure:
        """The failure an upstream error row (the decode job's, objects') passes on: its reason
        (after ``prefix``; ``default`` where it has none) and its kind, so that one bad file
        has one ``error_kind`` in every module."""
        return cls(prefix + str(row.get("error", default)), row.get("error_kind"))


class BatchSource(Protocol):
    n_rows: int

    def read(self, start: int, stop: int) -> RowBatch:
        """The usable rows among ``start:stop``."""
        ...


class TierBatches:
    """Rows of one tier of a shard's tier store (a ``TierReader``); failed decodes skipped.

    ``rows``: only these manifest rows (ascending), as rows ``0..len(rows)`` of this source;
    None: every row."""

    def __init__(self, reader: Any, tier: str, rows: np.ndarray | None = None) -> None:
        self.reader, self.tier = reader, tier
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.n_rows = reader.n_images if self.rows is None else len(self.rows)

    def read(self, start: int, stop: int) -> RowBatch:
        if self.rows is None:
            images, sizes, ok = self._read_slice(start, stop)
        else:
            images, sizes, ok = self._read_rows(self.rows[start:stop])
        keep = np.flatnonzero(ok)
        return RowBatch(start + keep, images[keep], sizes[keep])

    def _read_slice(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.reader.read(self.tier, start, stop)

    def manifest_rows(self, indices: np.ndarray) -> np.ndarray:
        """The manifest rows of this source's rows ``indices``."""
        return indices if self.rows is None else self.rows[indices]

    def _read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tier images of ``rows``: one slice when they lie close together (a chunk is
        decoded once), else one slice per run of consecutive rows (few rows of many)."""
        if not len(rows):
            return self._read_slice(0, 0)
        first, last = int(rows[0]), int(rows[-1]) + 1
        if last - first <= 2 * len(rows):
            images, sizes, ok = self._read_slice(first, last)
            return images[rows - first], sizes[rows - first], ok[rows - first]
        runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
        parts = [self._read_slice(int(run[0]), int(run[-1]) + 1) for run in runs]
        images, sizes, ok = (np.concatenate([part[i] for part in parts]) for i in range(3))
        return images, sizes, ok


class EncodedTierBatches(TierBatches):
    """``TierBatches`` of a JPEG tier whose ``RowBatch.data`` is each image's JPEG bytes, an
    (n,) object array (``TierReader.read_encoded``), for a model that decodes on its device."""

    def _read_slice(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunks, sizes, ok = self.reader.read_encoded(self.tier, start, stop)
        data = np.empty(len(chunks), dtype=object)
        data[:] = chunks
        return data, sizes, ok


class ArrayBatches:
    """Rows of an in-memory (n, d) array; rows where ``usable`` is False are skipped."""

    def __init__(self, data: np.ndarray, usable: np.ndarray) -> None:
        self.data, self.usable, self.n_rows = data, usable, len(data)

    def read(self, start: int, stop: int) -> RowBatch:
        keep = np.flatnonzero(self.usable[start:stop])
        return RowBatch(start + keep, self.data[start:stop][keep])


class ConcatenatedBatches:
    """Several sources (the shards of one job) as one row space, so that prefetching runs
    across shard boundaries; row ``i`` of source ``k`` is row ``offsets[k] + i``."""

    def __init__(self, sources: Sequence[BatchSource]) -> None:
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [s.n_rows for s in self.sources])
        self.n_rows = int(self.offsets[-1])

    def read(self, start: int, stop: int) -> RowBatch:
        parts = []
        for source, offset in zip(self.sources, self.offsets[:-1], strict=True):
            first, last = max(start, offset), min(stop, offset + source.n_rows)
            if first < last:
                part = source.read(int(first - offset), int(last - offset))
                parts.append(RowBatch(part.indices + offset, part.data, part.sizes))
        if len(parts) == 1:
            return parts[0]
        sizes = None if parts[0].sizes is None else np.concatenate([p.sizes for p in parts])
        return RowBatch(
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.data for p in parts]),
            sizes,
        )
