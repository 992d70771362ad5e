"""The search filters on the browse table's columns give exactly Tantivy's answer."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import imganalyzer.search.passing as passing_module
import imganalyzer.search.query as query_module
from imganalyzer.search import vector_scan
from imganalyzer.search.column_filters import has_phrase, tokens
from imganalyzer.search.index import update_index
from imganalyzer.search.query import Filters, SearchIndex, checked_filters
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

CAMERAS = [("Canon", "Canon EOS R5"), ("NIKON CORPORATION", "NIKON Z 6_2"), ("FUJIFILM", "X-T4"),
           ("Apple", "iPhone 13"), (None, None)]  # fmt: skip
PLACES = [("Paris", "Île-de-France", "France"), ("Lisbon", "Lisboa", "Portugal"),
          ("São Paulo", None, "Brazil"), (None, None, None)]  # fmt: skip
PEOPLE = [None, ["Alice"], ["Bob"], ["Alice", "Bob"], ["Carol Ann"]]


def random_photos(n: int) -> list[Photo]:
    rng = np.random.default_rng(7)
    photos = []
    for i in range(n):
        make, model = CAMERAS[i % len(CAMERAS)]
        town, region, country = PLACES[i % len(PLACES)]
        lens = ["XF23mmF2 R WR", "RF24-105mm F4 L", None][i % 3]
        metadata = {"make": make, "model": model, "lens": lens, "place": town, "region": region,
                    "country": country}  # fmt: skip
        if i % 6:
            metadata["datetime_original"] = f"20{15 + i % 9}-0{1 + i % 9}-1{i % 9}T1{i % 10}:00:00"
        if i % 4:
            metadata["gps_latitude"] = float(rng.uniform(-60, 70))
            metadata["gps_longitude"] = float(rng.uniform(-180, 180))
        photos.append(
            Photo(
                f"{2015 + i % 5}/{['paris', 'home', 'a b'][i % 3]}/IMG_{i:04d}.jpg",
                metadata={k: v for k, v in metadata.items() if v is not None},
                technical={"sharpness": float(rng.uniform(0, 200))},
                aesthetic=float(rng.uniform(1, 9)) if i % 7 else None,
                caption=f"photo {i}",
                ocr="some text" if i % 5 == 0 else None,
                people=PEOPLE[i % len(PEOPLE)],
                vector=unit_vector(100 + i) if i % 9 else None,
            )
        )
    return photos


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    lib = ResultsLibrary(Path(tmp_path_factory.mktemp("columns")))
    lib.add_shard(sample_photos())
    lib.add_shard(random_photos(240))
    update_index(lib.layout, lib.library)
    return SearchIndex(lib.layout)


FILTERS = [
    Filters(camera="canon"),
    Filters(camera="Canon EOS"),
    Filters(camera="canon canon"),
    Filters(camera="z 6"),
    Filters(camera="6_2"),
    Filters(camera="X-T4"),
    Filters(camera="t4 x"),
    Filters(lens="XF23mmF2"),
    Filters(lens="f4 l"),
    Filters(place="île-de-france"),
    Filters(place="france"),
    Filters(place="São"),
    Filters(place="sao"),
    Filters(person="alice"),
    Filters(person="alice bob"),
    Filters(person="carol ann"),
    Filters(person="ann carol"),
    Filters(after=datetime(2019, 1, 1)),
    Filters(before=datetime(2018, 5, 13)),
    Filters(after=datetime(2017, 1, 1), before=datetime(2020, 1, 1)),
    Filters(min_aesthetic=5.0),
    Filters(min_sharpness=100.0),
    Filters(has_text=True),
    Filters(near=(48.8, 2.3, 3000.0)),
    Filters(near=(0.0, 179.0, 2000.0)),
    Filters(folder="2016"),
    Filters(folder="2017/paris/"),
    Filters(folder="2018/a b"),
    Filters(camera="canon", after=datetime(2016, 6, 1), min_aesthetic=3.0, person="bob"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
def test_column_filter_matches_tantivy(index: SearchIndex, filters: Filters) -> None:
    filters = checked_filters(filters)
    columns = index.filter_columns
    assert columns is not None
    mask = columns.mask(filters)
    assert mask is not None
    from_columns = {int(i) for i in columns.table.key_id[mask]}
    query = index.filter_query(filters)
    assert query is not None
    hits = index.searcher.search(query, index.searcher.num_docs, count=False).hits
    from_tantivy = set(index._key_ids([address for _, address in hits]))
    assert from_columns == from_tantivy
    # words in another order; no accent folding (as Tantivy); the make is not repeated
    empty = filters.camera in ("t4 x", "canon canon") or filters.person == "ann carol"
    empty = empty or filters.place == "sao"
    assert (len(from_tantivy) == 0) == empty and len(from_tantivy) < index.searcher.num_docs


@pytest.fixture(params=["exact scan", "int8 codes"])
def codes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of ranking: every row scored exactly (a small library), or the int8 codes
    first (a large one; here from the first row on)."""
    if request.param == "int8 codes":
        monkeypatch.setattr(vector_scan, "EXACT_SCAN_MAX", 0)
    return request.param == "int8 codes"


@pytest.mark.parametrize(
    "filters", [Filters(camera="canon", min_aesthetic=2.0), Filters(min_sharpness=10.0)], ids=repr
)
def test_filtered_semantic_ranking_is_the_exact_one(
    index: SearchIndex, filters: Filters, codes: bool
) -> None:
    """Ranking only the rows that pass (the columns) gives the ranking of Tantivy's filter
    (which checks the best rows in batches)."""
    vector = unit_vector(5).astype(np.float32)
    filters = checked_filters(filters)
    fast = index.vector_ranking(vector, filters, 20)
    columns = index.__dict__.pop("filter_columns")
    index.__dict__["filter_columns"] = None  # the Tantivy path
    try:
        slow = index.vector_ranking(vector, filters, 20)
    finally:
        index.__dict__["filter_columns"] = columns
    assert [i for i, _ in fast] == [i for i, _ in slow] and len(fast) == 20
    assert np.allclose([s for _, s in fast], [s for _, s in slow])


@pytest.mark.parametrize("filters", [Filters(), *FILTERS[::3]], ids=repr)
def test_ranking_with_the_codes_is_the_exact_scan(
    index: SearchIndex, filters: Filters, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same images in the same order with the same scores as scoring every vector."""
    assert index.vectors is not None and index.vectors.codes is not None
    filters = checked_filters(filters)
    monkeypatch.setattr(vector_scan, "EXACT_SCAN_MAX", 0)
    for seed in range(3):
        vector = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
        with_codes = index.vector_ranking(vector, filters, 25)
        with monkeypatch.context() as without:
            without.setattr(index.vectors, "codes", None)
            assert index.vector_ranking(vector, filters, 25) == with_codes


def test_what_a_filter_passes_is_kept_for_the_next_query(
    index: SearchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    canon = checked_filters(Filters(camera="canon"))
    first = index._passing_of(canon)
    assert first is not None and index._passing_of(canon) is first
    monkeypatch.setattr(passing_module, "KEPT_BYTES", 0)  # room for one filter
    assert index._passing_of(checked_filters(Filters(camera="X-T4"))) is not None
    again = index._passing_of(canon)
    assert again is not first and np.array_equal(again.rows.rows, first.rows.rows)
    assert np.array_equal(again.keys, first.keys) and len(first.keys) > len(first.rows.rows)


@pytest.mark.parametrize("filters", FILTERS[::2], ids=repr)
def test_words_ranked_alone_then_cut_are_tantivys_filtered_ranking(
    index: SearchIndex, filters: Filters, monkeypatch: pytest.MonkeyPatch
) -> None:
    filters = checked_filters(filters)
    cuts = []
    words_cut = query_module.words_cut
    monkeypatch.setattr(
        query_module, "words_cut", lambda *args: cuts.append(words_cut(*args)) or cuts[-1]
    )
    for text in ("photo", "photo 7", "paris", "canon photo", "home 2016", "eos r5 a"):
        for limit in (1, 5, 40):
            expected = index._ranked(text, index.text_query(text, filters), limit)
            assert index.text_ranking(text, filters, limit) == expected, (text, limit)
    if len(index._passing_of(filters).keys):
        assert any(cut for cut in cuts)  # the words' ranking answered, at least once


def test_tokens_follow_tantivys_default_analyser() -> None:
    assert [t for _, t in tokens("NIKON Z 6_2 Île-de-France")] == [
        "nikon", "z", "6", "2", "île", "de", "france",
    ]  # fmt: skip
    assert tokens("a" * 40 + " b") == [(1, "b")]  # too long: dropped, its position kept
    assert has_phrase("Canon Canon EOS R5", tokens("canon eos"))
    assert not has_phrase("Canon Canon EOS R5", tokens("eos canon"))
