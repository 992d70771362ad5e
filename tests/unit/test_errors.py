"""ConfigError: one class for every bad config value, whichever layer finds it, and a
ValueError, so a command reports it as a bad argument (exit 2)."""

from __future__ import annotations

import argparse

import pytest

from imganalyzer.cli.options import reported
from imganalyzer.config import validate_config
from imganalyzer.errors import ConfigError
from imganalyzer.runtime.registry import check_aesthetic_compatible


def test_the_config_and_the_registry_raise_the_one_config_error() -> None:
    with pytest.raises(ConfigError, match="'shard_size'"):
        validate_config({"library": ".", "results": "r", "shard_size": -1}, check_paths=False)
    with pytest.raises(ConfigError, match="config key 'embedding'"):
        check_aesthetic_compatible("ViT-B-32", "laion2b_s34b_b79k")
    assert issubclass(ConfigError, ValueError)


def test_a_command_that_meets_a_config_error_says_it_on_one_line_and_exits_2(
    capsys: pytest.CaptureFixture,
) -> None:
    def command(args: argparse.Namespace) -> int:
        raise ConfigError("config key 'xmp.dir': inside the library\nsecond line")

    assert reported(command)(argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err == "imganalyzer: config key 'xmp.dir': inside the library\\nsecond line\n"
