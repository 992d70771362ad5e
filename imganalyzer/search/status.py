"""`imganalyzer status`: what is catalogued, what is current, and what each module did.

Errors are grouped by kind: a row's ``error_kind`` when it has one, else a kind read from
its reason (:func:`error_kind`), with counts and a few example paths per group.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from imganalyzer.catalog.current import CurrentView, LibraryView
from imganalyzer.catalog.manifests import escape_path
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import ERROR
from imganalyzer.store import ResultsStore

EXAMPLES = 3  # example paths shown per error group
# Kinds of error reasons, first match wins: (pattern of the reason, kind).
ERROR_KINDS = [
    (r"file not found|no such file|vanished", "file missing"),
    (r"permission denied", "permission denied"),
    (r"empty file|0 bytes", "empty file"),
    (r"is a directory|not a regular file", "not a regular file"),
    (r"max_pixels|decompression bomb", "too many pixels"),
    (r"not an image|cannot identify", "not an image"),
    (r"unsupported or corrupt raw", "unsupported or corrupt RAW"),
    (r"truncated|corrupt", "truncated or corrupt"),
    (r"^not decoded", "not decoded"),
    (r"^no embedding", "no embedding"),
    (r"out of memory|cuda|mps", "device or memory"),
    (r"model|weights|checkpoint", "model"),
    (r"timed? ?out|timeout", "timeout"),
    (r"^objects: ", "objects failed first"),
]
_KIND_PATTERNS = [(re.compile(p, re.IGNORECASE), kind) for p, kind in ERROR_KINDS]


def error_kind(row: dict[str, Any]) -> str:
    """The kind of an error row: its ``error_kind``, else one read from its reason (the
    reason's first clause when no known kind matches)."""
    if row.get("error_kind"):
        return str(row["error_kind"])
    reason = str(row.get("error") or "unknown error")
    for pattern, kind in _KIND_PATTERNS:
        if pattern.search(reason):
            return kind
    head = re.split(r"[:(\[]", reason, maxsplit=1)[0].strip()
    return head[:40] or "other"


@dataclass
class ErrorGroup:
    module: str
    kind: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class ModuleCounts:
    done: int = 0
    errors: int = 0
    pending: int = 0


@dataclass
class StatusReport:
    shards: int
    catalogued: int
    current: int
    superseded: int
    removed: int
    outdated: int
    uncatalogued: int
    modules: dict[str, ModuleCounts] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    failed_jobs: list[dict[str, Any]] = field(default_factory=list)  # see jobstatus
    passed_over: dict[str, int] = field(default_factory=dict)  # non-image files by extension

    def error_groups(self) -> list[ErrorGroup]:
        """Errors by module and kind, the largest groups first."""
        groups: dict[tuple[str, str], ErrorGroup] = {}
        for error in self.errors:
            key = (error["module"], error["kind"])
            group = groups.setdefault(key, ErrorGroup(*key))
            group.count += 1
            if len(group.examples) < EXAMPLES:
                group.examples.append(error["path"])
        return sorted(groups.values(), key=lambda g: (-g.count, g.module, g.kind))

    def as_dict(self) -> dict[str, Any]:
        data = {
            k: v for k, v in self.__dict__.items() if k not in ("modules", "errors", "failed_jobs")
        }
        data["modules"] = {name: counts.__dict__ for name, counts in self.modules.items()}
        data["error_groups"] = [
            {**g.__dict__, "examples": [escape_path(p) for p in g.examples]}
            for g in self.error_groups()
        ]
        data["errors"] = [{**e, "path": escape_path(e["path"])} for e in self.errors]
        data["failed_jobs"] = self.failed_jobs
        return data

    def as_text(self, all_errors: bool = False) -> str:
        lines = [
            f"shards:       {self.shards}",
            f"catalogued:   {self.catalogued} entries",
            f"current:      {self.current} images",
            f"superseded:   {self.superseded} (older entries of edited or re-read files)",
            f"removed:      {self.removed} (files no longer in the library)",
        ]
        if self.passed_over:
            counts = sorted(self.passed_over.items(), key=lambda item: (-item[1], item[0]))
            lines.append(
                f"passed over:  {sum(self.passed_over.values())} files of other types ("
                + ", ".join(f"{extension} {count}" for extension, count in counts)
                + ")"
            )
        if self.outdated or self.uncatalogued:
            lines.append(
                f"not yet analysed: {self.uncatalogued} new or changed files (run snakemake)"
            )
        lines.append("")
        lines.append(f"{'module':<12} {'done':>8} {'errors':>8} {'pending':>8}")
        for name, module in self.modules.items():
            never = "  (not run yet)" if module.pending and not module.done + module.errors else ""
            lines.append(
                f"{name:<12} {module.done:>8} {module.errors:>8} {module.pending:>8}{never}"
            )
        if self.failed_jobs:
            lines.append("")
            lines.append(f"failed jobs ({len(self.failed_jobs)}; the next run retries them):")
            lines += [
                f"  {f['module']} {f['job']}: {f.get('error', '')} (log: {f.get('log', '?')})"
                for f in self.failed_jobs
            ]
        if self.errors:
            lines += ["", *self._error_lines(all_errors)]
        return "\n".join(lines)

    def _error_lines(self, all_errors: bool) -> list[str]:
        if all_errors:
            lines = [f"errors ({len(self.errors)}):"]
            for e in self.errors:
                lines.append(f"  {e['module']}: {escape_path(e['path'])}: {e['error']}")
            return lines
        groups = self.error_groups()
        lines = [f"errors: {len(self.errors)} in {len(groups)} kind(s) (--errors lists them all)"]
        for group in groups:
            lines.append(f"  {group.module}: {group.kind}: {group.count}")
            shown = ", ".join(escape_path(p) for p in group.examples)
            hidden = group.count - len(group.examples)
            more = f", and {hidden} more" if hidden else ""
            lines.append(f"      e.g. {shown}{more}")
        return lines


def library_status(layout: Layout, library: str | os.PathLike, modules: list[str]) -> StatusReport:
    """Derive the library's state from the catalog and a stat-only scan; the module results
    and failed jobs from the results store."""
    catalog = Catalog(layout)
    store = ResultsStore(layout)
    state = catalog.state(library, exclude=[layout.root])
    report = StatusReport(
        shards=len(catalog.shard_ids()),
        catalogued=len(state.current)
        + len(state.superseded)
        + len(state.removed)
        + len(state.outdated),
        current=len(state.current),
        superseded=len(state.superseded),
        removed=len(state.removed),
        outdated=len(state.outdated),
        uncatalogued=len(state.uncatalogued),
        passed_over=state.passed_over,
    )
    report.failed_jobs = store.failures(modules)
    view = CurrentView(LibraryView.of(state))  # moved files' rows at their new path
    for module in modules:
        counts = report.modules[module] = ModuleCounts()
        for current in view.shards.values():
            rows = store.current_rows(module, current)
            counts.pending += len(current.entries) - len(rows)
            for row in rows.values():
                if row["status"] == ERROR:
                    counts.errors += 1
                    report.errors.append(
                        {
                            "module": module,
                            "path": row["path"],
                            "error": row.get("error", ""),
                            "kind": error_kind(row),
                        }
                    )
                else:
                    counts.done += 1
    return report
