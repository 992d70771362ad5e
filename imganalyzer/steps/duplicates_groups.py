"""Duplicate groups and the keeper each recommends: connected components of pairs, members
and the report written to ``groups.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imganalyzer.decode.metadata import TIFF_RAW_EXTENSIONS
from imganalyzer.results import OK
from imganalyzer.steps.duplicates_hashes import DUPLICATES_VERSION

RAW_EXTENSIONS = frozenset(TIFF_RAW_EXTENSIONS | {".cr3", ".raf", ".x3f", ".srw"})
RAW_FORMATS = frozenset(ext.lstrip(".") for ext in RAW_EXTENSIONS)


# --- Union-find ----------------------------------------------------------------------------------
class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def components(self, members: Iterable[int]) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i in members:
            groups.setdefault(self.find(i), []).append(i)
        return [sorted(g) for g in groups.values() if len(g) > 1]


# --- Groups and keepers --------------------------------------------------------------------------
@dataclass
class Member:
    path: str
    size: int
    width: int | None
    height: int | None
    sharpness: float | None
    format: str
    raw: bool
    digest: str | None = None
    hash_distance: int | None = None  # pHash bits from the keeper
    cosine: float | None = None  # CLIP cosine with the keeper


@dataclass
class Group:
    kind: str  # "exact" | "near"
    keeper: str
    reason: str
    members: list[Member]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "keeper": self.keeper,
            "reason": self.reason,
            "members": [asdict(m) for m in self.members],
        }


@dataclass
class DuplicateReport:
    groups: list[Group]
    settings: dict[str, Any]
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": DUPLICATES_VERSION,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "stats": self.stats,
            "groups": [g.as_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DuplicateReport:
        groups = [
            Group(g["kind"], g["keeper"], g["reason"], [Member(**m) for m in g["members"]])
            for g in data["groups"]
        ]
        return cls(groups, data["settings"], data["fingerprint"], data.get("stats", {}))

    def of_kind(self, kind: str) -> list[Group]:
        return [g for g in self.groups if kind in ("all", g.kind)]

    def summary(self) -> str:
        exact = sum(g.kind == "exact" for g in self.groups)
        return f"duplicates: {exact} exact and {len(self.groups) - exact} near groups"


def keeper_key(member: Member) -> tuple:
    """Sort key: the recommended keeper sorts first."""
    pixels = (member.width or 0) * (member.height or 0)
    return (not member.raw, -pixels, -(member.sharpness or 0.0), -member.size, member.path)


def choose_keeper(members: list[Member]) -> tuple[Member, str]:
    ranked = sorted(members, key=keeper_key)
    keeper, runner_up = ranked[0], ranked[1]
    return keeper, _keeper_reason(keeper, runner_up)


def _keeper_reason(keeper: Member, other: Member) -> str:
    if keeper.raw != other.raw:
        return f"RAW ({keeper.format}) over {other.format}"
    pixels = (keeper.width or 0) * (keeper.height or 0)
    if pixels != (other.width or 0) * (other.height or 0):
        return f"most pixels ({keeper.width}x{keeper.height})"
    if (keeper.sharpness or 0.0) != (other.sharpness or 0.0):
        return f"sharpest ({keeper.sharpness:g})"
    if keeper.size != other.size:
        return f"largest file ({keeper.size} bytes)"
    return "identical: first path"


def image_format(path: str, metadata: dict[str, Any] | None) -> tuple[str, bool]:
    """(format name, is RAW), from the metadata row when there is one, else the extension."""
    fmt = (metadata or {}).get("format") if (metadata or {}).get("status") == OK else None
    extension = os.path.splitext(path)[1].lower()
    fmt = str(fmt or extension.lstrip(".") or "unknown").lower()
    fmt = {"jpg": "jpeg", "tif": "tiff", "heif": "heic"}.get(fmt, fmt)
    return fmt, fmt in RAW_FORMATS or extension in RAW_EXTENSIONS
