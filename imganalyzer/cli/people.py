"""The `imganalyzer people` commands: list and show people, name them, merge and split them.

Edits go to ``faces/people_edits.json`` and take effect at once in ``faces/people.json``;
the global ``faces_cluster`` step re-applies them on every run.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from imganalyzer.catalog.manifests import escape_path
from imganalyzer.cli.options import Command, add_config_arguments, load_config, reported
from imganalyzer.layout import Layout
from imganalyzer.steps import people as people_module


def _layout(args: argparse.Namespace) -> Layout:
    return Layout(load_config(args)["results"])


def _person_dict(person: people_module.Person, people: people_module.PeopleFile) -> dict[str, Any]:
    images = sorted({people.faces[f].path for f in person.faces})
    return {
        "id": person.id, "name": person.name, "aliases": person.aliases,
        "n_faces": len(person.faces), "n_images": len(images), "crop": person.crop,
    }  # fmt: skip


def cmd_people_list(args: argparse.Namespace) -> int:
    people = people_module.load_people(_layout(args))
    rows = [_person_dict(p, people) for p in people.people.values()]
    rows.sort(key=lambda r: (r["name"] is None, -r["n_faces"], r["id"]))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no people yet: run the workflow with the faces module enabled")
        return 0
    print(f"{'id':>6}  {'faces':>6}  {'images':>6}  name (aliases)")
    for row in rows:
        aliases = f" ({', '.join(row['aliases'])})" if row["aliases"] else ""
        counts = f"{row['id']:>6}  {row['n_faces']:>6}  {row['n_images']:>6}"
        print(f"{counts}  {row['name'] or '-'}{aliases}")
    print(f"{len(people.unassigned)} faces belong to no person yet")
    return 0


def cmd_people_show(args: argparse.Namespace) -> int:
    layout = _layout(args)
    people = people_module.load_people(layout)
    pid = people_module.load_edits(layout).resolve(args.id)
    if pid not in people.people:
        raise LookupError(f"no person {args.id} (see `imganalyzer people list`)")
    person = people.people[pid]
    faces: list[dict[str, Any]] = [
        {"face": f, "path": escape_path(people.faces[f].path), "box": people.faces[f].box,
         "score": people.faces[f].score}
        for f in person.faces
    ]  # fmt: skip
    details = {**_person_dict(person, people), "representative": person.representative}
    if args.json:
        print(json.dumps({**details, "faces": faces}, indent=2, ensure_ascii=False))
        return 0
    for key, value in details.items():
        print(f"{key}: {value}")
    for face in faces:
        box = ",".join(f"{v:.0f}" for v in face["box"])
        print(f"  {face['face']}  {face['path']}  box {box}  score {face['score']:.2f}")
    return 0


def _print_person(person: people_module.Person) -> None:
    aliases = f" (aliases: {', '.join(person.aliases)})" if person.aliases else ""
    print(f"person {person.id}: {person.name or '-'}{aliases}, {len(person.faces)} faces")


def cmd_people_name(args: argparse.Namespace) -> int:
    _print_person(people_module.set_name(_layout(args), args.id, args.name))
    return 0


def cmd_people_alias(args: argparse.Namespace) -> int:
    _print_person(people_module.add_alias(_layout(args), args.id, args.alias))
    return 0


def cmd_people_merge(args: argparse.Namespace) -> int:
    _print_person(people_module.merge_people(_layout(args), args.ids))
    return 0


def cmd_people_split(args: argparse.Namespace) -> int:
    if not args.faces and not args.images:
        raise ValueError("split needs --faces FACE_ID... or --images PATH...")
    person = people_module.split_person(_layout(args), args.id, args.faces, args.images)
    _print_person(person)
    return 0


def cmd_people_update(args: argparse.Namespace) -> int:
    from imganalyzer.steps.people_clusters import PeopleSettings

    config = load_config(args)
    report = people_module.update_people(
        Layout(config["results"]), config["library"], PeopleSettings.from_config(config),
        recluster=args.recluster, threads=args.threads,
    )  # fmt: skip
    print(report.summary())
    return 0


def add_people_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``people`` and its actions to the ``imganalyzer`` command line."""
    people = commands.add_parser("people", help="people found in the photos: list, name, merge")
    actions = people.add_subparsers(dest="people_command", required=True)

    def action(name: str, help_text: str, handler: Command) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_config_arguments(parser)
        parser.set_defaults(func=reported(handler))
        return parser

    listing = action("list", "every person: id, faces, images, name", cmd_people_list)
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = action("show", "one person and their faces (face ids for split)", cmd_people_show)
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print JSON")
    name = action("name", "name a person", cmd_people_name)
    name.add_argument("id", type=int)
    name.add_argument("name")
    alias = action("alias", "another name for a person (search finds both)", cmd_people_alias)
    alias.add_argument("id", type=int)
    alias.add_argument("alias")
    merge = action("merge", "merge people into the one with the smallest id", cmd_people_merge)
    merge.add_argument("ids", type=int, nargs="+", metavar="id")
    split = action("split", "move faces of a person to a new person", cmd_people_split)
    split.add_argument("id", type=int)
    split.add_argument("--faces", nargs="+", default=[], metavar="FACE", help="face ids (show)")
    split.add_argument(
        "--images", nargs="+", default=[], metavar="PATH", help="all its faces in these images"
    )
    update = action("update", "group the current faces into people now", cmd_people_update)
    update.add_argument("--recluster", action="store_true", help="cluster all faces afresh")
    update.add_argument("--threads", type=int, default=2, help="clustering threads (2)")
