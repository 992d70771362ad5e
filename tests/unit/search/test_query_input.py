"""Hostile input and honest answers: range-checked options, queries Tantivy must not see,
names that are not UTF-8, and commands that say which module has not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from imganalyzer.catalog.manifests import escape_path
from imganalyzer.cli.main import main
from imganalyzer.layout import Layout
from imganalyzer.search.index import update_index
from imganalyzer.search.query import Filters, SearchIndex
from imganalyzer.search.query_input import (
    LIMIT_MAX,
    QUERY_NESTING_MAX,
    SearchInputError,
    check_query,
    nesting_depth,
    parse_date_bound,
    parse_limit,
    parse_near,
)
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

REPO = Path(__file__).resolve().parents[3]
CAFE = os.fsdecode(b"2023/d\xfcr/caf\xe9.jpg")  # written by a Windows-1252 machine


def _library(root: Path, photos: list[Photo], modules: tuple[str, ...] | None = None) -> Path:
    """A results library with only ``modules``' result files (all when None); its config."""
    lib = ResultsLibrary(root)
    lib.add_shard(photos)
    if modules is not None:
        for folder in lib.results.iterdir():
            if folder.name not in (*modules, "catalog"):
                for file in folder.iterdir():
                    file.unlink()
    update_index(lib.layout, lib.library, modules)
    config = root / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    return config


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = [*sample_photos(), Photo(CAFE, caption="a cup", vector=unit_vector(1))]
    return _library(tmp_path_factory.mktemp("full"), photos)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only metadata and technical ran."""
    return _library(tmp_path_factory.mktemp("bare"), sample_photos(), ("metadata", "technical"))


def _run(argv: list[str], config: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        status = main([*argv, "--config", str(config)])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "(" * 5000], "at most 1,000"),  # once a segfault
        (["search", "(" * 40 + "a"], f"at most {QUERY_NESTING_MAX}"),
        (["search", "0:*", "--mode", "text"], "field does not exist"),  # once a ValueError
        (["search", "x", "--limit", "0"], "between 1 and 10,000, got 0"),  # once a panic
        (["search", "x", "--limit", "-1"], "got -1"),  # once an OverflowError
        (["search", "x", "--limit", "100000000000"], "got 100,000,000,000"),  # 1.6 TB
        (["search", "x", "--limit", "ten"], "whole number"),
        (["search", "x", "--after", "2021-13"], "YYYY-MM-DD"),
        (["search", "x", "--after", "99999"], "YYYY-MM-DD"),
        (["search", "x", "--before", "0500"], "between the years"),
        (["search", "x", "--after", "2022", "--before", "2021"], "must come before"),
        (["search", "x", "--near", "1,2"], "LAT,LON,KM"),
        (["search", "x", "--near", "a,b,c"], "three numbers"),
        (["search", "x", "--near", "48,2,0"], "distance"),
        (["search", "x", "--near", "48,200,5"], "longitude"),
        (["search", "x", "--near", "nan,2,5"], "finite"),
        (["search", "x", "--min-aesthetic", "11"], "between 0 and 10"),
        (["search", "x", "--min-aesthetic", "inf"], "finite"),
        (["search", "x", "--min-sharpness", "-3"], "at least 0, got -3"),
        (["search", "x", "--camera", "c" * 300], "at most 200"),
        (["similar", "x.jpg", "--limit", "0"], "between 1 and 10,000"),
        (["index", "--threads", "0"], "between 1 and 64"),
    ],
)
def test_bad_options_get_one_line_errors(
    full: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    status, out, err = _run(argv, full, capsys)
    assert status == 2 and not out
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("imganalyzer")


def test_the_library_functions_check_their_arguments_too(full: Path) -> None:
    index = SearchIndex(Layout(full.parent / "results"))
    for limit in (0, -1, 10**11, 2.5, True, "3"):
        with pytest.raises(SearchInputError, match="--limit"):
            index.search("x", "text", limit=limit)
    with pytest.raises(SearchInputError, match="nests brackets 500 deep"):
        index.search("(" * 500, "text")
    with pytest.raises(SearchInputError, match="at most 1,000"):
        index.search("(" * 5000, "text")
    with pytest.raises(SearchInputError, match="mode"):
        index.search("x", "fuzzy")
    bad = [
        Filters(min_aesthetic=float("nan")),
        Filters(near=(0.0, 0.0, float("inf"))),
        Filters(after=datetime(1, 1, 1)),
        Filters(after=datetime(2022, 1, 1), before=datetime(2021, 1, 1)),
        Filters(camera=123),  # type: ignore[arg-type]
    ]
    for filters in bad:
        with pytest.raises(SearchInputError):
            index.search("", "text", filters)
    assert len(index.search("", "text", limit=LIMIT_MAX)) == 6
    # within the bounds, syntax errors are tolerated, not raised
    assert index.search('eiffel (tower "', "text")[0].key == "2021/paris/IMG_0001.jpg"
    assert index.search("(" * QUERY_NESTING_MAX + "eiffel", "text")


def test_parsers_and_nesting() -> None:
    assert parse_limit(" 7 ") == 7
    assert parse_date_bound("2021-06") == datetime(2021, 6, 1)
    assert parse_near("48.8,2.3,5") == (48.8, 2.3, 5.0)
    assert nesting_depth('(a "((((" (b))') == 2  # brackets in a phrase do not nest
    assert nesting_depth("[{(") == 3
    assert check_query("caf\udce9\x00") == "caf\\udce9 "  # Tantivy takes only valid text


def test_names_that_are_not_utf8_are_found_and_printed_in_their_text_form(
    full: Path, capsys: pytest.CaptureFixture
) -> None:
    index = SearchIndex(Layout(full.parent / "results"))
    assert [h.key for h in index.search("café", "text")] == [CAFE]
    assert [h.key for h in index.search("", "text", Filters(folder="2023/d\udcfcr"))] == [CAFE]
    assert index.search("", "text", Filters(folder="2023/d\\xfcr"))[0].key == CAFE
    for spelling in (CAFE, escape_path(CAFE)):
        assert CAFE not in [h.key for h in index.similar(spelling)]
    library = os.path.realpath(full.parent / "library")
    for spelling in ("./2022/home/cat.jpg", f"{library}/2022/home/cat.jpg"):
        status, out, err = _run(["similar", spelling, "--json"], full, capsys)
        assert status == 0, err
        assert "2022/home/cat.jpg" not in {hit["path"] for hit in json.loads(out)}
    status, _, err = _run(["similar", "/elsewhere/cat.jpg"], full, capsys)
    assert status == 1 and "not inside the library" in err
    status, out, _ = _run(["search", "café", "--mode", "text", "--json"], full, capsys)
    assert status == 0 and json.loads(out)[0]["path"] == "2023/d\\xfcr/caf\\xe9.jpg"
    status, out, _ = _run(["search", "café", "--mode", "text"], full, capsys)
    assert status == 0 and "2023/d\\xfcr/caf\\xe9.jpg" in out


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["search", "", "--mode", "text", "--has-text"], "objects, ocr or cloud module"),
        (["search", "", "--mode", "text", "--person", "alice"], "faces module"),
        (["search", "", "--mode", "text", "--min-aesthetic", "5"], "aesthetic module"),
        (["search", "tower", "--mode", "semantic"], "embedding module has not run"),
        (["similar", "2022/home/cat.jpg"], "embedding module has not run"),
    ],
)
def test_commands_needing_a_module_that_has_not_run_name_it(
    bare: Path, argv: list[str], module: str, capsys: pytest.CaptureFixture
) -> None:
    status, out, err = _run(argv, bare, capsys)
    assert status == 1 and not out
    assert module in err and "modules:" in err
    assert len(err.strip().splitlines()) == 1


def test_hybrid_search_without_embeddings_says_it_searched_words_only(
    bare: Path, capsys: pytest.CaptureFixture
) -> None:
    status, out, err = _run(["search", "canon"], bare, capsys)
    assert status == 0 and "2022/home/cat.jpg" in out
    assert "words only" in err and "embedding module has not run" in err


def test_person_filter_without_any_named_person_says_how_to_name_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photos = sample_photos()
    for photo in photos:
        photo.people = None
    config = _library(tmp_path, photos)
    status, out, err = _run(["search", "", "--mode", "text", "--person", "alice"], config, capsys)
    assert status == 1 and not out
    assert "no person has a name yet" in err and "people name" in err


def test_filters_work_when_their_module_ran(full: Path, capsys: pytest.CaptureFixture) -> None:
    status, out, err = _run(["search", "", "--mode", "text", "--person", "alice"], full, capsys)
    assert status == 0 and "IMG_0001" in out and not err


def test_export_never_writes_into_the_library(full: Path, capsys: pytest.CaptureFixture) -> None:
    inside = full.parent / "library" / "exported"
    status, _, err = _run(["export", str(inside)], full, capsys)
    assert status == 2 and "inside the photo library" in err
    assert not inside.exists()


@pytest.mark.parametrize(
    "argv", [["status"], ["search", "", "--mode", "text"], ["report"], ["people", "list"]]
)
def test_a_closed_pipe_ends_every_command_quietly(full: Path, argv: list[str]) -> None:
    command = [sys.executable, "-m", "imganalyzer.cli", *argv, "--config", str(full)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=full.parent, env=env
    )
    process.stdout.close()  # the reader has gone, as `| head` does after its lines
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err.decode(), err.decode()
    assert process.returncode in (0, 141)
