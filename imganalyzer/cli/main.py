"""The `imganalyzer` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from imganalyzer.cli.options import (
    add_config_arguments,
    load_config,
    load_config_and_source,
    reported,
)
from imganalyzer.errors import ConfigError
from imganalyzer.layout import Layout
from imganalyzer.runlock import ResultsLocked

if TYPE_CHECKING:
    from imganalyzer.search.query import Filters, Hit

T = TypeVar("T")


def cmd_status(args: argparse.Namespace) -> int:
    from imganalyzer.search.status import library_status

    config, source = load_config_and_source(args)
    report = library_status(Layout(config["results"]), config["library"], config["modules"])
    if args.json:
        print(json.dumps({"config": source} | report.as_dict(), indent=2))
    else:
        print(f"config:       {source}\n{report.as_text(args.errors)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from imganalyzer.steps.report import format_reports, module_reports, write_time_plot

    config = load_config(args)
    reports = module_reports(Layout(config["results"]))
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print(format_reports(reports) if reports else "no benchmark files yet: run snakemake")
    if args.plot:
        write_time_plot(reports, args.plot)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from imganalyzer.steps.compact import compact

    config = load_config(args, need_library=True)
    print(compact(Layout(config["results"]), config).summary())
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from imganalyzer.example.library import build_example_library

    example = build_example_library(args.dest)
    if example.written:
        print(f"wrote {len(example.written)} example photos to {args.dest}")
    else:
        print(f"the {len(example.paths)} example photos in {args.dest} are up to date")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from imganalyzer.runtime.registry import configured_modules, format_table
    from imganalyzer.runtime.weights import locate

    config, source = load_config_and_source(args, need_library=False, defaults=True)
    print(f"config: {source}")
    modules = configured_modules(config)
    if not modules:
        print("no enabled module loads a model (see modules: in the config)")
        return 0
    print(format_table([locate(module, config) for module in modules]))
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from imganalyzer.runtime.preflight import fetch_message, fetch_models

    config, source = load_config_and_source(args, need_library=False, defaults=True)
    print(f"config: {source}")
    report = fetch_models(config)
    for location in report.present:
        print(f"{location.module}: {location.model} -> {location.path or location.source}")
    if report.missing:
        print(f"imganalyzer: {fetch_message(report, config)}", file=sys.stderr)
        return 1
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from imganalyzer.search.index import update_index

    config = load_config(args)
    layout = Layout(config["results"])
    report = update_index(layout, config["library"], config["modules"], args.rebuild, args.threads)
    print(report.summary())
    return 0


def _search_filters(args: argparse.Namespace) -> Filters:
    from imganalyzer.search.query import Filters, checked_filters

    return checked_filters(
        Filters(
            after=args.after,
            before=args.before,
            camera=args.camera,
            lens=args.lens,
            place=args.place,
            person=args.person,
            has_text=args.has_text,
            min_aesthetic=args.min_aesthetic,
            min_sharpness=args.min_sharpness,
            near=args.near,
            folder=args.folder,
        )
    )


def _print_hits(hits: list[Hit], as_json: bool) -> None:
    from imganalyzer.search.query import format_hits

    print(json.dumps([h.as_dict() for h in hits], indent=2) if as_json else format_hits(hits))


@reported
def cmd_search(args: argparse.Namespace) -> int:
    from imganalyzer.search.query import SearchIndex, clip_text_encoder, runnable_mode

    config = load_config(args)
    filters = _search_filters(args)
    index = SearchIndex(Layout(config["results"]))
    mode, warning = runnable_mode(index, args.mode)
    if warning is not None:
        print(f"imganalyzer: {warning}", file=sys.stderr)
    encoder = clip_text_encoder(config) if mode != "text" else None
    hits = index.search(args.query, mode, filters, args.limit, encoder)
    _print_hits(hits, args.json)
    return 0


@reported
def cmd_similar(args: argparse.Namespace) -> int:
    from imganalyzer.search.query import SearchIndex

    config = load_config(args)
    filters = _search_filters(args)
    index = SearchIndex(Layout(config["results"]))
    path = _library_relative(args.path, config["library"])
    _print_hits(index.similar(path, filters, args.limit), args.json)
    return 0


def _library_relative(path: str, library: str) -> str:
    """An image's path as the index keys it: relative to the library root ("./" and an
    absolute path inside the library are accepted too)."""
    if os.path.isabs(path):
        for root in (os.path.abspath(library), os.path.realpath(library)):
            relative = os.path.relpath(path, root)
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                return relative.replace(os.sep, "/")
        raise LookupError(f"{path!r} is not inside the library {library}")
    return os.path.normpath(path).replace(os.sep, "/") if path.startswith("./") else path


@reported
def cmd_export(args: argparse.Namespace) -> int:
    from imganalyzer.search.export import export_tables

    config = load_config(args)
    _check_export_folder(args.out, config)
    layout = Layout(config["results"])
    written = export_tables(layout, config["library"], args.out, args.format, config["modules"])
    for path in written:
        print(path)
    return 0


def _check_export_folder(out: str, config: dict[str, Any]) -> None:
    """The photo library is never written to."""
    target, library = os.path.realpath(out), os.path.realpath(config["library"])
    if target == library or target.startswith(library.rstrip(os.sep) + os.sep):
        raise ValueError(f"export folder {out!r} lies inside the photo library {library}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"export folder {out!r} is a file")


def _checked(parse: Callable[[str], T], option: str = "") -> Callable[[str], T]:
    """An argparse type from a search_input parser: its message becomes argparse's error
    (which names the option itself)."""

    def convert(text: str) -> T:
        from imganalyzer.search.query_input import SearchInputError

        try:
            return parse(text)
        except SearchInputError as error:
            message = str(error)
            if option and message.startswith(option):
                message = message[len(option) :].lstrip(": ")
            raise argparse.ArgumentTypeError(message) from None

    convert.__name__ = parse.__name__
    return convert


def cmd_serve(args: argparse.Namespace) -> int:
    from imganalyzer.web.app import serve

    serve(load_config(args), args.host, args.port, args.token)
    return 0


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="a web page to search and browse the results")
    add_config_arguments(serve)
    serve.add_argument("--port", type=int, default=8765, help="port (8765)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)"
    )
    serve.add_argument(
        "--token", help="access token, required on another address (generated if not given)"
    )
    serve.set_defaults(func=cmd_serve)


def _add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    from imganalyzer.search import query_input as check

    def minimum(option: str, bound: check.Bound) -> Callable[[str], float]:
        return _checked(lambda text: check.parse_minimum(text, option, bound), option)

    def date(option: str) -> Callable[[str], datetime]:
        return _checked(lambda text: check.parse_date_bound(text, option), option)

    parser.add_argument(
        "--after", type=date("--after"), metavar="DATE", help="taken on or after (YYYY[-MM[-DD]])"
    )
    parser.add_argument(
        "--before", type=date("--before"), metavar="DATE", help="taken before (YYYY[-MM[-DD]])"
    )
    parser.add_argument("--camera", help="words of the camera make/model, e.g. X-T4")
    parser.add_argument("--lens", help="words of the lens name")
    parser.add_argument("--place", help="taken in this town, region or country (from GPS)")
    parser.add_argument("--person", metavar="NAME", help="a named person in the image")
    parser.add_argument("--has-text", action="store_true", help="only images with text in them")
    parser.add_argument(
        "--min-aesthetic",
        type=minimum("--min-aesthetic", check.AESTHETIC),
        metavar="F",
        help="aesthetic score >= F (0 to 10)",
    )
    parser.add_argument(
        "--min-sharpness",
        type=minimum("--min-sharpness", check.SHARPNESS),
        metavar="F",
        help="sharpness >= F (0 or more)",
    )
    parser.add_argument(
        "--near",
        type=_checked(check.parse_near, "--near"),
        metavar="LAT,LON,KM",
        help="taken within KM of a place",
    )
    parser.add_argument("--folder", metavar="PATH", help="in this library folder (or below)")
    parser.add_argument(
        "--limit",
        type=_checked(check.parse_limit, "--limit"),
        default=20,
        help=f"results shown (20; 1 to {check.LIMIT_MAX:,})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _query(text: str) -> str:
    from imganalyzer.search.query_input import check_query

    return check_query(text)


def _thread_count(text: str) -> int:
    from imganalyzer.search.query_input import parse_limit

    return parse_limit(text, "--threads", high=64)


def _add_search_parsers(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="build or update the search index")
    add_config_arguments(index)
    index.add_argument("--rebuild", action="store_true", help="rebuild from scratch")
    index.add_argument(
        "--threads",
        type=_checked(_thread_count, "--threads"),
        default=2,
        help="indexing threads (2; 1 to 64)",
    )
    index.set_defaults(func=cmd_index)

    search = commands.add_parser("search", help="find images by words, meaning and filters")
    add_config_arguments(search)
    search.add_argument(
        "query",
        type=_checked(_query),
        help="words (Tantivy query syntax); '' lists by filters",
    )
    search.add_argument("--mode", choices=["text", "semantic", "hybrid"], default="hybrid")
    _add_filter_arguments(search)
    search.set_defaults(func=cmd_search)

    similar = commands.add_parser("similar", help="images that look like a given one")
    add_config_arguments(similar)
    similar.add_argument("path", help="an image's path relative to the library root")
    _add_filter_arguments(similar)
    similar.set_defaults(func=cmd_similar)

    export = commands.add_parser("export", help="write result tables for pandas/DuckDB")
    add_config_arguments(export)
    export.add_argument("out", help="output folder")
    export.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    export.set_defaults(func=cmd_export)


def _add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the models the config names")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="configured models, where they load from, present?")
    add_config_arguments(listing)
    listing.set_defaults(func=cmd_models_list)
    fetching = actions.add_parser(
        "fetch", help="download every configured model into the standard caches"
    )
    add_config_arguments(fetching)
    fetching.set_defaults(func=cmd_models_fetch)


class _Parser(argparse.ArgumentParser):
    """argparse whose error line stays one line whatever the arguments hold (a carriage
    return or a path's stray byte is shown escaped)."""

    def error(self, message: str) -> NoReturn:
        super().error("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imganalyzer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", help="catalog state, per-module counts and errors")
    add_config_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--errors", action="store_true", help="list every error (default: grouped by kind)"
    )
    status.set_defaults(func=cmd_status)

    report = commands.add_parser("report", help="per-module images/s, job times, peak memory")
    add_config_arguments(report)
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument("--plot", metavar="SVG", help="also write a bar chart of module time")
    report.set_defaults(func=cmd_report)

    compacting = commands.add_parser(
        "compact", help="merge the shards of small imports into full shards (no recomputing)"
    )
    add_config_arguments(compacting)
    compacting.set_defaults(func=cmd_compact)

    example = commands.add_parser("example", help="build the small example library")
    example.add_argument("dest", nargs="?", default="example/library")
    example.set_defaults(func=cmd_example)

    _add_models_parser(commands)
    _add_search_parsers(commands)
    _add_serve_parser(commands)
    # Imported here: these modules import this one for the shared --config handling.
    from imganalyzer.cli.duplicates import add_duplicates_parser
    from imganalyzer.cli.people import add_people_parser

    add_people_parser(commands)
    add_duplicates_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path's undecodable byte prints as \xHH
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except ConfigError as error:
        print(f"imganalyzer: {error}", file=sys.stderr)
        return 2
    except ResultsLocked as error:  # compact while a run writes the results folder
        print(f"imganalyzer: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `imganalyzer status | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
