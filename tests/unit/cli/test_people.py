"""`imganalyzer people`: list, show, name, alias, merge and split on a small results folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imganalyzer.cli.main import build_parser
from imganalyzer.cli.people import add_people_parser
from tests.support.people_results import FakeResults


@pytest.fixture
def library(tmp_path: Path) -> FakeResults:
    fake = FakeResults(tmp_path)
    fake.add_shard({f"a/{i}.jpg": [0, 1] if i % 2 else [0] for i in range(6)})
    return fake


def test_cli_lists_names_merges_and_splits(
    library: FakeResults, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {library.library}\nresults: {library.results}\n")
    parser = build_parser()
    if "people" not in parser._subparsers._group_actions[0].choices:  # until cli.py wires it
        add_people_parser(parser._subparsers._group_actions[0])

    def run(*argv: str) -> str:
        args = parser.parse_args([*argv, "--config", str(config)])
        assert args.func(args) == 0
        return capsys.readouterr().out

    run("people", "update")
    listed = json.loads(run("people", "list", "--json"))
    assert sorted(p["n_faces"] for p in listed) == [3, 6]
    alice = next(p["id"] for p in listed if p["n_faces"] == 6)
    assert "Alice" in run("people", "name", str(alice), "Alice")
    run("people", "alias", str(alice), "Ali")
    shown = json.loads(run("people", "show", str(alice), "--json"))
    assert shown["name"] == "Alice" and shown["aliases"] == ["Ali"]
    face = shown["faces"][0]["face"]
    out = run("people", "split", str(alice), "--faces", face)
    new = int(out.split()[1].rstrip(":"))
    run("people", "merge", str(new), str(alice))
    assert json.loads(run("people", "show", str(new), "--json"))["id"] == alice
    args = parser.parse_args(["people", "show", "999", "--config", str(config)])
    assert args.func(args) == 1  # a one-line error, exit 1


def test_names_that_are_not_utf8_survive_the_people_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imganalyzer.cli.main import main

    fake = FakeResults(tmp_path)
    hostile = os.fsdecode(b"old/caf\xe9.jpg")
    fake.add_shard({hostile: [0], "a/0.jpg": [0], "a/1.jpg": [0]})
    fake.update(min_cluster_size=2)
    assert fake.person_of(hostile)  # people.json read back with the exact path
    (person,) = fake.person_of(hostile)
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {fake.library}\nresults: {fake.results}\n")
    assert main(["people", "show", str(person), "--config", str(config)]) == 0
    assert "old/caf\\xe9.jpg" in capsys.readouterr().out
    assert main(["people", "show", str(person), "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "old/caf\\xe9.jpg" in {face["path"] for face in shown["faces"]}


def test_people_before_the_faces_step_ran_say_how_to_get_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imganalyzer.cli.main import main
    from tests.support.results_library import ResultsLibrary, sample_photos

    lib = ResultsLibrary(tmp_path)
    lib.add_shard(sample_photos())  # faces rows, but no people step yet
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    assert main(["people", "list", "--config", str(config)]) == 0
    assert (
        capsys.readouterr().out == "no people yet: run the workflow with the faces module enabled\n"
    )
    assert main(["people", "show", "1", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("imganalyzer: no person 1")
