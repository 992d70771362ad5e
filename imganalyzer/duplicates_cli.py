"""`imganalyzer duplicates`: the exact and near duplicate groups, with the keeper to keep.

Reads ``results/duplicates/groups.json`` when it describes the current library with the
configured settings; otherwise computes the groups (the stored file is left as it is).
"""

from __future__ import annotations

import argparse
import json

from imganalyzer.cli import _add_config_arguments, _load_config


def cmd_duplicates(args: argparse.Namespace) -> int:
    from imganalyzer.duplicates import current_report, format_groups

    config = _load_config(args)
    settings = config.get("duplicates") or {}
    report = current_report(
        config["results"],
        config["library"],
        near_threshold=settings.get("near_threshold", 0.95),
        hash_distance=settings.get("hash_distance", 8),
        use_clip="embedding" in config["modules"],
        device=settings.get("device", "auto"),
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
    _add_config_arguments(duplicates)
    duplicates.add_argument(
        "--kind", choices=["exact", "near", "all"], default="all", help="groups shown (all)"
    )
    duplicates.add_argument("--json", action="store_true", help="print JSON")
    duplicates.set_defaults(func=cmd_duplicates)
