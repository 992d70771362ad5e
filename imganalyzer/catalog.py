"""Append-only catalog of the library (filled in below)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of one file: its path relative to the library root, size and mtime."""

    path: str
    size: int
    mtime_ns: int
