"""A no-change re-run of the real workflow over a 1,000-image library.

Run from the repository root: ``.venv/bin/python bench/bench_rerun.py [--images N] [--quick]``.
Builds N small real JPEGs (content is irrelevant to a re-run), runs the workflow once,
then times a second run that must find nothing to do, and a third after adding one
photo (one new shard: its decode and metadata jobs only).
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
    from imganalyzer.samples import write_jpeg

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for index in range(count):
        write_jpeg(root / f"{index // 100:03d}" / f"IMG_{index:05d}.jpg", base, quality=70)


def run_workflow(workdir: Path, config: Path) -> tuple[float, str]:
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(config)]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--cores", "2"], cwd=workdir, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="200 images")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    args = parser.parse_args()
    if args.quick:
        args.images = 200
    from imganalyzer.samples import write_jpeg

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
        first, _ = run_workflow(root, config)
        second, log = run_workflow(root, config)
        nothing_to_do = "Nothing to be done" in log
        write_jpeg(root / "library/new/IMG_new.jpg", np.zeros((64, 64, 3), np.uint8))
        third, _ = run_workflow(root, config)
    shards = -(-args.images // args.shard_size)
    title = f"workflow re-runs ({args.images} images, {shards} shards, --cores 2)"
    rows = [
        Row("rerun: first run (everything)", first, "s"),
        Row("rerun: nothing changed", second, "s", f"nothing to be done: {nothing_to_do}"),
        Row("rerun: one new photo (1 shard, 2 jobs)", third, "s"),
    ]
    publish(title, rows, args.json)


if __name__ == "__main__":
    main()
