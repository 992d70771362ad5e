"""`imganalyzer duplicates`: the exact and near duplicate groups, with the keeper to keep.

Reads ``results/duplicates/groups.json`` when it describes the current library with the
configured settings; otherwise computes the groups (the stored file is left as it is).
"""

from __future__ import annotations

import argparse
import json
import sys

from imganalyzer.cli.options import add_config_arguments, load_config, reported
from imganalyzer.layout import Layout
from imganalyzer.store import ResultsStore

NOT_RUN = (
    "near duplicates need the perceptual hashes of the duplicates module, which has not "
    "run: add duplicates to modules: in the config and run snakemake "
    "(--kind exact compares file contents and needs no module)"
)


@reported
def cmd_duplicates(args: argparse.Namespace) -> int:
    from imganalyzer.steps.duplicates import DuplicateSettings, current_report, format_groups

    config = load_config(args)
    layout = Layout(config["results"])
    if args.kind != "exact" and not ResultsStore(layout).has_results("duplicates"):
        raise LookupError(NOT_RUN)
    settings = DuplicateSettings.from_config(config)
    use_clip = "embedding" in config["modules"]
    report = current_report(layout, config["library"], settings, use_clip)
    images = report.stats.get("images", 0)
    hashed = report.stats.get("hashed", images)
    if args.kind != "exact" and hashed < images:
        print(
            f"imganalyzer: {images - hashed} of {images} images have no perceptual hash (not "
            "analysed yet, or not decodable): near copies among them are not found",
            file=sys.stderr,
        )
    groups = report.of_kind(args.kind)
    if args.json:
        print(json.dumps([g.as_dict() for g in groups], indent=2))
    else:
        print(format_groups(groups))
    return 0


def add_duplicates_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``duplicates`` command to the ``imganalyzer`` command line."""
    duplicates = commands.add_parser(
        "duplicates", help="exact and near duplicate images, with the one to keep"
    )
    add_config_arguments(duplicates)
    duplicates.add_argument(
        "--kind", choices=["exact", "near", "all"], default="all", help="groups shown (all)"
    )
    duplicates.add_argument("--json", action="store_true", help="print JSON")
    duplicates.set_defaults(func=cmd_duplicates)
