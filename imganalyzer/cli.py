"""The `imganalyzer` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from imganalyzer.config import ConfigError, load_config_file


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="workflow config file")
    parser.add_argument("--library", help="override the config's library")
    parser.add_argument("--results", help="override the config's results folder")


def _load_config(args: argparse.Namespace) -> dict:
    overrides = {k: getattr(args, k) for k in ("library", "results") if getattr(args, k)}
    return load_config_file(args.config, overrides)


def cmd_status(args: argparse.Namespace) -> int:
    from imganalyzer.status import library_status

    config = _load_config(args)
    report = library_status(config["library"], config["results"], config["modules"])
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.as_text())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from imganalyzer.report import format_reports, module_reports, write_time_plot

    config = _load_config(args)
    reports = module_reports(config["results"])
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print(format_reports(reports) if reports else "no benchmark files yet: run snakemake")
    if args.plot:
        write_time_plot(reports, args.plot)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from imganalyzer.compact import compact

    print(compact(_load_config(args)).summary())
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from imganalyzer.samples import build_example_library

    paths = build_example_library(args.dest)
    print(f"wrote {len(paths)} example photos to {args.dest}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from imganalyzer.models import configured_modules, format_table, locate

    config = _load_config(args)
    modules = configured_modules(config)
    if not modules:
        print("no enabled module loads a model (see modules: in the config)")
        return 0
    print(format_table([locate(module, config) for module in modules]))
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from imganalyzer.models import ModelNotFoundError, configured_modules, fetch

    config = _load_config(args)
    failed = 0
    for module in configured_modules(config):
        try:
            location = fetch(module, config)
        except ModelNotFoundError as error:
            print(f"{module}: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{module}: {location.model} -> {location.path or location.source}")
    return 1 if failed else 0


def _add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the models the config names")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="configured models, where they load from, present?")
    _add_config_arguments(listing)
    listing.set_defaults(func=cmd_models_list)
    fetching = actions.add_parser(
        "fetch", help="download every configured model into the standard caches"
    )
    _add_config_arguments(fetching)
    fetching.set_defaults(func=cmd_models_fetch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imganalyzer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", help="catalog state, per-module counts and errors")
    _add_config_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    report = commands.add_parser("report", help="per-module images/s, job times, peak memory")
    _add_config_arguments(report)
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument("--plot", metavar="SVG", help="also write a bar chart of module time")
    report.set_defaults(func=cmd_report)

    compacting = commands.add_parser(
        "compact", help="merge the shards of small imports into full shards (no recomputing)"
    )
    _add_config_arguments(compacting)
    compacting.set_defaults(func=cmd_compact)

    example = commands.add_parser("example", help="build the small example library")
    example.add_argument("dest", nargs="?", default="example/library")
    example.set_defaults(func=cmd_example)

    _add_models_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"imganalyzer: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
