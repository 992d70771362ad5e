"""The search page and its JSON twin: the query language, hybrid ranking and filters of
`imganalyzer search` (the same SearchIndex calls), a grid of stored thumbnails, pages."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imganalyzer.search.browse import FAILED, NO_THUMBNAIL, BrowseTable
from imganalyzer.search.documents import key_id
from imganalyzer.search.query import (
    MODES,
    Filters,
    Hit,
    SearchIndex,
    TextEncoder,
    parse_date_bound,
)
from imganalyzer.web.data import ResultsData
from imganalyzer.web.selection import aspect_class
from imganalyzer.web.view import render

PER_PAGE = 48
MAX_PAGE = 200  # deeper than anyone pages; bounds the ranking depth a request can ask for
FILTER_FIELDS = {f.name for f in dataclasses.fields(Filters)}
TEXT_FILTERS = ("camera", "lens", "person", "place", "folder")
NUMBER_FILTERS = ("min_aesthetic", "min_sharpness")


@dataclass
class SearchResult:
    query: str
    mode: str
    page: int
    hits: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None  # images that match (text mode), else None
    more: bool = False
    error: str | None = None
    paths: list[str] = field(default_factory=list)  # the whole ranking, for the viewer
    semantic_off: str | None = None  # why the semantic and hybrid modes are unavailable

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_filters(params: dict[str, str]) -> Filters:
    """Filters from form fields; a bad value raises ValueError naming the field."""
    values: dict[str, Any] = {}
    for name in ("after", "before"):
        if params.get(name, "").strip():
            try:
                values[name] = parse_date_bound(params[name])
            except ValueError as error:
                raise ValueError(f"{name}: not a date (YYYY, YYYY-MM or YYYY-MM-DD)") from error
    for name in TEXT_FILTERS:
        if name in FILTER_FIELDS and params.get(name, "").strip():
            values[name] = params[name].strip()
    for name in NUMBER_FILTERS:
        if params.get(name, "").strip():
            try:
                values[name] = float(params[name])
            except ValueError as error:
                raise ValueError(f"{name.replace('_', ' ')}: not a number") from error
    values["has_text"] = params.get("has_text") in ("1", "on", "true")
    return Filters(**values)


class TextEncoders:
    """The CLIP text tower, loaded on the first semantic query and kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._encoder: TextEncoder | None = None
        self.failure: str | None = None

    def get(self, config: dict[str, Any]) -> TextEncoder | None:
        with self._lock:
            if self._encoder is None and self.failure is None:
                try:
                    from imganalyzer.search.query import clip_text_encoder

                    encoder = clip_text_encoder(config)
                    encoder("a photo")  # loads the model now, so that failing here is final
                    self._encoder = encoder
                except Exception as error:  # a missing model must not break text search
                    reason = str(error).splitlines()[0][:160] if str(error) else type(error)
                    self.failure = f"the CLIP model could not be loaded ({reason})"
            return self._encoder


class SearchCache:
    """The rankings of the last searches (the viewer walks through them with its arrow keys
    without searching again), each kept with the index it came from: a reopened index (a run
    or `imganalyzer index` changed it) answers afresh."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._hits: OrderedDict[tuple, tuple[SearchIndex, list[Hit]]] = OrderedDict()

    def get(self, index: SearchIndex, key: tuple, compute: Callable[[], list[Hit]]) -> list[Hit]:
        with self._lock:
            found = self._hits.get(key)
            if found is not None and found[0] is index:
                self._hits.move_to_end(key)
                return found[1]
        hits = compute()
        with self._lock:
            self._hits[key] = (index, hits)
            while len(self._hits) > self.size:
                self._hits.popitem(last=False)
        return hits


def run_search(
    data: ResultsData,
    encoders: TextEncoders,
    params: dict[str, str],
    cache: SearchCache | None = None,
    context: bool = True,
    table: BrowseTable | None = None,
) -> SearchResult:
    query = params.get("q", "")
    mode = params.get("mode", "hybrid")
    try:
        page = min(max(int(params.get("page", "1")), 1), MAX_PAGE)
    except ValueError:
        page = 1
    result = SearchResult(query, mode if mode in MODES else "hybrid", page)
    try:
        index = data.index()
    except LookupError as error:
        result.error = str(error)
        return result
    if index.vectors is None:
        result.semantic_off = "the index holds no embeddings (enable the embedding module)"
    elif encoders.failure:
        result.semantic_off = encoders.failure
    try:
        filters = parse_filters(params)
        encoder = None
        if result.mode != "text" and result.semantic_off is None and not params.get("similar"):
            encoder = encoders.get(data.config)
            result.semantic_off = encoders.failure
        if result.semantic_off is not None:
            result.mode = "text"
        limit = page * PER_PAGE + 1
        similar = params.get("similar", "")
        key = (query, result.mode, similar, repr(filters), limit)

        def compute() -> list[Hit]:
            if similar:
                return index.similar(similar, filters, limit)
            return index.search(query, result.mode, filters, limit, encoder)

        hits = cache.get(index, key, compute) if cache is not None else compute()
        if result.mode == "text" and not similar:
            result.total = index.count(query, filters)
    except (ValueError, LookupError) as error:  # bad input; a filter whose module never ran
        result.error = str(error)
        return result
    window = hits[(page - 1) * PER_PAGE : page * PER_PAGE]
    result.more = len(hits) > page * PER_PAGE
    result.paths = [hit.key for hit in hits]
    carried = [("from", "search")] + [(k, v) for k, v in sorted(params.items()) if v]
    viewer_query = urlencode(carried) if context else ""
    result.hits = [hit_card(data, hit, viewer_query, table) for hit in window]
    return result


def hit_card(
    data: ResultsData, hit: Hit, context: str = "", table: BrowseTable | None = None
) -> dict[str, Any]:
    """What a grid cell shows: the path, a thumbnail address (None for an image that could
    not be decoded: the grid shows its error kind instead), a caption and the date."""
    fields = hit.as_dict()
    location = data.locate(hit.key, hit.fields.get("shard"))
    width, height = hit.fields.get("width"), hit.fields.get("height")
    failed = hit.fields.get("status") == "error"
    thumbnail = data.thumbnail_url(location)
    error = None
    position = table.position_of(key_id(hit.key)) if table is not None else None
    if table is not None and position is not None:
        flags = int(table.flags[position])
        error = table.value("error", position) if flags & FAILED else None
        thumbnail = None if flags & NO_THUMBNAIL else thumbnail
    elif failed:
        error = str(hit.fields.get("errors", "")).split(":", 1)[0] + " failed"
        if location is not None and data.thumbnail(location.shard, location.row) is None:
            thumbnail = None
    return {
        "path": hit.key,
        "id": f"{key_id(hit.key):x}",
        "score": round(hit.score, 4),
        "thumbnail": thumbnail,
        "aspect": aspect_class(width / height) if width and height and thumbnail else "r100",
        "error": error,
        "file_time": False,
        "href": f"/view?{urlencode([('path', hit.key)])}" + (f"&{context}" if context else ""),
        "caption": fields.get("caption") or fields.get("description"),
        "date": fields.get("date"),
        "camera": fields.get("camera"),
    }


def search_paths(request: Request, params: dict[str, str]) -> list[str]:
    """The paths of the search's ranking (as far as its page reaches), from the cache."""
    state = request.app.state
    cache = state.search_cache
    return run_search(state.data, state.encoders, params, cache, False, state.browse.table()).paths


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if len(v) <= 1000}


def search_page(request: Request) -> Response:
    params = _params(request)
    state = request.app.state
    result = run_search(
        state.data, state.encoders, params, state.search_cache, True, state.browse.table()
    )
    return render(
        request,
        "search.html",
        result=result,
        params=params,
        modes=MODES,
        has_place="place" in FILTER_FIELDS,
    )


def search_api(request: Request) -> Response:
    state = request.app.state
    result = run_search(state.data, state.encoders, _params(request), state.search_cache, False)
    body = result.as_dict()
    body.pop("paths")
    return JSONResponse(body, status_code=400 if result.error else 200)


def routes() -> list[Route]:
    return [Route("/search", search_page), Route("/api/search", search_api)]
