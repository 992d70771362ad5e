"""Overhead of a SLURM run: the same DAG run locally and through profiles/slurm.

Run from the repository root, as root, with SLURM installed (see .ci/run):

    .venv/bin/python bench/bench_slurm.py            # about 4 minutes on 2 cores
    .venv/bin/python bench/bench_slurm.py --quick    # one shard per stage

Starts the single-node cluster of tests/cluster (stopped at the end), builds the example
library and runs its metadata + technical DAG (decode and metadata per shard on nodes; the
index and report as local rules) from scratch three times: locally with --cores 2, through
SLURM with the plugin's first status check after 2 s, and with its default 40 s. Per node
job it reads how long SLURM held it (the jobcomp log) and how long its script ran (the
rule's benchmark file): the difference is the node's start-up (the job step's srun and
Snakemake re-parsing the workflow). Not in run_all.py: it needs root and SLURM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from common import Row, bench_parser, publish

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
sys.path.insert(0, str(REPO))
from tests.cluster.slurm_cluster import (  # noqa: E402
    SlurmCluster,
    missing_reason,
    new_cluster_folder,
)

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")


def run(root: Path, name: str, settings: dict, *args: str, env: dict | None = None) -> tuple:
    workdir = root / name
    workdir.mkdir()
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(settings | {"results": str(workdir / "results")}))
    command = ["timeout", "-k", "10", "-s", "KILL", "1200", str(SNAKEMAKE)]
    command += ["-s", str(REPO / "Snakefile"), "--configfile", str(config), "--cores", "2"]
    started = time.perf_counter()
    result = subprocess.run([*command, *args], cwd=workdir, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout + result.stderr, workdir / "results"


def node_startup(cluster: SlurmCluster, job_ids: list[str], results: Path) -> float:
    """Mean seconds a node job was held by SLURM beyond its script's own time."""
    held = {}
    for line in cluster.jobcomp.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields["JobId"] in job_ids:
            start, end = (datetime.fromisoformat(fields[k]) for k in ("StartTime", "EndTime"))
            held[fields["JobId"]] = (end - start).total_seconds()
    scripts = [
        float(path.read_text().splitlines()[1].split("\t")[0])
        for path in (results / "benchmarks").glob("*/*.tsv")
        if path.parent.name in ("decode", "metadata")
    ]
    return (sum(held.values()) - sum(scripts)) / len(job_ids)


def main() -> None:
    parser = bench_parser(__doc__, "one shard per stage")
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        raise SystemExit(reason)
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    cluster = SlurmCluster(new_cluster_folder())
    try:
        subprocess.run(
            [sys.executable, "-m", "imganalyzer.cli", "example", str(root / "library")],
            check=True,
            capture_output=True,
        )
        settings = {
            "library": str(root / "library"),
            "shard_size": 14 if args.quick else 4,
            "threads_per_decode_job": 2,
            "threads_per_metadata_job": 2,
            "modules": ["metadata", "technical"],
        }
        started = time.perf_counter()
        cluster.start()
        setup = time.perf_counter() - started
        local, _, _ = run(root, "local", settings)
        profile = ("--workflow-profile", str(REPO / "profiles/slurm"))
        profile += ("--slurm-status-command", "squeue")
        fast, log, results = run(
            root,
            "slurm-2s",
            settings,
            *profile,
            "--slurm-init-seconds-before-status-checks",
            "2",
            env=cluster.env,
        )
        jobs = SUBMITTED.findall(log)
        startup = node_startup(cluster, jobs, results)
        default, _, _ = run(root, "slurm-40s", settings, *profile, env=cluster.env)
    finally:
        started = time.perf_counter()
        cluster.stop()
        teardown = time.perf_counter() - started
        shutil.rmtree(cluster.folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    n = len(jobs)
    title = f"SLURM overhead (example library, metadata + technical, {n} node jobs)"
    rows = [
        Row("slurm: cluster start / stop", setup, "s", f"stop {teardown:.1f} s"),
        Row("slurm: local run, --cores 2", local, "s"),
        Row("slurm: SLURM run, first status check after 2 s", fast, "s"),
        Row("slurm: SLURM run, plugin default (40 s)", default, "s"),
        Row("slurm: overhead per node job (2 s)", (fast - local) / n, "s", "vs the local run"),
        Row("slurm: overhead per node job (40 s)", (default - local) / n, "s"),
        Row("slurm: node start-up per job", startup, "s", "SLURM's time minus the script's"),
    ]
    publish(title, rows, args.json)


if __name__ == "__main__":
    main()
