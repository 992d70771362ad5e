"""OCR backends: detected lines kept by size and strength, warped upright, recognised in
order with empty texts dropped; boxes in the pixels of the image read."""

from __future__ import annotations

import numpy as np

from imganalyzer.modules.ocr_backends import (
    MIN_REGION_SIDE,
    DetectThenRecognise,
    TextRegion,
    crop_region,
    strongest_regions,
)


def region(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> TextRegion:
    points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
    return TextRegion(points, score)


class ShapeReader(DetectThenRecognise):
    """Recognises each crop as its size (and a blank crop as no text): no model needed."""

    name = "shapes"

    def __init__(self, max_regions: int) -> None:
        super().__init__(detector=None, max_regions=max_regions)  # type: ignore[arg-type]
        self.seen: list[tuple[int, int]] = []

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        self.seen += [crop.shape[:2] for crop in crops]
        return [("" if crop.max() == 0 else f"{crop.shape[1]}x{crop.shape[0]}", 0.8)
                for crop in crops]  # fmt: skip


def test_a_region_has_the_box_and_area_of_its_corners() -> None:
    tilted = TextRegion(np.array([[10, 5], [50, 9], [48, 29], [8, 25]], np.float32), 0.5)
    assert tilted.box == (8.0, 5.0, 50.0, 29.0) and tilted.area == 42 * 24


def test_the_strongest_regions_are_the_largest_and_surest() -> None:
    small_sure = region(0, 0, 10, 10, 1.0)  # 100 px x 1.0
    large_unsure = region(0, 0, 40, 10, 0.2)  # 400 px x 0.2
    large_sure = region(0, 0, 40, 10, 0.9)  # 400 px x 0.9
    kept = strongest_regions([large_unsure, small_sure, large_sure], 2)
    assert [id(r) for r in kept] == [id(large_sure), id(small_sure)]
    assert strongest_regions([], 5) == []


def test_a_tilted_line_is_cropped_upright_and_a_tall_one_turned_flat() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:40, 30:150] = 255
    flat = crop_region(image, region(30, 20, 150, 40))
    assert flat.shape[0] < flat.shape[1] and flat.mean() > 200
    tall = crop_region(np.ascontiguousarray(image.transpose(1, 0, 2)), region(20, 30, 40, 150))
    assert tall.shape[0] < tall.shape[1]  # read lying down, as text is


def test_lines_too_small_to_read_and_empty_texts_are_dropped_the_rest_kept_in_strength_order() -> (
    None
):
    image = np.zeros((120, 300, 3), np.uint8)
    image[10:40, 10:210] = 255  # a wide line
    image[60:90, 10:110] = 255  # a narrower one
    reader = ShapeReader(max_regions=2)
    regions = [
        region(10, 60, 110, 90), region(10, 10, 210, 40),
        region(0, 100, MIN_REGION_SIDE - 1, 110),  # too small to crop
        region(220, 60, 290, 90, 0.99),  # black: recognised as no text
    ]  # fmt: skip
    lines = reader.read(image, regions)
    assert [line.box for line in lines] == [(10.0, 10.0, 210.0, 40.0), (10.0, 60.0, 110.0, 90.0)]
    assert len(reader.seen) == 2 and all(line.confidence == 0.8 for line in lines)
    reader = ShapeReader(max_regions=3)
    assert len(reader.read(image, regions)) == 2 and len(reader.seen) == 3  # the black one read
    assert ShapeReader(max_regions=3).read(image, []) == []
