"""What flows into a model: tier batches that skip failed decodes, padded images that keep
their true sizes, array batches, and shards concatenated into one stream."""

from __future__ import annotations

import numpy as np
import torch

from imganalyzer.decode.tiers import TierReader
from imganalyzer.runtime.batches import PaddedImages, RowBatch, TierBatches


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
