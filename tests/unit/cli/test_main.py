"""The `imganalyzer` command line: argument errors name the option on one line (exit 2), a
config error is one line (exit 2), and the commands that need no index (`report`,
`example`, `models list`, `status`) on a generated results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imganalyzer.cli.main import _library_relative, build_parser, main
from tests.support.results_library import ResultsLibrary, sample_photos


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one shard of five photos; its config file."""
    root = tmp_path_factory.mktemp("cli")
    lib = ResultsLibrary(root)
    lib.add_shard(sample_photos())
    config = root / "config.yaml"
    config.write_text(
        f"library: {lib.library}\nresults: {lib.results}\nmodules: [metadata, technical]\n"
    )
    return config


@pytest.mark.parametrize(
    ("argv", "option", "message"),
    [
        (["serve", "--port", "http"], "--port", "invalid int value: 'http'"),
        (["export", "out", "--format", "xlsx"], "--format", "invalid choice: 'xlsx'"),
        (["search", "x", "--mode", "fuzzy"], "--mode", "invalid choice: 'fuzzy'"),
        (["search", "x", "--limit", "many"], "--limit", "whole number"),
        (["index", "--threads", "65"], "--threads", "between 1 and 64, got 65"),
        (["similar", "a.jpg", "--near", "1,2"], "--near", "LAT,LON,KM"),
        (["people", "name", "one", "Alice"], "id", "invalid int value: 'one'"),
        (["status", "--colour"], "--colour", "unrecognized arguments"),
    ],
)
def test_an_argument_error_names_its_option_on_one_line(
    argv: list[str], option: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    status, out, err = run(argv, capsys)
    last = err.strip().splitlines()[-1]
    assert status == 2 and not out
    assert last.startswith("imganalyzer") and option in last and message in last


def test_a_command_or_sub_command_that_is_missing_or_unknown_is_named(
    capsys: pytest.CaptureFixture,
) -> None:
    status, _, err = run([], capsys)
    assert status == 2 and "the following arguments are required: command" in err
    status, _, err = run(["models"], capsys)
    assert status == 2 and "models_command" in err
    status, _, err = run(["reindex"], capsys)
    assert status == 2 and "invalid choice: 'reindex'" in err


def test_control_characters_in_a_bad_argument_stay_on_one_line(
    capsys: pytest.CaptureFixture,
) -> None:
    status, _, err = run(["export", "out", "--format", "csv\r\x1b[2Jxlsx"], capsys)
    last = err.strip().splitlines()[-1]  # after the usage lines
    assert status == 2 and "--format" in last and "'csv\\r\\x1b[2Jxlsx'" in last
    assert "\r" not in err and "\x1b" not in err


def test_a_missing_config_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMGANALYZER_RESULTS", raising=False)
    status, out, err = run(["status", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert (status, out) == (2, "")
    assert err.startswith(f"imganalyzer: config file not found: {tmp_path / 'nope.yaml'} (")
    assert "--results" in err and "IMGANALYZER_RESULTS" in err and err.count("\n") == 1


def test_report_without_benchmarks_says_so(generated: Path, capsys) -> None:
    status, out, _ = run(["report", "--config", str(generated)], capsys)
    assert status == 0 and out.strip() == "no benchmark files yet: run snakemake"
    status, out, _ = run(["report", "--json", "--config", str(generated)], capsys)
    assert status == 0 and json.loads(out) == []


def test_status_counts_the_generated_folder(generated: Path, capsys) -> None:
    status, out, _ = run(["status", "--json", "--config", str(generated)], capsys)
    report = json.loads(out)
    assert status == 0 and report["catalogued"] == 5 and report["current"] == 5


def test_models_list_without_a_model_module_says_so(generated: Path, capsys) -> None:
    status, out, _ = run(["models", "list", "--config", str(generated)], capsys)
    assert status == 0 and out.splitlines() == [
        f"config: {generated}",
        "no enabled module loads a model (see modules: in the config)",
    ]


def test_models_fetch_offline_prints_one_message_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMGANALYZER_RESULTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    Path("objects.yaml").write_text("library: .\nmodules: [objects]\nobjects: {model: org/m}\n")
    status, out, err = run(["models", "fetch", "--config", "objects.yaml"], capsys)
    assert (status, out) == (1, "config: objects.yaml\n")
    assert err.startswith("imganalyzer: 1 of 1 configured models could not be fetched:\n")
    assert "objects: org/m: not in the cache, and HF_HUB_OFFLINE is set" in err
    assert "models fetch" not in err


def test_example_writes_the_example_library(tmp_path: Path, capsys) -> None:
    status, out, _ = run(["example", str(tmp_path / "photos")], capsys)
    written = [p for p in (tmp_path / "photos").rglob("*") if p.is_file()]
    assert status == 0 and out == f"wrote {len(written)} example photos to {tmp_path / 'photos'}\n"
    assert len(written) >= 12


def test_a_path_given_to_similar_is_keyed_relative_to_the_library(tmp_path: Path) -> None:
    library = tmp_path / "photos"
    (library / "2021").mkdir(parents=True)
    (tmp_path / "link").symlink_to(library)
    assert _library_relative("2021/a.jpg", str(library)) == "2021/a.jpg"
    assert _library_relative("./2021/../2021/a.jpg", str(library)) == "2021/a.jpg"
    assert _library_relative(str(library / "2021/a.jpg"), str(tmp_path / "link")) == "2021/a.jpg"
    with pytest.raises(LookupError, match="not inside the library"):
        _library_relative(str(tmp_path / "elsewhere.jpg"), str(library))


def test_every_command_takes_the_config_options() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    plain = [name for name in commands if name not in ("example", "models", "people")]
    for name in plain:
        args = parser.parse_args([name, *(["x"] if name in ("search", "similar", "export")
                                            else [])])  # fmt: skip
        assert {"config", "results", "library"} <= set(vars(args)), name
