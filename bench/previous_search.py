"""The semantic ranking as it was before the int8 codes (search/vector_scan.py), for the
benchmarks' ratios: installed on a SearchIndex, it searches the way the code did then."""

from __future__ import annotations

import numpy as np

from imganalyzer.search.query import SearchIndex


class PreviousPath:
    """``index`` searching as before the int8 codes: a float16 product (torch) over the
    memory-mapped matrix, of the rows a filter passes (picked out) or of all rows, a filter's
    rows read afresh each time, the words ranked before the vectors (not meanwhile) with
    Tantivy checking the filters, every stored document of the fused ranking read, and the
    modules' results looked for each time."""

    GATHER_SHARE = 0.35

    def __init__(self, index: SearchIndex) -> None:
        self.index = index
        index.vector_ranking = self.vector_ranking  # type: ignore[method-assign]
        index.hits = self.hits  # type: ignore[method-assign]
        index.search = self.search  # type: ignore[method-assign]
        index.has_run = index.store.has_results  # type: ignore[method-assign]

    def search(self, text: str, mode: str, filters, limit: int, encode_text) -> list:
        from imganalyzer.search.query import (
            FUSION_DEPTH,
            Filters,
            checked_filters,
            reciprocal_rank_fusion,
        )
        from imganalyzer.search.query_input import check_limit, check_query

        index = self.index
        limit, text = check_limit(limit), check_query(text)
        filters = index.require_modules(checked_filters(filters or Filters()))
        depth = max(limit, FUSION_DEPTH) if mode == "hybrid" else limit
        rankings = []
        if mode in ("text", "hybrid"):  # Tantivy checks the filters
            rankings.append(index._ranked(text, index.text_query(text, filters), depth))
        if mode in ("semantic", "hybrid"):
            rankings.append(self.vector_ranking(encode_text(text), filters, depth))
        if mode == "hybrid":
            ranking = reciprocal_rank_fusion([[i for i, _ in r] for r in rankings])
        else:
            ranking = rankings[0]
        return self.hits(ranking, filters, limit)

    def scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        import warnings

        import torch

        assert self.index.vectors is not None
        matrix = self.index.vectors.matrix
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            block = torch.from_numpy(np.asarray(matrix) if rows is None else matrix[rows])
        vector = torch.from_numpy(np.asarray(query, dtype=np.float16))
        return (block @ vector).float().numpy()

    def vector_ranking(self, vector: np.ndarray, filters, limit: int) -> list[tuple[int, float]]:
        index = self.index
        assert index.vectors is not None and index.filter_columns is not None
        ids = index.vectors.ids
        condition = index.filter_query(filters)
        passing = None if condition is None else index.filter_columns.vector_rows(filters)
        if passing is not None and len(passing) <= len(ids) * self.GATHER_SHARE:
            scores = self.scores(vector, passing)
            best = top_rows(scores, limit)[:limit]
            return [(int(ids[passing[b]]), float(scores[b])) for b in best]
        scores = self.scores(vector)
        if passing is not None:
            kept = np.full(len(scores), -np.inf, np.float32)
            kept[passing] = scores[passing]
            best = top_rows(kept, min(limit, len(passing)))
        else:
            best = top_rows(scores, limit)
        return [(int(ids[r]), float(scores[r])) for r in best]

    def hits(self, ranking, filters, limit: int) -> list:
        from imganalyzer.catalog.manifests import unescape_path
        from imganalyzer.search.query import Hit, within_km

        docs = self.index.documents([i for i, _ in ranking])
        hits = []
        for item, score in ranking:
            fields = docs.get(item)
            if fields is None or (filters.near and not within_km(fields, *filters.near)):
                continue
            fields.pop("key_id", None)
            hits.append(Hit(unescape_path(fields.pop("key")), score, fields))
            if len(hits) == limit:
                break
        return hits


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best], kind="stable")]
