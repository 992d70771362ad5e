"""Crops of single faces for the people pages, cut from the stored thumbnail (faces are
boxed in original pixels; the thumbnail's scale is its width over the original's)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from imganalyzer.results import read_rows
from imganalyzer.steps.people import FaceRecord
from imganalyzer.web.data import ResultsData

MARGIN = 0.3  # of the box's long side, on each side
SIDE = 96  # the crop's long edge in pixels
CACHED_SHARDS = 64


class FaceCrops:
    """JPEG crops of faces; keeps each shard's original widths (from its technical rows)."""

    def __init__(self, data: ResultsData) -> None:
        self.data = data
        self._lock = threading.Lock()
        self._widths: OrderedDict[tuple[str, int], list[int | None]] = OrderedDict()

    def jpeg(self, record: FaceRecord) -> bytes | None:
        thumbnail = self.data.thumbnail(record.shard, record.row)
        if thumbnail is None:
            return None
        image = Image.open(io.BytesIO(thumbnail)).convert("RGB")
        original = self._width(record.shard, record.row) or image.width
        scale = image.width / original
        x0, y0, x1, y1 = (v * scale for v in record.box)
        margin = MARGIN * max(x1 - x0, y1 - y0)
        right, bottom = int(np.ceil(x1 + margin)), int(np.ceil(y1 + margin))
        box = (
            max(0, int(x0 - margin)), max(0, int(y0 - margin)),
            min(image.width, right), min(image.height, bottom),
        )  # fmt: skip
        crop = image.crop(box) if box[2] > box[0] and box[3] > box[1] else image
        crop.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        crop.save(out, format="JPEG", quality=85)
        return out.getvalue()

    def _width(self, shard: str, row: int) -> int | None:
        path = self.data.layout.technical(shard)
        try:
            key = (shard, path.stat().st_mtime_ns)
        except FileNotFoundError:
            return None
        with self._lock:
            widths = self._widths.get(key)
        if widths is None:
            widths = [r.get("width") if r.get("status") == "ok" else None for r in read_rows(path)]
            with self._lock:
                self._widths[key] = widths
                while len(self._widths) > CACHED_SHARDS:
                    self._widths.popitem(last=False)
        return widths[row] if 0 <= row < len(widths) else None
