"""Search the index: BM25 over the text fields, CLIP text-to-image similarity, or both fused
by reciprocal rank fusion, with the same filters applied to every ranking.

Semantic search is exact: the vectors' int8 codes bound every score, and only the rows that
can be in the top k are scored exactly (:mod:`.vector_scan`). With filters, the browse
table's columns (:mod:`.column_filters`) give the vector rows that pass them in a few
milliseconds, and only those rows are ranked. Without a browse table, a filter that matches
few images is resolved to vector rows through Tantivy; a broad one checks the best
candidates in growing batches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import tantivy
from tantivy import FieldType, Occur, Query

from imganalyzer.catalog.manifests import escape_path, unescape_path
from imganalyzer.layout import IndexFiles, Layout
from imganalyzer.search.browse import BrowseTable
from imganalyzer.search.column_filters import FilterColumns
from imganalyzer.search.documents import SEARCHED_FIELDS, folder_facet, key_id
from imganalyzer.search.index import open_index
from imganalyzer.search.passing import (
    Passing,
    PassingCache,
    passing_of,
    words_cut,
    words_depth,
)
from imganalyzer.search.query_input import (
    AESTHETIC,
    SHARPNESS,
    SearchInputError,
    check_date,
    check_dates,
    check_limit,
    check_minimum,
    check_near,
    check_query,
    check_words,
)
from imganalyzer.search.query_input import parse_date_bound as parse_date_bound
from imganalyzer.search.query_input import parse_near as parse_near
from imganalyzer.search.vector_scan import Ranking, VectorMatrix
from imganalyzer.store import ResultsStore

MODES = ("text", "semantic", "hybrid")
# Reciprocal rank fusion constant (Cormack et al. 2009): damps the weight of the top ranks.
RRF_K = 60
# Depth of each ranking that is fused: enough that an image ranked well by one list and
# moderately by the other still surfaces.
FUSION_DEPTH = 100
# A filter matching at most this many images is resolved to vector rows up front
# (reading this many key ids from Tantivy costs about as much as one matrix pass).
FILTER_ROWS_MAX = 50_000
KM_PER_DEGREE = 111.32
# The words are ranked alone, then cut to the images a filter passes, down to this depth
# (a filter that passes fewer images is left to Tantivy).
WORDS_DEPTH_MAX = 5000

TextEncoder = Callable[[str], np.ndarray]
# The modules a filter needs (any one of them): without their results it matches nothing.
FILTER_MODULES = {
    "after": ("--after", ("metadata",)),
    "before": ("--before", ("metadata",)),
    "camera": ("--camera", ("metadata",)),
    "lens": ("--lens", ("metadata",)),
    "near": ("--near", ("metadata",)),
    "person": ("--person", ("faces",)),
    "has_text": ("--has-text", ("objects", "ocr", "cloud")),
    "min_aesthetic": ("--min-aesthetic", ("aesthetic",)),
    "min_sharpness": ("--min-sharpness", ("technical",)),
}


class ModuleNotRunError(LookupError):
    """A search needs results of a module that has not run (or is not configured)."""


@dataclass
class Filters:
    """Conditions every result meets. Dates compare with the camera's wall-clock time."""

    after: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive
    camera: str | None = None  # words of make and model, e.g. "X-T4" or "Canon EOS"
    lens: str | None = None
    place: str | None = None  # words of the town, region or country, e.g. "Paris"
    person: str | None = None
    has_text: bool = False
    min_aesthetic: float | None = None
    min_sharpness: float | None = None
    near: tuple[float, float, float] | None = None  # latitude, longitude (degrees), km
    folder: str | None = None  # a folder relative to the library root, with its subfolders


def checked_filters(filters: Filters) -> Filters:
    """``filters`` with every value range-checked (:class:`SearchInputError` otherwise)."""
    checked = Filters(
        after=None if filters.after is None else check_date(filters.after, "--after"),
        before=None if filters.before is None else check_date(filters.before, "--before"),
        camera=check_words(filters.camera, "--camera"),
        lens=check_words(filters.lens, "--lens"),
        place=check_words(filters.place, "--place"),
        person=check_words(filters.person, "--person"),
        has_text=bool(filters.has_text),
        min_aesthetic=None
        if filters.min_aesthetic is None
        else check_minimum(filters.min_aesthetic, "--min-aesthetic", AESTHETIC),
        min_sharpness=None
        if filters.min_sharpness is None
        else check_minimum(filters.min_sharpness, "--min-sharpness", SHARPNESS),
        near=None if filters.near is None else check_near(filters.near),
        folder=check_words(filters.folder, "--folder", plain=False),
    )
    check_dates(checked.after, checked.before)
    return checked


@dataclass
class Hit:
    key: str
    score: float
    fields: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        fields = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.fields.items()
        }
        if "folder" in fields:
            fields["folder"] = escape_path(fields["folder"])
        return {"path": escape_path(self.key), "score": self.score, **fields}


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple]:
    """Fuse rankings of ids: score(id) = sum over rankings of 1 / (k + rank), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


class SearchIndex:
    """The search index of a results folder (``layout.index``). ``resident``: read the
    vectors' codes into memory (a server), else memory-map them (one search)."""

    def __init__(self, layout: Layout, resident: bool = False) -> None:
        self.store = ResultsStore(layout)
        self.index_dir = layout.index
        if not IndexFiles(self.index_dir).tantivy.is_dir():
            raise LookupError(f"no index in {self.index_dir}: run snakemake or imganalyzer index")
        self.index = open_index(self.index_dir)
        self.schema = self.index.schema
        self.searcher = self.index.searcher()
        self.vectors = VectorMatrix.open(self.index_dir, resident)
        self._passing = None if self.vectors is None else PassingCache(self.vectors)
        self._has_run: dict[str, bool] = {}

    # ------------------------------------------------------------ rankings

    def text_ranking(self, text: str, filters: Filters, limit: int) -> list[tuple[int, float]]:
        """(key_id, BM25 score) best first; an empty ``text`` lists every filtered image.
        With filters the columns answer, the words are ranked alone, deep enough, and cut to
        the images that pass: Tantivy's ranking, for less than checking the filters costs it
        (:func:`.passing.words_cut`)."""
        passing = self._passing_of(filters) if text.strip() else None
        depth = None if passing is None else words_depth(passing, limit, WORDS_DEPTH_MAX)
        if passing is not None and depth is not None:
            words = self._ranked(text, self.text_query(text, Filters()), depth)
            cut = words_cut([(s, i) for i, s in words], depth, passing, limit)
            if cut is not None:
                return cut
        return self._ranked(text, self.text_query(text, filters), limit)

    def _ranked(self, text: str, query: Query, limit: int) -> list[tuple[int, float]]:
        hits = self._search(text, query, limit).hits
        ids = self._key_ids([address for _, address in hits])
        return [(int(i), float(score)) for i, (score, _) in zip(ids, hits, strict=True)]

    def count(self, text: str, filters: Filters | None = None) -> int:
        """How many images the text search matches (all of them for an empty ``text``)."""
        query = self.text_query(text, filters or Filters())
        return self._search(text, query, 1, count=True).count

    def _search(self, text: str, query: Query, limit: int, count: bool = False) -> Any:
        try:  # the lenient parser lets some mistakes through to the search (`nofield:*`)
            return self.searcher.search(query, limit, count=count)
        except ValueError as error:
            raise SearchInputError(f"query {text!r}: {_one_line(error)}") from None

    def text_query(self, text: str, filters: Filters) -> Query:
        """The words (query syntax, parsed leniently) and the filters as one query."""
        if text.strip():
            try:
                query, _errors = self.index.parse_query_lenient(
                    text, list(SEARCHED_FIELDS), SEARCHED_FIELDS
                )
            except ValueError as error:
                raise SearchInputError(f"query {text!r}: {_one_line(error)}") from None
        else:
            query = Query.all_query()
        condition = self.filter_query(filters)
        if condition is not None:
            query = Query.boolean_query(
                [(Occur.Must, query), (Occur.Must, Query.const_score_query(condition, 0.0))]
            )
        return query

    def vector_ranking(
        self, vector: np.ndarray, filters: Filters, limit: int
    ) -> list[tuple[int, float]]:
        """(key_id, cosine similarity) best first, among images that pass the filters: the
        exact ranking (see :mod:`.vector_scan`)."""
        vectors = self.vectors
        if vectors is None:
            raise ModuleNotRunError(self.no_vectors_message("semantic search"))
        condition = self.filter_query(filters)
        if condition is None:
            rows, scores = vectors.best(vector, limit)
        else:
            passing = self._passing_of(filters)
            if passing is not None:  # filter first, then rank only the rows that pass
                rows, scores = vectors.best(vector, limit, passing.rows)
            else:
                rows, scores = self._filtered_best(vectors.ranking(vector), condition, limit)
        return [(int(i), float(s)) for i, s in zip(vectors.ids[rows], scores, strict=True)]

    def _passing_of(self, filters: Filters) -> Passing | None:
        """The images that pass ``filters``, from the browse table's columns (None without
        a browse table, or for a filter only Tantivy answers), kept for the next queries."""
        columns, kept = self.filter_columns, self._passing
        if columns is None or kept is None:
            return None
        return kept.get(filters, lambda: passing_of(columns, filters))

    @functools.cached_property
    def filter_columns(self) -> FilterColumns | None:
        path = IndexFiles(self.index_dir).browse
        if self.vectors is None or not path.is_file():
            return None
        try:
            return FilterColumns(BrowseTable(path), self.vectors.ids)
        except (LookupError, KeyError, OSError, ValueError):  # an older or unreadable table
            return None

    def _filtered_best(
        self, ranking: Ranking, condition: Query, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``limit`` rows of ``ranking`` that Tantivy's ``condition`` passes."""
        vectors = ranking.vectors
        # tantivy's stub lacks SearchResult.count (set when searching with count=True)
        result = self.searcher.search(condition, 1, count=True)
        matching = result.count  # type: ignore[attr-defined]
        if matching == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if matching <= FILTER_ROWS_MAX:
            rows = np.unique(vectors.rows_of(self._ids_matching(condition, matching)))
            return vectors.best(ranking.query, limit, rows)
        # A broad filter: most of the best candidates pass, so check them in batches.
        found: list[int] = []  # positions in ``best``
        best, scores = np.empty(0, np.int64), np.empty(0, np.float32)
        depth = max(4 * limit, 256)
        while len(found) < limit and len(best) < len(vectors):
            checked = len(best)
            best, scores = ranking.top(depth)
            ids = vectors.ids[best[checked:]]
            passing = set(self._ids_matching(self._restricted(condition, ids), len(ids)))
            found += [checked + j for j, i in enumerate(ids.tolist()) if i in passing]
            depth *= 4
        kept = np.array(found[:limit], np.int64)
        return best[kept], scores[kept]

    def _restricted(self, condition: Query, ids: np.ndarray) -> Query:
        among = Query.term_set_query(self.schema, "key_id", [int(i) for i in ids])
        return Query.boolean_query([(Occur.Must, condition), (Occur.Must, among)])

    def _ids_matching(self, query: Query, limit: int) -> list[int]:
        if limit <= 0:
            return []
        hits = self.searcher.search(query, limit, count=False).hits
        return self._key_ids([address for _, address in hits])

    def _key_ids(self, addresses: list[tantivy.DocAddress]) -> list[int]:
        # key_id is an integer fast field that every document has: never a float or None
        return cast("list[int]", self.searcher.fast_field_values("key_id", addresses))

    # ------------------------------------------------------------ filters

    def filter_query(self, filters: Filters) -> Query | None:
        """One query all conditions must match, or None without conditions."""
        clauses = []
        if filters.after or filters.before:
            clauses.append(
                Query.range_query(
                    self.schema,
                    "date",
                    FieldType.Date,
                    filters.after,
                    filters.before,
                    include_upper=filters.before is None,
                )
            )
        for field, words in (
            ("camera", filters.camera),
            ("lens", filters.lens),
            ("place", filters.place),
            ("people", filters.person),
        ):
            if words and words.strip():
                clauses.append(self._phrase(field, words))
        if filters.has_text:
            clauses.append(Query.term_query(self.schema, "has_text", True))
        for field, minimum in (
            ("aesthetic", filters.min_aesthetic),
            ("sharpness", filters.min_sharpness),
        ):
            if minimum is not None:
                clauses.append(Query.range_query(self.schema, field, FieldType.Float, minimum))
        if filters.near:
            clauses.append(self._bounding_box(*filters.near))
        if filters.folder and filters.folder.strip("/"):
            facet = folder_facet(unescape_path(filters.folder))  # either spelling
            clauses.append(Query.term_query(self.schema, "folder", facet))
        if not clauses:
            return None
        return Query.boolean_query([(Occur.Must, clause) for clause in clauses])

    def _phrase(self, field: str, words: str) -> Query:
        """The words, in order, in ``field``: tokenised by the field's own analyser."""
        quoted = '"' + words.replace("\\", " ").replace('"', " ") + '"'
        try:
            return self.index.parse_query(quoted, [field])
        except ValueError as error:
            raise SearchInputError(f"{field} {words!r}: {_one_line(error)}") from None

    def _bounding_box(self, latitude: float, longitude: float, km: float) -> Query:
        """The box around the circle (a fast-field range on each axis); hits are then
        checked against the circle itself (:func:`within_km`)."""
        dlat = km / KM_PER_DEGREE
        dlon = km / (KM_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6))
        lat = Query.range_query(
            self.schema, "gps_latitude", FieldType.Float, latitude - dlat, latitude + dlat
        )
        if dlon >= 180:
            return lat
        west, east = longitude - dlon, longitude + dlon
        spans = [(max(west, -180.0), min(east, 180.0))]
        if west < -180:  # the box crosses the antimeridian
            spans.append((west + 360, 180.0))
        if east > 180:
            spans.append((-180.0, east - 360))
        lon = Query.boolean_query(
            [
                (
                    Occur.Should,
                    Query.range_query(self.schema, "gps_longitude", FieldType.Float, a, b),
                )
                for a, b in spans
            ]
        )
        return Query.boolean_query([(Occur.Must, lat), (Occur.Must, lon)])

    # ------------------------------------------------------------ results

    def documents(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Stored fields of the documents with these key ids: {key_id: {field: value}}."""
        if not ids:
            return {}
        query = Query.term_set_query(self.schema, "key_id", [int(i) for i in ids])
        found: dict[int, dict[str, Any]] = {}
        for _, address in self.searcher.search(query, len(ids), count=False).hits:
            stored = self.searcher.doc(address).to_dict()
            fields: dict[str, Any] = {
                k: _plain(v[0]) if len(v) == 1 else v for k, v in stored.items()
            }
            found[fields["key_id"]] = fields
        return found

    def hits(self, ranking: Sequence[tuple[int, float]], filters: Filters, limit: int) -> list[Hit]:
        """The first ``limit`` images of ``ranking`` with their stored fields. Documents are
        read in ranking order, a batch at a time: a fused ranking holds a few times
        ``limit`` images, and each stored document costs a block read."""
        hits: list[Hit] = []
        batch = 2 * limit if filters.near else limit  # the circle drops some of the box
        start = 0
        while len(hits) < limit and start < len(ranking):
            part = ranking[start : start + batch]
            docs = self.documents([i for i, _ in part])
            for item, score in part:
                fields = docs.get(item)
                if fields is None or (filters.near and not within_km(fields, *filters.near)):
                    continue
                fields.pop("key_id", None)
                hits.append(Hit(unescape_path(fields.pop("key")), score, fields))
                if len(hits) == limit:
                    break
            start += len(part)
            batch = max(batch, limit - len(hits))
        return hits

    # ------------------------------------------------------------ honest answers

    def has_run(self, module: str) -> bool:
        """Whether ``module`` has written results (the index lies in ``results/index``).
        Asked once per module: a run that adds results also rewrites the index, and a
        changed index is opened afresh."""
        found = self._has_run.get(module)
        if found is None:
            found = self._has_run[module] = self.store.has_results(module)
        return found

    def require_modules(self, filters: Filters) -> Filters:
        """``filters``, or :class:`ModuleNotRunError` naming the module a filter needs."""
        for name, (option, modules) in FILTER_MODULES.items():
            if getattr(filters, name) in (None, False) or any(map(self.has_run, modules)):
                continue
            names = " or ".join(modules).replace(" or ", ", ", len(modules) - 2)
            raise ModuleNotRunError(
                f"{option} needs results of the {names} module, which has not run: add "
                f"{modules[0]} to modules: in the config and run snakemake"
            )
        if filters.person and not self._any_term("people"):
            raise ModuleNotRunError(
                "--person: no person has a name yet: list them with `imganalyzer people "
                "list` and name one with `imganalyzer people name ID NAME`"
            )
        return filters

    def _any_term(self, field: str) -> bool:
        """Whether any document has a word in the text ``field``."""
        query = Query.regex_query(self.schema, field, ".+")
        return bool(self.searcher.search(query, 1, count=False).hits)

    def no_vectors_message(self, what: str) -> str:
        if self.has_run("embedding"):
            return (
                f"{what} needs image embeddings, and the embedding module produced none "
                "(see its errors in `imganalyzer status`)"
            )
        return (
            f"{what} needs image embeddings: the embedding module has not run (add "
            "embedding to modules: in the config and run snakemake)"
        )

    # ------------------------------------------------------------ entry points

    def search(
        self,
        text: str,
        mode: str = "hybrid",
        filters: Filters | None = None,
        limit: int = 20,
        encode_text: TextEncoder | None = None,
    ) -> list[Hit]:
        """The best ``limit`` images for ``text``. ``encode_text``: the CLIP text tower,
        needed by the semantic and hybrid modes."""
        if mode not in MODES:
            raise SearchInputError(f"search mode {mode!r}: choose one of {', '.join(MODES)}")
        limit = check_limit(limit)
        text = check_query(text)
        filters = self.require_modules(checked_filters(filters or Filters()))
        if mode != "text" and self.vectors is None:
            raise ModuleNotRunError(self.no_vectors_message(f"{mode} search"))
        depth = max(limit, FUSION_DEPTH) if mode == "hybrid" else limit
        if filters.near:  # hits outside the circle (inside its box) are dropped afterwards
            depth *= 2
        if mode == "text":
            return self.hits(self.text_ranking(text, filters, depth), filters, limit)
        if encode_text is None:
            raise ValueError(f"{mode} search needs a text encoder")
        # a hybrid search ranks the words in another thread meanwhile (Tantivy and the
        # text encoder let go of the interpreter lock)
        words = None
        if mode == "hybrid":
            words = _word_rankings().submit(self.text_ranking, text, filters, depth)
        try:
            meaning = self.vector_ranking(encode_text(text), filters, depth)
        finally:
            if words is not None:
                futures.wait([words])
        if words is None:
            return self.hits(meaning, filters, limit)
        fused = reciprocal_rank_fusion([[i for i, _ in words.result()], [i for i, _ in meaning]])
        return self.hits(fused, filters, limit)

    def similar(self, path: str, filters: Filters | None = None, limit: int = 20) -> list[Hit]:
        """The images whose CLIP vectors are closest to the vector of ``path``."""
        limit = check_limit(limit)
        if not isinstance(path, str) or not path or len(path) > 4096:
            raise SearchInputError(f"similar wants an image's path in the library, got {path!r}")
        filters = self.require_modules(checked_filters(filters or Filters()))
        if self.vectors is None:
            raise ModuleNotRunError(self.no_vectors_message("similar"))
        for own in dict.fromkeys((key_id(path), key_id(unescape_path(path)))):
            rows = self.vectors.rows_of([own])  # the path as given, or in its text form
            if len(rows):
                break
        else:
            raise LookupError(f"{escape_path(path)}: not in the index or it has no embedding")
        vector = np.asarray(self.vectors.matrix[rows[0]], dtype=np.float32)
        ranking = self.vector_ranking(vector, filters, limit + 1)
        return self.hits([(i, s) for i, s in ranking if i != own], filters, limit)


@functools.cache
def _word_rankings() -> futures.ThreadPoolExecutor:
    return futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="word-ranking")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def _plain(value: Any) -> Any:
    """A stored value as the index was given it: dates back to the camera's wall clock
    (Tantivy returns them as UTC), facets as folder paths."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, tantivy.Facet):
        return unescape_path("/" + "/".join(value.to_path()))
    return value


def within_km(fields: dict[str, Any], latitude: float, longitude: float, km: float) -> bool:
    """Whether the image's GPS position lies within ``km`` of the point (haversine)."""
    lat, lon = fields.get("gps_latitude"), fields.get("gps_longitude")
    if lat is None or lon is None:
        return False
    p1, p2 = math.radians(latitude), math.radians(lat)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon - longitude) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a))) <= km


def runnable_mode(index: SearchIndex, mode: str) -> tuple[str, str | None]:
    """The mode a search runs in, and the one warning to give about it (None: none), decided
    before any model loads: text search never warns; hybrid search without image embeddings
    runs on words only and says why, once; semantic search without them fails at once
    (ModuleNotRunError) instead of after loading the CLIP text tower for nothing."""
    if mode not in MODES:
        raise SearchInputError(f"search mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "text" or index.vectors is not None:
        return mode, None
    if mode == "semantic":
        raise ModuleNotRunError(index.no_vectors_message("semantic search"))
    reason = index.no_vectors_message("meaning search").replace("meaning search needs", "no")
    return "text", f"words only, {reason}"


def clip_text_encoder(config: dict[str, Any]) -> TextEncoder:
    """The configured CLIP model's text tower (the model that made the image vectors)."""
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    embedder = ClipEmbedder(EmbeddingSettings.from_config(config))
    return lambda text: embedder.encode_text([text])[0]


def format_hits(hits: Sequence[Hit], width: int = 100) -> str:
    """A table: score, capture date, path, caption (cut to fit ``width``)."""
    if not hits:
        return "no matches"
    path_width = min(max(len(escape_path(h.key)) for h in hits), 60)
    lines = [f"{'score':>8}  {'date':<16}  {'path':<{path_width}}  caption"]
    for hit in hits:
        date = hit.fields.get("date")
        when = date.strftime("%Y-%m-%d %H:%M") if isinstance(date, datetime) else ""
        caption = str(hit.fields.get("caption", "")).replace("\n", " ")
        room = max(10, width - path_width - 30)
        if len(caption) > room:
            caption = caption[: room - 1] + "…"
        path = escape_path(hit.key)
        lines.append(f"{hit.score:8.4f}  {when:<16}  {path:<{path_width}}  {caption}")
    return "\n".join(lines)
