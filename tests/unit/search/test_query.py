from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import imganalyzer.search.query as search_module
from imganalyzer.cli.main import main
from imganalyzer.search.index import update_index
from imganalyzer.search.query import (
    Filters,
    ModuleNotRunError,
    SearchIndex,
    parse_date_bound,
    parse_near,
    reciprocal_rank_fusion,
    runnable_mode,
)
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

PHOTOS = {p.path: p for p in sample_photos()}
EIFFEL, LOUVRE, CAR, RECEIPT, SCAN = PHOTOS


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path_factory.mktemp("search"))
    photos = sample_photos()
    lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    update_index(lib.layout, lib.library)
    return lib


@pytest.fixture(scope="module")
def index(library: ResultsLibrary) -> SearchIndex:
    return SearchIndex(library.layout)


def paths(hits) -> list[str]:
    return [hit.key for hit in hits]


def vector_of(path: str) -> np.ndarray:
    return PHOTOS[path].vector.astype(np.float32)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("eiffel tower", EIFFEL),  # caption
        ("louvre", LOUVRE),  # OCR text
        ("total eur", RECEIPT),  # OCR text
        ("canon", CAR),  # camera make (EXIF)
        ("X-T4 museum", LOUVRE),  # model and caption: both words count
        ("portrait", SCAN),
        ("receipt", RECEIPT),  # the file name
    ],
)
def test_text_query_finds_the_image_holding_the_words(
    index: SearchIndex, query: str, expected: str
) -> None:
    assert paths(index.search(query, mode="text"))[0] == expected


def test_caption_counts_more_than_the_folder(index: SearchIndex) -> None:
    # "paris" is in two folders; "sunset" only in one caption: the caption match leads.
    assert paths(index.search("paris sunset", mode="text"))[0] == EIFFEL


def test_query_syntax_errors_are_tolerated(index: SearchIndex) -> None:
    assert paths(index.search('eiffel (tower "', mode="text"))[0] == EIFFEL


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(camera="x-t4"), {EIFFEL, LOUVRE}),
        (Filters(camera="Canon EOS R5"), {CAR}),
        (Filters(camera="EOS X-T4"), set()),
        (Filters(lens="XF23mm"), set()),  # a whole word of the lens name is needed
        (Filters(lens="XF23mmF2"), {EIFFEL}),
        (Filters(person="alice"), {EIFFEL, SCAN}),
        (Filters(person="bob"), {CAR, SCAN}),
        (Filters(has_text=True), {LOUVRE, RECEIPT}),
        (Filters(min_aesthetic=5.0), {EIFFEL, CAR}),
        (Filters(min_sharpness=60.0), {EIFFEL, CAR, RECEIPT}),
        (Filters(after=datetime(2022, 1, 1)), {CAR, RECEIPT}),
        (Filters(before=datetime(2021, 6, 6)), {EIFFEL}),
        (Filters(after=datetime(2021, 6, 6), before=datetime(2022, 2, 1)), {LOUVRE, CAR}),
        (Filters(near=(48.8584, 2.2945, 1.0)), {EIFFEL}),
        (Filters(near=(48.8584, 2.2945, 5.0)), {EIFFEL, LOUVRE}),
        (Filters(folder="2021"), {EIFFEL, LOUVRE}),
        (Filters(folder="/2022/home/"), {CAR, RECEIPT}),
        (Filters(folder="2022/ho"), set()),
        (Filters(person="alice", has_text=True), set()),
    ],
)
def test_filters_narrow_text_listing_and_semantic_results(
    index: SearchIndex, filters: Filters, expected: set[str]
) -> None:
    assert set(paths(index.search("", mode="text", filters=filters))) == expected
    semantic = index.search(
        "x", mode="semantic", filters=filters, encode_text=lambda _: vector_of(CAR)
    )
    assert set(paths(semantic)) == expected - {SCAN}  # the scan has no embedding


def test_semantic_search_returns_the_image_whose_vector_is_the_query(index: SearchIndex) -> None:
    for path, photo in PHOTOS.items():
        if photo.vector is None:
            continue
        hits = index.search("ignored", mode="semantic", encode_text=lambda _, p=path: vector_of(p))
        assert hits[0].key == path
        assert hits[0].score == pytest.approx(1.0, abs=1e-2)
        assert len(hits) == 4


def test_semantic_search_with_the_clip_text_tower(tmp_path: Path, tiny_clip_weights: Path) -> None:
    """The real encoder path (a tiny open_clip model with random weights): an image whose
    vector is the text embedding of its caption comes first for that caption."""
    from imganalyzer.config import validate_config
    from imganalyzer.search.query import clip_text_encoder
    from tests.unit.conftest import TINY_CLIP

    embedding = {"model": TINY_CLIP, "pretrained": str(tiny_clip_weights)}
    config = {"library": ".", "modules": ["embedding"], "embedding": embedding, "device": "cpu"}
    encode = clip_text_encoder(validate_config(config, check_paths=False))
    photos = sample_photos()[:4]
    for photo in photos:
        photo.vector = encode(photo.caption).astype(np.float16)
    lib = ResultsLibrary(tmp_path)
    lib.add_shard(photos)
    update_index(lib.layout, lib.library)
    index = SearchIndex(lib.layout)
    for photo in photos:
        assert paths(index.search(photo.caption, "semantic", encode_text=encode))[0] == photo.path


def test_broad_filter_checks_candidates_in_batches(
    index: SearchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "FILTER_ROWS_MAX", 0)
    hits = index.search(
        "x",
        mode="semantic",
        filters=Filters(has_text=True),
        limit=1,
        encode_text=lambda _: vector_of(RECEIPT),
    )
    assert paths(hits) == [RECEIPT]
    hits = index.search(
        "x", mode="semantic", filters=Filters(person="alice"), encode_text=lambda _: vector_of(CAR)
    )
    assert paths(hits) == [EIFFEL]


def test_hybrid_fuses_both_rankings(index: SearchIndex) -> None:
    # The text matches the receipt; the vector is the car's: both come first in one list.
    hits = index.search("total eur", mode="hybrid", encode_text=lambda _: vector_of(CAR))
    assert paths(hits)[:2] == [RECEIPT, CAR]
    assert hits[1].score == pytest.approx(1 / 61)


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 2, 4]])
    assert [item for item, _ in fused] == [3, 2, 1, 4]
    scores = dict(fused)
    assert scores[2] == pytest.approx(2 / 62)
    assert scores[1] == pytest.approx(1 / 61)
    assert scores[4] == pytest.approx(1 / 63)


def test_similar_finds_the_nearest_other_image(index: SearchIndex) -> None:
    hits = index.similar(EIFFEL, limit=3)
    assert EIFFEL not in paths(hits)
    others = [p for p in PHOTOS if p != EIFFEL and PHOTOS[p].vector is not None]
    cosine = {p: float(vector_of(p) @ vector_of(EIFFEL)) for p in others}
    assert paths(hits) == sorted(others, key=lambda p: -cosine[p])[:3]
    with pytest.raises(LookupError):
        index.similar(SCAN)


def test_hits_carry_the_stored_fields(index: SearchIndex) -> None:
    hit = index.search("eiffel", mode="text", limit=1)[0]
    data = hit.as_dict()
    assert data["path"] == EIFFEL
    assert data["date"] == "2021-06-05T18:30:00"
    assert data["camera"] == "FUJIFILM X-T4"
    assert data["people"] == "Alice"
    json.dumps(data)


def test_hits_read_only_the_documents_they_show(
    index: SearchIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored documents are read in ranking order, a page at a time, not the whole fused
    ranking; an id without a document (here: unknown) is skipped."""
    ranking = index.vector_ranking(vector_of(CAR), Filters(), 4)
    asked: list[list[int]] = []
    documents = index.documents
    monkeypatch.setattr(index, "documents", lambda ids: asked.append(list(ids)) or documents(ids))
    unknown = (12345, 1.0)

    hits = index.hits([unknown, *ranking], Filters(), 2)

    ids = [i for i, _ in ranking]
    assert [hit.key for hit in hits] == [h.key for h in index.hits(ranking[:2], Filters(), 2)]
    assert asked[:2] == [[unknown[0], ids[0]], [ids[1], ids[2]]] and len(asked) == 3


def test_parse_date_bound_and_near() -> None:
    assert parse_date_bound("2021") == datetime(2021, 1, 1)
    assert parse_date_bound("2021-06") == datetime(2021, 6, 1)
    assert parse_date_bound("2021-06-05") == datetime(2021, 6, 5)
    assert parse_near("48.8,2.3,5") == (48.8, 2.3, 5.0)
    with pytest.raises(ValueError):
        parse_near("48.8,2.3")


def test_cli_search_prints_json_and_a_table(
    library: ResultsLibrary, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {library.library}\nresults: {library.results}\n")
    args = ["--config", str(config)]
    assert main(["search", "eiffel", "--mode", "text", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == EIFFEL
    assert main(["search", "", "--mode", "text", "--has-text", "--after", "2022", *args]) == 0
    out = capsys.readouterr().out
    assert RECEIPT in out and LOUVRE not in out
    assert main(["similar", EIFFEL, "--json", "--limit", "1", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_cli_index_builds_then_reports_nothing_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lib = ResultsLibrary(tmp_path)
    lib.add_shard(sample_photos())
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    assert main(["index", "--config", str(config)]) == 0
    assert "5 documents (rebuilt: 5 added" in capsys.readouterr().out
    assert main(["index", "--config", str(config)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["search", "eiffel", "--mode", "text", "--config", str(config)]) == 0
    assert "no matches" in capsys.readouterr().out  # captions are not a configured module


def test_unit_vector_helper_is_normalised() -> None:
    assert np.linalg.norm(unit_vector(5).astype(np.float32)) == pytest.approx(1.0, abs=1e-3)


def test_place_from_gps_is_searchable_and_filters(tmp_path: Path, capsys) -> None:
    from imganalyzer.decode.metadata import read_metadata
    from imganalyzer.example.writers import ExifInfo, write_jpeg

    photo = tmp_path / "lyon.jpg"
    write_jpeg(photo, np.zeros((32, 48, 3), np.uint8), ExifInfo(gps=(45.7597, 4.8422, None)))
    metadata = read_metadata(photo)
    assert (metadata["place"], metadata["country"]) == ("Lyon", "France")
    lib = ResultsLibrary(tmp_path / "lib")
    lib.add_shard([Photo("2023/trip/IMG_1.jpg", metadata=metadata), *sample_photos()[2:4]])
    update_index(lib.layout, lib.library)
    index = SearchIndex(lib.layout)
    assert paths(index.search("lyon", mode="text")) == ["2023/trip/IMG_1.jpg"]
    assert paths(index.search("", mode="text", filters=Filters(place="france"))) == [
        "2023/trip/IMG_1.jpg"
    ]
    assert paths(index.search("", mode="text", filters=Filters(place="tokyo"))) == []
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    args = ["--config", str(config), "--mode", "text"]
    assert main(["search", "", "--place", "Lyon", "--json", *args]) == 0
    assert [hit["path"] for hit in json.loads(capsys.readouterr().out)] == ["2023/trip/IMG_1.jpg"]


@pytest.fixture(scope="module")
def words_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultsLibrary, Path]:
    """A library indexed without embeddings (the embedding module never ran), and its config."""
    root = tmp_path_factory.mktemp("words_only")
    lib = ResultsLibrary(root)
    lib.add_shard(sample_photos())
    for leftover in (lib.results / "embedding").glob("*"):
        leftover.unlink()
    update_index(lib.layout, lib.library, ["metadata", "captions"])
    config = root / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\nmodules: [metadata]\n")
    return lib, config


def test_runnable_mode_decides_before_any_model_loads(index: SearchIndex, words_only) -> None:
    without = SearchIndex(words_only[0].layout)
    assert runnable_mode(index, "hybrid") == ("hybrid", None)
    assert runnable_mode(index, "semantic") == ("semantic", None)
    assert runnable_mode(without, "text") == ("text", None)
    mode, warning = runnable_mode(without, "hybrid")
    assert mode == "text" and warning.startswith("words only, no image embeddings")
    with pytest.raises(ModuleNotRunError, match="semantic search needs image embeddings"):
        runnable_mode(without, "semantic")
    with pytest.raises(ValueError, match="choose one of"):
        runnable_mode(without, "fuzzy")


@pytest.mark.parametrize(
    ("mode", "code", "warnings"),
    [
        ("text", 0, []),
        ("hybrid", 0, ["imganalyzer: words only, no image embeddings: the embedding module"]),
        ("semantic", 1, ["imganalyzer: semantic search needs image embeddings: the embedding"]),
    ],
)
def test_cli_search_without_embeddings_warns_once_and_only_where_they_are_needed(
    words_only, capsys, monkeypatch, mode: str, code: int, warnings: list[str]
) -> None:
    def no_model(config):
        pytest.fail("the CLIP text tower was loaded")

    monkeypatch.setattr(search_module, "clip_text_encoder", no_model)
    assert main(["search", "eiffel", "--mode", mode, "--config", str(words_only[1])]) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == len(warnings)
    assert all(line.startswith(w) for line, w in zip(lines, warnings, strict=True))
    assert (EIFFEL in captured.out) == (code == 0)
