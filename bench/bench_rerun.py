"""The fixed cost of a small increment: re-runs of the real workflow.

Run from the repository root: ``.venv/bin/python bench/bench_rerun.py [--images N] [--quick]``.
Builds N small real JPEGs (content is irrelevant to a re-run), runs the workflow once,
then times a second run that must find nothing to do, and a third after adding ``--add``
photos (one new shard: its decode and metadata jobs, then the index and the report).
The increment's wall time is set against the images' own work: the new shard's jobs'
wall time from their Snakemake benchmark files; the rest is the run's fixed cost.
``--repo`` runs another checkout's Snakefile (e.g. the main branch, for a before/after).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import Row, publish

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def build_library(root: Path, count: int) -> None:
    from imganalyzer.example.writers import write_jpeg

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for index in range(count):
        write_jpeg(root / f"{index // 100:03d}" / f"IMG_{index:05d}.jpg", base, quality=70)


def run_workflow(workdir: Path, config: Path, repo: Path = REPO) -> tuple[float, str]:
    command = [str(SNAKEMAKE), "-s", str(repo / "Snakefile"), "--configfile", str(config)]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--cores", "2"], cwd=workdir, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--add", type=int, default=5, help="photos added for the increment")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose Snakefile runs")
    parser.add_argument("--quick", action="store_true", help="200 images")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    args = parser.parse_args()
    if args.quick:
        args.images = 200
    from imganalyzer.example.writers import write_jpeg

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_library(root / "library", args.images)
        config = root / "config.yaml"
        settings = {
            "library": str(root / "library"),
            "results": str(root / "results"),
            "shard_size": args.shard_size,
            # the CPU stages: model modules need weights this benchmark cannot download
            "modules": ["metadata", "technical"],
        }
        config.write_text(yaml.safe_dump(settings))
        first, _ = run_workflow(root, config, args.repo)
        second, log = run_workflow(root, config, args.repo)
        nothing_to_do = "Nothing to be done" in log
        before = set((root / "results/catalog/shards").glob("*.tsv"))
        for index in range(args.add):
            write_jpeg(root / f"library/new/IMG_new{index}.jpg", np.zeros((64, 64, 3), np.uint8))
        third, _ = run_workflow(root, config, args.repo)
        (new_shard,) = {p.stem for p in (root / "results/catalog/shards").glob("*.tsv")} - {
            p.stem for p in before
        }
        own_work = shard_job_seconds(root / "results/benchmarks", new_shard)
    shards = -(-args.images // args.shard_size)
    title = f"workflow re-runs ({args.images} images, {shards} shards, --cores 2, {args.repo})"
    rows = [
        Row("rerun: first run (everything)", first, "s"),
        Row("rerun: nothing changed", second, "s", f"nothing to be done: {nothing_to_do}"),
        Row(f"rerun: {args.add} new photos (1 shard)", third, "s"),
        Row(f"rerun: {args.add} new photos, the images' own work", own_work, "s", "their jobs"),
        Row(f"rerun: {args.add} new photos, fixed cost", third - own_work, "s"),
        Row(f"rerun: {args.add} new photos, wall / own work", third / own_work, "x"),
    ]
    publish(title, rows, args.json)


def shard_job_seconds(benchmarks: Path, shard: str) -> float:
    """Wall seconds of the jobs of ``shard`` (decode, metadata), from their benchmark TSVs."""
    total = 0.0
    for tsv in benchmarks.glob(f"*/{shard}.tsv"):
        header, values = tsv.read_text().splitlines()[:2]
        total += float(dict(zip(header.split("\t"), values.split("\t"), strict=True))["s"])
    return total


if __name__ == "__main__":
    main()
