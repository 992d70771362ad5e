"""Everyday re-runs of the real workflow: nothing changed, and a few photos added.

Run from the repository root: ``.venv/bin/python bench/bench_rerun.py [--quick]``.
Builds N small real JPEGs (content is irrelevant to a re-run), runs the workflow once,
then times a second run that must find nothing to do, and a third after adding ``--add``
photos (one new shard: its decode and metadata jobs, then the index and the report); the
third run ends when the new photos are searchable. The increment's wall time is set
against the images' own work (the new shard's jobs' wall time from their benchmark files).

``--before CHECKOUT`` times another checkout (e.g. ``git worktree add /tmp/before <commit>``)
in the same run: each round builds a fresh library for each side, the sides alternate
(before, after; then after, before), and every figure is a median over ``--rounds``
rounds, with the ratio after / before. Each side runs its own Snakefile with its own
package first on ``PYTHONPATH``. ``--repo`` names the "after" checkout (default: this one).
Besides wall time, each run's CPU seconds (Snakemake and every job process, user + system)
are counted: on a machine shared with other work they move far less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from common import Row, publish

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@dataclass
class Side:
    """One checkout's timings over the rounds."""

    name: str
    repo: Path
    first: list[float] = field(default_factory=list)
    nothing: list[float] = field(default_factory=list)
    increment: list[float] = field(default_factory=list)
    own_work: list[float] = field(default_factory=list)
    nothing_cpu: list[float] = field(default_factory=list)
    increment_cpu: list[float] = field(default_factory=list)


def build_library(root: Path, count: int) -> None:
    from imganalyzer.example.writers import write_jpeg

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for index in range(count):
        write_jpeg(root / f"{index // 100:03d}" / f"IMG_{index:05d}.jpg", base, quality=70)


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds of Snakemake and its jobs (user + system)
    log: str


def run_workflow(workdir: Path, config: Path, repo: Path = REPO) -> Run:
    command = [str(SNAKEMAKE), "-s", str(repo / "Snakefile"), "--configfile", str(config)]
    env = dict(os.environ, PYTHONPATH=str(repo))  # this checkout's package, not the venv's
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--cores", "2"], cwd=workdir, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if result.returncode != 0:
        raise SystemExit(f"{repo}: snakemake failed:\n{result.stdout}\n{result.stderr}")
    return Run(elapsed, cpu, result.stdout + result.stderr)


def one_round(side: Side, images: int, shard_size: int, add: int) -> None:
    """A fresh library of ``images`` photos: the first run, a no-change re-run, then ``add``
    photos more."""
    from imganalyzer.example.writers import write_jpeg

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_library(root / "library", images)
        config = root / "config.yaml"
        settings = {
            "library": str(root / "library"),
            "results": str(root / "results"),
            "shard_size": shard_size,
            # the CPU stages: model modules need weights this benchmark cannot download
            "modules": ["metadata", "technical"],
        }
        config.write_text(yaml.safe_dump(settings))
        side.first.append(run_workflow(root, config, side.repo).wall)
        nothing = run_workflow(root, config, side.repo)
        if "Nothing to be done" not in nothing.log:
            raise SystemExit(f"{side.repo}: the re-run found work to do:\n{nothing.log}")
        side.nothing.append(nothing.wall)
        side.nothing_cpu.append(nothing.cpu)
        before = {p.stem for p in (root / "results/catalog/shards").glob("*.tsv")}
        for index in range(add):
            write_jpeg(root / f"library/new/IMG_new{index}.jpg", np.zeros((64, 64, 3), np.uint8))
        increment = run_workflow(root, config, side.repo)
        side.increment.append(increment.wall)
        side.increment_cpu.append(increment.cpu)
        (new_shard,) = {p.stem for p in (root / "results/catalog/shards").glob("*.tsv")} - before
        side.own_work.append(shard_job_seconds(root / "results/benchmarks", new_shard))


def shard_job_seconds(benchmarks: Path, shard: str) -> float:
    """Wall seconds of the jobs of ``shard`` (decode, metadata), from their benchmark TSVs."""
    total = 0.0
    for tsv in benchmarks.glob(f"*/{shard}.tsv"):
        header, values = tsv.read_text().splitlines()[:2]
        total += float(dict(zip(header.split("\t"), values.split("\t"), strict=True))["s"])
    return total


def side_rows(side: Side, add: int) -> list[Row]:
    def runs(values: list[float]) -> str:
        return "runs " + ", ".join(f"{v:.2f}" for v in values)

    label = f"rerun [{side.name}]"
    increment = statistics.median(side.increment)
    own = statistics.median(side.own_work)
    return [
        Row(f"{label}: first run (everything)", statistics.median(side.first), "s"),
        Row(f"{label}: nothing changed", statistics.median(side.nothing), "s", runs(side.nothing)),
        Row(f"{label}: nothing changed, CPU", statistics.median(side.nothing_cpu), "s"),
        Row(f"{label}: {add} new photos", increment, "s", runs(side.increment)),
        Row(f"{label}: {add} new photos, CPU", statistics.median(side.increment_cpu), "s"),
        Row(f"{label}: {add} new photos, their jobs' own work", own, "s", "from benchmark files"),
        Row(f"{label}: {add} new photos, fixed cost", increment - own, "s"),
    ]


def ratio_rows(before: Side, after: Side, add: int) -> list[Row]:
    rows = []
    for name, attr in (
        ("nothing changed", "nothing"),
        (f"{add} new photos", "increment"),
        ("nothing changed, CPU", "nothing_cpu"),
        (f"{add} new photos, CPU", "increment_cpu"),
    ):
        old, new = getattr(before, attr), getattr(after, attr)
        per_round = ", ".join(f"{n / o:.2f}" for o, n in zip(old, new, strict=True))
        rows.append(
            Row(
                f"rerun: {name}, after / before",
                statistics.median(new) / statistics.median(old),
                "x",
                f"medians; per round {per_round}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--add", type=int, default=5, help="photos added for the increment")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout timed as 'after'")
    parser.add_argument("--before", type=Path, help="checkout timed as 'before', interleaved")
    parser.add_argument("--rounds", type=int, default=1, help="fresh libraries per side")
    parser.add_argument("--quick", action="store_true", help="200 images")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here (run_all.py)")
    args = parser.parse_args()
    if args.quick:
        args.images = 200
    after = Side("after" if args.before else "this", args.repo.resolve())
    sides = [Side("before", args.before.resolve()), after] if args.before else [after]
    for number in range(args.rounds):
        for side in sides if number % 2 == 0 else sides[::-1]:
            one_round(side, args.images, args.shard_size, args.add)
    shards = -(-args.images // args.shard_size)
    title = f"workflow re-runs ({args.images} images, {shards} shards, --cores 2)"
    if args.before:
        title += f"; before = {args.before}, after = {args.repo}; {args.rounds} round(s)"
    rows = [row for side in sides for row in side_rows(side, args.add)]
    if args.before:
        rows += ratio_rows(sides[0], after, args.add)
    publish(title, rows, args.json)


if __name__ == "__main__":
    main()
