"""What every `imganalyzer` command shares: the options that find a run's config, and
the one-line reporting of bad arguments and missing results (cli and its command groups
import this; it imports none of them)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from imganalyzer.config import (
    RESULTS_ENV,
    find_results,
    load_config_file,
    load_run_config,
    load_schema,
    run_config_path,
    validate_config,
)
from imganalyzer.errors import ConfigError

Command = Callable[[argparse.Namespace], int]
DEFAULT_CONFIG = "config.yaml"  # the config of new runs, in a clone's root


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        help=f"the results folder of a run (default: ${RESULTS_ENV}, the results folder this "
        "command runs inside, or the one ./config.yaml names); its recorded config is used",
    )
    parser.add_argument(
        "--config",
        help="a config file whose keys override the run's, key by key inside a section "
        "(without a recorded run: the config; ./config.yaml is read only then)",
    )
    parser.add_argument("--library", help="override the config's library")


def load_config(
    args: argparse.Namespace, need_library: bool | None = None, defaults: bool = False
) -> dict[str, Any]:
    """The config a command works with (see ``load_config_and_source``)."""
    return load_config_and_source(args, need_library, defaults)[0]


def load_config_and_source(
    args: argparse.Namespace, need_library: bool | None = None, defaults: bool = False
) -> tuple[dict[str, Any], str]:
    """The config a command works with, and which one it is, in words.

    A recorded run is what ran: the config recorded in the results folder (``--results``,
    ``$IMGANALYZER_RESULTS``, the results folder the current folder lies in, or the one that
    ``--config`` or ./config.yaml names), with the keys of ``--config`` (only when given)
    and ``--library`` on top. ./config.yaml is for new runs: without a recorded run it is
    the config (``--config`` instead when given); without either, the schema's
    defaults when ``defaults`` (the models commands), else a ConfigError naming the ways to
    find a run. ``need_library``: whether the library must be mounted (default: only without
    a recorded run)."""
    if args.config and not Path(args.config).is_file():
        raise ConfigError(
            f"config file not found: {args.config} (for the config a run recorded, name its "
            f"results folder with --results DIR or {RESULTS_ENV}=DIR)"
        )
    overrides = {k: getattr(args, k) for k in ("library", "results") if getattr(args, k)}
    results = find_results(args.results) or results_named_by(args.config or DEFAULT_CONFIG)
    if results is not None and run_config_path(results).is_file():
        config = load_run_config(results, overrides, args.config, check_paths=bool(need_library))
        on_top = f", with {args.config} on top" if args.config else ""
        recorded = os.path.abspath(run_config_path(results))
        return config, f"the recorded run config {recorded}{on_top}"
    check_paths = need_library is not False
    if args.config:
        return load_config_file(args.config, overrides, check_paths), args.config
    if Path(DEFAULT_CONFIG).is_file():
        config = load_config_file(DEFAULT_CONFIG, overrides, check_paths)
        return config, f"{DEFAULT_CONFIG} (no run recorded in {config['results']} yet)"
    if defaults:
        config = validate_config({"library": "."} | overrides, check_paths=False)
        return config, f"the packaged defaults (no {DEFAULT_CONFIG} here and no recorded run)"
    if results is not None:
        raise ConfigError(
            f"{results}: no recorded run there ({run_config_path(results)} not found): run "
            f"snakemake with results={results} first, or give --config FILE"
        )
    raise ConfigError(
        f"no recorded run and no {DEFAULT_CONFIG} here: name a results folder with --results "
        f"DIR or {RESULTS_ENV}=DIR (or run the command inside it), or give --config FILE"
    )


def results_named_by(config_file: str | os.PathLike) -> Path | None:
    """The results folder a config file names (its ``results``, else the default), when the
    file exists (None otherwise): in a clone's root, ./config.yaml names the results folder
    of the runs made there."""
    path = Path(config_file)
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # reported when the file is read as the config
    results = config.get("results") if isinstance(config, dict) else None
    if not isinstance(results, str) or not results:
        results = load_schema()["properties"]["results"]["default"]
    return Path(results)


def reported(command: Command) -> Command:
    """Bad arguments (exit 2) and a missing index or image (exit 1) as one-line messages."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except LookupError as error:
            print(f"imganalyzer: {printable(error)}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"imganalyzer: {printable(error)}", file=sys.stderr)
            return 2

    return run


def printable(error: Exception) -> str:
    """The message on one line: control characters and a path's stray bytes escaped."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
