"""What every command shares: finding the run's config (a recorded run, then --config and
--library on top; else a config file; for the models commands, else the packaged defaults),
and one-line reports of bad arguments (exit 2) and of missing things (exit 1)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from imganalyzer.cli.options import (
    add_config_arguments,
    load_config,
    load_config_and_source,
    printable,
    reported,
)
from imganalyzer.config import RESULTS_ENV, load_schema, record_run_config
from imganalyzer.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recorded run (library and results) under ``tmp_path``, which is the current folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    (tmp_path / "photos").mkdir()
    record_run_config(
        {"library": "photos", "results": "results", "shard_size": 7, "modules": ["metadata"]}
    )
    return tmp_path / "results"


def test_a_recorded_run_is_found_with_its_overrides_on_top(run: Path, tmp_path: Path) -> None:
    override = tmp_path / "more.yaml"
    override.write_text("shard_size: 9\n")
    other = tmp_path / "other"
    other.mkdir()
    config = load_config(parse("--results", str(run), "--config", str(override)))
    assert config["shard_size"] == 9 and config["modules"] == ["metadata"]
    config = load_config(parse("--results", str(run), "--library", str(other)))
    assert config["library"] == str(other) and config["shard_size"] == 7
    os.chdir(run / "run")  # inside the results folder: found without --results
    assert load_config(parse())["results"] == str(run)


def test_the_environment_names_the_results_folder(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv(RESULTS_ENV, str(run))
    assert load_config(parse())["shard_size"] == 7


def test_a_recorded_run_needs_its_library_only_when_asked(run: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").rename(tmp_path / "unmounted")
    assert load_config(parse("--results", str(run)))["shard_size"] == 7
    with pytest.raises(ConfigError, match="config key 'library': folder not found"):
        load_config(parse("--results", str(run)), need_library=True)


def test_without_a_recorded_run_the_config_file_is_read_and_its_library_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    with pytest.raises(ConfigError) as missing:
        load_config(parse())
    assert "--results" in str(missing.value) and RESULTS_ENV in str(missing.value)
    with pytest.raises(ConfigError, match="config file not found: other.yaml"):
        load_config(parse("--config", "other.yaml"))
    Path("config.yaml").write_text("library: nowhere\nresults: out\n")
    with pytest.raises(ConfigError, match="folder not found: nowhere"):
        load_config(parse())
    assert load_config(parse(), need_library=False)["library"] == "nowhere"


def test_bad_arguments_exit_2_and_missing_things_exit_1_on_one_line(capsys) -> None:
    def failing(error: Exception) -> int:
        def command(args: argparse.Namespace) -> int:
            raise error

        return reported(command)(argparse.Namespace())

    assert failing(ValueError("--limit must be between 1 and 10,000")) == 2
    assert capsys.readouterr().err == "imganalyzer: --limit must be between 1 and 10,000\n"
    assert failing(KeyError("no image 'a\nb.jpg' in the index")) == 1
    assert capsys.readouterr().err == "imganalyzer: no image 'a\\nb.jpg' in the index\n"
    with pytest.raises(RuntimeError):
        failing(RuntimeError("a bug is not hidden"))


def test_printable_escapes_control_characters_and_stray_bytes() -> None:
    stray = os.fsdecode(b"caf\xe9.jpg")
    assert printable(ValueError(f"bad\r{stray}\x1b")) == "bad\\rcaf\\udce9.jpg\\x1b"
    assert printable(KeyError("plain")) == "plain"  # not the quoted repr KeyError prints


def test_in_a_clone_the_run_that_config_yaml_names_counts_not_config_yaml(
    run: Path, tmp_path: Path
) -> None:
    # ./config.yaml (for new runs) names the results folder; its recorded run is what ran
    Path("config.yaml").write_text("library: photos\nmodules: [metadata, technical, embedding]\n")
    config, source = load_config_and_source(parse())
    assert config["modules"] == ["metadata"] and config["shard_size"] == 7
    assert source == f"the recorded run config {run / 'run' / 'config.yaml'}"
    # given explicitly, its keys count (over the run's)
    config, source = load_config_and_source(parse("--config", "config.yaml"))
    assert config["modules"] == ["metadata", "technical", "embedding"]
    assert config["shard_size"] == 7 and source.endswith(", with config.yaml on top")
    # a config.yaml naming a results folder without a run is the config itself
    Path("config.yaml").write_text("library: photos\nresults: fresh\n")
    config, source = load_config_and_source(parse())
    assert config["results"] == "fresh" and source.startswith("config.yaml (no run recorded")


def test_without_any_config_only_the_models_commands_take_the_packaged_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    config, source = load_config_and_source(parse(), need_library=False, defaults=True)
    assert config["modules"] == load_schema()["properties"]["modules"]["default"]
    assert source.startswith("the packaged defaults")
    with pytest.raises(ConfigError, match="no recorded run and no config.yaml here"):
        load_config_and_source(parse(), need_library=False)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "empty"))  # a folder without a run
    with pytest.raises(ConfigError, match=f"{tmp_path / 'empty'}: no recorded run there"):
        load_config_and_source(parse(), need_library=False)
