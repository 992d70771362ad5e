"""Dry-run of the whole workflow over a catalog of 1,000,000 entries.

Run from the repository root: ``.venv/bin/python bench/bench_dag.py [--entries N] [--quick]``.
Writes shard manifests only (no image files: a dry-run never opens one), enables every
module the config schema knows, and times ``snakemake -n`` in a child process; peak
memory is the child's max RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import Row, publish

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.config import load_schema
from imganalyzer.layout import Layout

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def write_catalog(results: Path, entries: int, shard_size: int) -> int:
    catalog = Catalog(Layout(results))
    catalog.shards_dir.mkdir(parents=True)
    shards = -(-entries // shard_size)
    for shard in range(shards):
        first = shard * shard_size
        rows = [
            Entry(f"{i // 1000:04d}/IMG_{i:07d}.jpg", 4_000_000 + i, 1_700_000_000_000_000_000 + i)
            for i in range(first, min(first + shard_size, entries))
        ]
        write_manifest(catalog.manifest_path(f"000001-{shard:05d}"), rows)
    return shards


def dry_run(root: Path, config: Path) -> tuple[float, float, str]:
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(config)]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "-n", "--quiet", "rules", "--cores", "16"],
        cwd=root,
        env=os.environ | {"IMGANALYZER_PREFLIGHT": "0"},  # plans jobs of models not here
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="50,000 entries")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    args = parser.parse_args()
    entries = 50_000 if args.quick else args.entries
    modules = load_schema()["properties"]["modules"]["items"]["enum"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "library").mkdir()
        shards = write_catalog(root / "results", entries, args.shard_size)
        config = root / "config.yaml"
        settings = {"library": str(root / "library"), "results": str(root / "results")}
        config.write_text(yaml.safe_dump(settings | {"modules": modules}))
        seconds, peak_mb, output = dry_run(root, config)
    jobs = next((line.split()[-1] for line in output.splitlines() if line.startswith("total")), "?")
    title = f"DAG dry-run ({entries:,} catalogued entries, {shards} shards, modules: {modules})"
    rows = [
        Row("dag: snakemake -n wall time", seconds, "s", f"{jobs} jobs"),
        Row("dag: snakemake -n peak memory", peak_mb, "MB", "max RSS of the child"),
    ]
    publish(title, rows, args.json)


if __name__ == "__main__":
    main()
