"""The run's own config recorded in the results folder, and how commands find it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imganalyzer.cli.main import main
from imganalyzer.config import (
    RESULTS_ENV,
    ConfigError,
    find_results,
    load_run_config,
    record_run_config,
    run_config_path,
)


def recorded(tmp_path: Path, **extra) -> Path:
    library = tmp_path / "library"
    library.mkdir()
    results = tmp_path / "results"
    config = {"library": str(library), "results": str(results), "modules": ["metadata"], **extra}
    record_run_config(config)
    return results


def test_recorded_config_has_absolute_folders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    path = record_run_config({"library": "photos", "results": "out", "shard_size": 7})
    assert path == tmp_path / "out" / "run" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["library"] == str(tmp_path / "photos")
    assert data["results"] == str(tmp_path / "out")
    assert data["shard_size"] == 7


def test_run_config_loads_without_the_library(tmp_path: Path) -> None:
    results = recorded(tmp_path, shard_size=11)
    (tmp_path / "library").rename(tmp_path / "gone")
    config = load_run_config(results)
    assert config["shard_size"] == 11 and config["modules"] == ["metadata"]
    with pytest.raises(ConfigError, match="'library': folder not found"):
        load_run_config(results, check_paths=True)


def test_moved_results_folder_and_overrides(tmp_path: Path) -> None:
    results = recorded(tmp_path)
    moved = results.rename(tmp_path / "elsewhere")
    override = tmp_path / "override.yaml"
    override.write_text("shard_size: 3\n")
    config = load_run_config(moved, {"library": "/mnt/x"}, override)
    assert config["results"] == str(moved)
    assert config["shard_size"] == 3 and config["library"] == "/mnt/x"


def test_results_found_from_flag_environment_or_inside(tmp_path: Path, monkeypatch) -> None:
    results = recorded(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    assert find_results("given") == Path("given")
    assert find_results(cwd=str(results / "run")) == results
    assert find_results(cwd=str(tmp_path)) is None
    monkeypatch.setenv(RESULTS_ENV, str(results))
    assert find_results(cwd=str(tmp_path)) == results


def test_missing_run_config_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no recorded run config"):
        load_run_config(tmp_path)
    assert not run_config_path(tmp_path).exists()


def test_models_list_needs_no_library(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    Path("config.yaml").write_text("library: nowhere\nresults: out\nmodules: [metadata]\n")
    assert main(["models", "list"]) == 0
    assert "no enabled module loads a model" in capsys.readouterr().out


def test_status_from_inside_results_with_library_unmounted(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    results = recorded(tmp_path)
    (tmp_path / "library").rename(tmp_path / "gone")
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(results)
    assert main(["status", "--json"]) == 0
    assert '"current": 0' in capsys.readouterr().out


def test_recording_the_same_config_again_writes_nothing(tmp_path: Path) -> None:
    config = {"library": str(tmp_path / "photos"), "results": str(tmp_path / "results")}
    path = record_run_config(config)
    before = path.stat().st_mtime_ns
    assert record_run_config(dict(config)) == path and path.stat().st_mtime_ns == before
    record_run_config({**config, "shard_size": 10})
    assert "shard_size: 10" in path.read_text()
