"""The search filters evaluated on the browse table's columns (numpy), for the semantic
ranking: a broad filter is then resolved to the rows of ``vectors.npy`` it passes in a few
milliseconds, and only those rows are scored (reading tens of thousands of matching ids out
of Tantivy costs more than scoring every vector).

The answer is the one Tantivy gives for the same filter: word filters (camera, lens, place,
person) match the index's own text of each image with Tantivy's default analyser
(alphanumeric tokens, lower-cased, tokens of 40 bytes or more dropped) as a phrase; the date,
number and position ranges include their bounds as Tantivy's range queries do. A filter this
module cannot answer the same way (an empty phrase) returns None: the caller uses Tantivy.
"""

from __future__ import annotations

import math
import re

import numpy as np

from imganalyzer.catalog.manifests import unescape_path
from imganalyzer.search.browse import BrowseTable, seconds
from imganalyzer.search.query_input import SearchInputError

TOKEN = re.compile(r"[^\W_]+")
MAX_TOKEN_BYTES = 40  # Tantivy's RemoveLongFilter: longer tokens are not indexed
KM_PER_DEGREE = 111.32
WORD_COLUMNS = {
    "camera": "camera_text", "lens": "lens_text", "place": "place_text", "person": "people_text",
}  # fmt: skip


def tokens(text: str) -> list[tuple[int, str]]:
    """(position, token) as Tantivy's default analyser makes them."""
    return [
        (position, word.lower())
        for position, word in enumerate(TOKEN.findall(text))
        if len(word.encode("utf-8", "surrogatepass")) < MAX_TOKEN_BYTES
    ]


def has_phrase(text: str, phrase: list[tuple[int, str]]) -> bool:
    """Whether the phrase's tokens occur in ``text`` at the same relative positions."""
    at: dict[str, set[int]] = {}
    for position, word in tokens(text):
        at.setdefault(word, set()).add(position)
    first_position, first_word = phrase[0]
    for start in at.get(first_word, ()):
        if all(start + p - first_position in at.get(w, ()) for p, w in phrase[1:]):
            return True
    return False


class FilterColumns:
    """The browse table's filter columns and the ``vectors.npy`` row of each image."""

    def __init__(self, table: BrowseTable, vector_ids: np.ndarray) -> None:
        self.table = table
        at = np.minimum(np.searchsorted(vector_ids, table.key_id), max(len(vector_ids) - 1, 0))
        found = vector_ids[at] == table.key_id if len(vector_ids) else np.zeros(table.n, bool)
        self.vector_row = np.where(found, at, -1).astype(np.int64)

    def vector_rows(self, filters: object) -> np.ndarray | None:
        """The rows of ``vectors.npy`` of the images that pass ``filters`` (a checked
        :class:`~imganalyzer.search.query.Filters`), ascending; None: ask Tantivy."""
        mask = self.mask(filters)
        if mask is None:
            return None
        rows = self.vector_row[mask]
        return np.sort(rows[rows >= 0])

    def mask(self, filters: object) -> np.ndarray | None:
        table = self.table
        mask = np.ones(table.n, bool)
        after, before = getattr(filters, "after", None), getattr(filters, "before", None)
        if after is not None or before is not None:
            dates = table.column("search_date")
            mask &= dates != np.iinfo(np.int64).min
            if after is not None:
                mask &= dates >= seconds(after)
            if before is not None:
                mask &= dates < seconds(before)
        for name, column in WORD_COLUMNS.items():
            words = getattr(filters, name, None)
            if words and words.strip():
                matching = self._matching_codes(column, words)
                if matching is None:
                    return None
                mask &= self._among(column, matching)
        if getattr(filters, "has_text", False):
            mask &= table.column("has_text")
        for name, column in (("min_aesthetic", "aesthetic"), ("min_sharpness", "sharpness")):
            minimum = getattr(filters, name, None)
            if minimum is not None:
                mask &= table.column(column) >= minimum  # NaN (no value) compares False
        near = getattr(filters, "near", None)
        if near:
            mask &= self._box(*near)
        folder = getattr(filters, "folder", None)
        if folder and folder.strip("/"):
            found = self._folders(folder)
            if found is None:
                return None
            mask &= self._among("folder", found)
        return mask

    def _among(self, column: str, codes: np.ndarray) -> np.ndarray:
        """Whether each image's code in ``column`` is one of ``codes`` (-1, none: no)."""
        allowed = np.zeros(len(self.table.table(column)) + 1, bool)  # the last: code -1
        allowed[codes] = True
        return allowed[self.table.codes(column)]

    def _matching_codes(self, column: str, words: str) -> np.ndarray | None:
        phrase = tokens(words.replace("\\", " ").replace('"', " "))
        if not phrase:
            return None
        values = self.table.table(column)
        return np.array([c for c, v in enumerate(values) if has_phrase(v, phrase)], np.int32)

    def _folders(self, folder: str) -> np.ndarray | None:
        wanted = unescape_path(folder).strip("/")
        if "\\" in wanted:  # facets escape backslashes: leave such folders to Tantivy
            return None
        values = self.table.table("folder")
        return np.array(
            [c for c, v in enumerate(values) if v == f"/{wanted}" or v.startswith(f"/{wanted}/")],
            np.int32,
        )

    def _box(self, latitude: float, longitude: float, km: float) -> np.ndarray:
        """The bounding box of the circle, as the Tantivy filter has it (hits outside the
        circle are dropped later, as for a text search)."""
        lat, lon = self.table.column("lat"), self.table.column("lon")
        dlat = km / KM_PER_DEGREE
        dlon = km / (KM_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6))
        inside = (lat >= latitude - dlat) & (lat <= latitude + dlat)
        if dlon >= 180:
            return inside
        west, east = longitude - dlon, longitude + dlon
        spans = [(max(west, -180.0), min(east, 180.0))]
        if west < -180:
            spans.append((west + 360, 180.0))
        if east > 180:
            spans.append((-180.0, east - 360))
        across = np.zeros(self.table.n, bool)
        for a, b in spans:
            across |= (lon >= a) & (lon <= b)
        return inside & across


__all__ = ["FilterColumns", "SearchInputError", "has_phrase", "tokens"]
