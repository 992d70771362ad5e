"""`imganalyzer duplicates`: the groups of groups.json while it is current, else computed."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import yaml

import imganalyzer.steps.duplicates as duplicates
from imganalyzer.cli.duplicates import add_duplicates_parser
from imganalyzer.layout import Layout
from imganalyzer.steps.duplicates import write_duplicates
from tests.support.duplicates_library import (
    DIFFERENT,
    RAW,
    SETTINGS,
    Analysed,
    analysed_library,
    copied,
)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return analysed_library(tmp_path_factory.mktemp("dups"))


@pytest.fixture
def fresh(analysed: Analysed, tmp_path: Path) -> Analysed:
    """A copy of the results (so a test may add files to it) over the same library."""
    return copied(analysed, tmp_path)


def run_cli(argv: list[str], capsys) -> str:
    parser = argparse.ArgumentParser()
    add_duplicates_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_cli_reads_current_groups_json_and_prints_json(
    fresh: Analysed, capsys, monkeypatch
) -> None:
    config = fresh.results.parent / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "library": str(fresh.library),
                "results": str(fresh.results),
                "modules": ["metadata", "technical", "duplicates"],
            }
        )
    )
    out_json = fresh.results / "duplicates" / "groups.json"
    written = write_duplicates(
        Layout(fresh.results), fresh.library, out_json, SETTINGS, use_clip=False
    )
    monkeypatch.setattr(duplicates, "find_duplicates", lambda *a, **k: pytest.fail("recomputed"))
    printed = json.loads(run_cli(["duplicates", "--config", str(config), "--json"], capsys))
    assert printed == [g.as_dict() for g in written.groups]
    exact = json.loads(
        run_cli(["duplicates", "--config", str(config), "--json", "--kind", "exact"], capsys)
    )
    assert [g["kind"] for g in exact] == ["exact"]
    text = run_cli(["duplicates", "--config", str(config)], capsys)
    assert f"* {RAW}" in text and text.count("group") >= 3
    # An edited photo makes groups.json outdated: the command computes the groups again.
    photo = fresh.library / DIFFERENT[3]
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        with pytest.raises(pytest.fail.Exception, match="recomputed"):
            run_cli(["duplicates", "--config", str(config), "--json"], capsys)
    finally:
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cli_says_the_duplicates_module_has_not_run(tmp_path: Path, capsys) -> None:
    from imganalyzer.cli.main import main

    library, results = tmp_path / "library", tmp_path / "results"
    library.mkdir()
    (library / "a.jpg").write_bytes(b"same bytes")
    (library / "b.jpg").write_bytes(b"same bytes")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"library": str(library), "results": str(results)}))
    assert main(["duplicates", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "duplicates module, which has not run" in captured.err and not captured.out
    assert "no duplicates found" not in captured.out
