"""What flows into a model: tier batches that skip failed decodes, padded images that keep
their true sizes, array batches, and shards concatenated into one stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imganalyzer.decode.tiers import TierReader
from imganalyzer.runtime.batches import (
    ArrayBatches,
    ConcatenatedBatches,
    HostItems,
    PaddedImages,
    RowBatch,
    TierBatches,
)


def test_tier_batches_skip_failed_decodes_and_keep_row_numbers(shard) -> None:
    source = TierBatches(TierReader(shard.tiers), "clip")
    batch = source.read(1, 5)
    assert batch.indices.tolist() == [1, 3, 4]  # row 2 failed to decode
    assert batch.data.shape[1:] == (96, 96, 3) and batch.data.dtype == np.uint8
    assert batch.sizes.tolist() == [list(shard.images[i].shape[:2]) for i in (1, 3, 4)]


def test_padded_images_slice_pin_and_move_like_a_tensor_and_keep_sizes_on_the_host() -> None:
    data = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    data[1, :4, :6] = 200
    sizes = np.array([[8, 8], [4, 6], [2, 3]], dtype=np.int32)
    images = PaddedImages.from_rows(RowBatch(np.arange(3), data, sizes))
    assert images.pixels.shape == (3, 3, 8, 8) and images.pixels.dtype == torch.uint8
    assert len(images) == 3 and not images.is_floating_point()
    part = images[1:3].to("cpu")
    assert len(part) == 2 and part.sizes.tolist() == [[4, 6], [2, 3]]
    regions = part.true_regions()
    assert regions[0].shape == (3, 4, 6) and int(regions[0].min()) == 200
    assert regions[1].shape == (3, 2, 3)


def test_selected_tier_rows_read_the_same_whether_close_together_or_far_apart(shard) -> None:
    reader = TierReader(shard.tiers)
    everything = TierBatches(reader, "clip").read(0, reader.n_images)
    by_row = dict(zip(everything.indices.tolist(), everything.data, strict=True))
    for rows in ([0, 1, 3], [0, 6], [1, 2, 4, 6]):  # one slice; runs; a failed row among them
        source = TierBatches(reader, "clip", np.array(rows))
        batch = source.read(0, len(rows))
        kept = source.manifest_rows(batch.indices).tolist()
        assert kept == [row for row in rows if row != 2]
        for row, image in zip(kept, batch.data, strict=True):
            assert np.array_equal(image, by_row[row])
    assert len(TierBatches(reader, "clip", np.array([], dtype=np.int64)).read(0, 0).indices) == 0


def test_array_batches_skip_unusable_rows_and_have_no_image_sizes() -> None:
    data = np.arange(12, dtype=np.float32).reshape(6, 2)
    usable = np.array([True, False, True, True, False, True])
    batch = ArrayBatches(data, usable).read(1, 5)
    assert batch.indices.tolist() == [2, 3] and batch.data.tolist() == [[4, 5], [6, 7]]
    with pytest.raises(ValueError, match="no image sizes"):
        _ = batch.image_sizes


def test_shards_concatenated_read_as_one_row_space_across_their_boundaries() -> None:
    first = ArrayBatches(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([1, 0, 1], bool))
    second = ArrayBatches(np.arange(6, 14, dtype=np.float32).reshape(4, 2), np.ones(4, bool))
    stream = ConcatenatedBatches([first, second])
    assert stream.n_rows == 7 and stream.offsets.tolist() == [0, 3, 7]
    batch = stream.read(1, 5)  # rows 1-2 of the first shard, 0-1 of the second
    assert batch.indices.tolist() == [2, 3, 4]
    assert batch.data.tolist() == [[4, 5], [6, 7], [8, 9]] and batch.sizes is None
    assert stream.read(4, 7).indices.tolist() == [4, 5, 6]  # within one shard


def test_host_items_slice_and_stay_on_the_host() -> None:
    items = HostItems(["a", "b", "c"])
    assert list(items[1:]) == ["b", "c"] and len(items) == 3
    assert items.to("cuda") is items and items.pin_memory() is items
    assert not items.is_floating_point()
