"""The user's edits of the people (``faces/people_edits.json``): names, aliases, merges and
splits, and how they are re-applied to the people found on every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass
class Edits:
    """The user's edits (``people_edits.json``): only the CLI writes them."""

    names: dict[int, str] = field(default_factory=dict)
    aliases: dict[int, list[str]] = field(default_factory=dict)
    merged: dict[int, int] = field(default_factory=dict)  # person -> person it was merged into
    moved: dict[str, int] = field(default_factory=dict)  # face -> person a split put it in
    cannot_link: dict[str, list[int]] = field(default_factory=dict)  # face -> not these
    max_id: int = 0  # the highest id an edit created

    def resolve(self, person: int) -> int:
        """The person ``person`` is now part of (following merges)."""
        seen = set()
        while person in self.merged and person not in seen:
            seen.add(person)
            person = self.merged[person]
        return person

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "names": {str(k): v for k, v in sorted(self.names.items())},
            "aliases": {str(k): v for k, v in sorted(self.aliases.items())},
            "merged": {str(k): v for k, v in sorted(self.merged.items())},
            "moved": dict(sorted(self.moved.items())),
            "cannot_link": dict(sorted(self.cannot_link.items())),
            "max_id": self.max_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Edits:
        return cls(
            names={int(k): v for k, v in data.get("names", {}).items()},
            aliases={int(k): list(v) for k, v in data.get("aliases", {}).items()},
            merged={int(k): int(v) for k, v in data.get("merged", {}).items()},
            moved={k: int(v) for k, v in data.get("moved", {}).items()},
            cannot_link={k: [int(p) for p in v] for k, v in data.get("cannot_link", {}).items()},
            max_id=int(data.get("max_id", 0)),
        )


def apply_edits(members: dict[int, set[str]], edits: Edits, present: Iterable[str]) -> None:
    """Apply merges, split moves and cannot-link constraints to ``members`` (person -> face
    ids) in place; ``present``: the faces that exist now (edits of other faces wait)."""
    for source in sorted(edits.merged):
        target = edits.resolve(source)
        if source in members and target != source:
            members.setdefault(target, set()).update(members.pop(source))
    owner = {face: person for person, faces in members.items() for face in faces}
    present = set(present)
    for face, person in edits.moved.items():
        if face in present:
            _move(members, owner, face, edits.resolve(person))
    for face, forbidden in edits.cannot_link.items():
        holder = owner.get(face)
        moved_here = face in edits.moved and edits.resolve(edits.moved[face]) == holder
        if (
            holder is not None
            and not moved_here
            and holder in {edits.resolve(p) for p in forbidden}
        ):
            members[holder].discard(face)
            del owner[face]


def _move(members: dict[int, set[str]], owner: dict[str, int], face: str, person: int) -> None:
    if face in owner:
        members[owner[face]].discard(face)
    members.setdefault(person, set()).add(face)
    owner[face] = person


def named_people(edits: Edits) -> set[int]:
    """The people the user named (after merges)."""
    return {edits.resolve(p) for p in edits.names}
