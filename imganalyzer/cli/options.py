"""What every `imganalyzer` command shares: the options that find a run's config, and
the one-line reporting of bad arguments and missing results (cli and its command groups
import this; it imports none of them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from imganalyzer.config import (
    RESULTS_ENV,
    find_results,
    load_config_file,
    load_run_config,
    run_config_path,
)

Command = Callable[[argparse.Namespace], int]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        help=f"the results folder of a run (default: ${RESULTS_ENV}, or the results folder "
        "this command runs inside); its recorded config is used",
    )
    parser.add_argument(
        "--config",
        help="a config file whose keys override the run's, key by key inside a section "
        "(default: config.yaml when no results folder is found)",
    )
    parser.add_argument("--library", help="override the config's library")


def load_config(args: argparse.Namespace, need_library: bool | None = None) -> dict[str, Any]:
    """The config of the run that wrote the results folder (``--results``, the environment
    or the current folder), with ``--config`` and ``--library`` on top; without a recorded
    run, ``--config`` (default ``config.yaml``) as it is. ``need_library``: whether the
    library must be mounted (default: only without a recorded run)."""
    overrides = {k: getattr(args, k) for k in ("library", "results") if getattr(args, k)}
    results = find_results(args.results)
    if results is not None and run_config_path(results).is_file():
        return load_run_config(results, overrides, args.config, check_paths=bool(need_library))
    check_paths = need_library is not False
    return load_config_file(args.config or "config.yaml", overrides, check_paths)


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
