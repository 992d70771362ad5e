"""`imganalyzer status`: what is catalogued, what is current, and what each module did."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imganalyzer.catalog import Catalog
from imganalyzer.current import CurrentView
from imganalyzer.jobstatus import read_failures
from imganalyzer.results import ERROR


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

    def as_dict(self) -> dict[str, Any]:
        data = {
            k: v for k, v in self.__dict__.items() if k not in ("modules", "errors", "failed_jobs")
        }
        data["modules"] = {name: counts.__dict__ for name, counts in self.modules.items()}
        data["errors"] = self.errors
        data["failed_jobs"] = self.failed_jobs
        return data

    def as_text(self) -> str:
        lines = [
            f"shards:       {self.shards}",
            f"catalogued:   {self.catalogued} entries",
            f"current:      {self.current} images",
            f"superseded:   {self.superseded} (older versions of edited files)",
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
        for name, counts in self.modules.items():
            lines.append(f"{name:<12} {counts.done:>8} {counts.errors:>8} {counts.pending:>8}")
        if self.failed_jobs:
            lines.append("")
            lines.append(f"failed jobs ({len(self.failed_jobs)}; the next run retries them):")
            lines += [
                f"  {f['module']} {f['job']}: {f.get('error', '')} (log: {f.get('log', '?')})"
                for f in self.failed_jobs
            ]
        if self.errors:
            lines.append("")
            lines.append(f"errors ({len(self.errors)}):")
            lines += [f"  {e['module']}: {e['path']}: {e['error']}" for e in self.errors]
        return "\n".join(lines)


def library_status(
    library: str | os.PathLike, results: str | os.PathLike, modules: list[str]
) -> StatusReport:
    """Derive the library's state from the catalog and a stat-only scan."""
    results = Path(results)
    catalog = Catalog(results / "catalog")
    state = catalog.state(library, exclude=[results])
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
    report.failed_jobs = read_failures(results, modules)
    view = CurrentView(results, state)  # a moved file's rows are found at its new path
    for module in modules:
        counts = report.modules[module] = ModuleCounts()
        for shard, current in view.shards.items():
            rows = view.rows(module, shard)
            counts.pending += len(current.entries) - len(rows)
            for row in rows.values():
                if row["status"] == ERROR:
                    counts.errors += 1
                    report.errors.append(
                        {"module": module, "path": row["path"], "error": row.get("error", "")}
                    )
                else:
                    counts.done += 1
    return report
