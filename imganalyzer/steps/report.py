"""`imganalyzer report`: per-module throughput from the workflow's own benchmark files.

Every rule writes ``results/benchmarks/<rule>/<job>.tsv`` (Snakemake's ``benchmark:``:
wall seconds ``s``, ``max_rss`` in MB, ``cpu_time``). A job is a shard
(``<batch>-<n>``) or a model job over several shards (``<batch>-<first>-<last>``); its
image count comes from the shard manifests.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout

REPORT_FOLDER = "report"  # this report's own job: not a module


@dataclass
class ModuleReport:
    module: str
    jobs: int
    images: int
    seconds: float  # wall seconds summed over jobs
    p50_job_s: float
    p95_job_s: float
    peak_rss_mb: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["images_per_s"] = round(self.images_per_s, 2)
        return data


def job_shards(job: str, shard_ids: list[str]) -> list[str]:
    """The shards a benchmark's job id covers: itself, or a model job's range."""
    parts = job.split("-")
    if len(parts) == 2:
        return [job] if job in shard_ids else []
    if len(parts) != 3:
        return []  # a global job (the report itself): no images of its own
    batch, first, last = parts
    return [s for s in shard_ids if s.startswith(f"{batch}-") and first <= s[7:] <= last]


def module_reports(layout: Layout) -> list[ModuleReport]:
    catalog = Catalog(layout)
    shard_ids = catalog.shard_ids()
    sizes: dict[str, int] = {}

    def images_of(job: str) -> int:
        for shard in job_shards(job, shard_ids):
            if shard not in sizes:
                sizes[shard] = len(read_manifest(catalog.manifest_path(shard)))
        return sum(sizes[s] for s in job_shards(job, shard_ids))

    reports = []
    folders = layout.benchmarks.glob("*")
    for folder in sorted(p for p in folders if p.is_dir() and p.name != REPORT_FOLDER):
        read = [(f.stem, _read_benchmark(f)) for f in sorted(folder.glob("*.tsv"))]
        runs = [(job, row) for job, row in read if row is not None]
        if not runs:
            continue
        seconds = np.array([row["s"] for _, row in runs])
        reports.append(
            ModuleReport(
                module=folder.name,
                jobs=len(runs),
                images=sum(images_of(job) for job, _ in runs),
                seconds=round(float(seconds.sum()), 2),
                p50_job_s=round(float(np.percentile(seconds, 50)), 2),
                p95_job_s=round(float(np.percentile(seconds, 95)), 2),
                peak_rss_mb=round(max(row["max_rss"] for _, row in runs), 1),
            )
        )
    return reports


def _read_benchmark(path: Path) -> dict[str, float] | None:
    """The last run recorded in a benchmark TSV (``--benchmark-repeats`` adds rows)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        return None
    return {"s": _number(rows[-1].get("s")), "max_rss": _number(rows[-1].get("max_rss"))}


def _number(text: str | None) -> float:
    if text is None:  # a missing column
        return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0  # Snakemake writes "NA" where psutil could not measure


def format_reports(reports: list[ModuleReport]) -> str:
    header = f"{'module':<12} {'jobs':>6} {'images':>9} {'images/s':>9} "
    header += f"{'p50 s/job':>10} {'p95 s/job':>10} {'peak MB':>9}"
    lines = [header]
    for r in reports:
        lines.append(
            f"{r.module:<12} {r.jobs:>6} {r.images:>9} {r.images_per_s:>9.1f} "
            f"{r.p50_job_s:>10.2f} {r.p95_job_s:>10.2f} {r.peak_rss_mb:>9.0f}"
        )
    return "\n".join(lines)


def write_time_plot(reports: list[ModuleReport], path: str | os.PathLike) -> None:
    """A horizontal bar chart (SVG, no plotting library) of wall seconds per module."""
    from imganalyzer.files import atomic_write_text

    bar_height, label_width, width = 26, 110, 640
    longest = max((r.seconds for r in reports), default=0) or 1.0
    scale = (width - label_width - 150) / longest
    height = bar_height * len(reports) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="13">',
        '<text x="4" y="16" font-weight="bold">wall time per module (s, all jobs)</text>',
    ]
    for row, r in enumerate(reports):
        y = 28 + row * bar_height
        parts += [
            f'<text x="4" y="{y + 15}">{r.module}</text>',
            f'<rect x="{label_width}" y="{y}" width="{r.seconds * scale:.1f}" '
            f'height="{bar_height - 6}" fill="#4c78a8"/>',
            f'<text x="{label_width + r.seconds * scale + 6:.1f}" y="{y + 15}">'
            f"{r.seconds:.1f} s, {r.images_per_s:.1f} img/s</text>",
        ]
    parts.append("</svg>")
    atomic_write_text(path, "\n".join(parts) + "\n")
