"""The workflow through `--workflow-profile profiles/slurm` on a real single-node SLURM
cluster: every node job goes through sbatch to the partition the profile names (GPU rules
to `gpu` with a GPU request); a job killed with scancel mid-run is re-run alone by the next
submission; the results then equal a local run's, and a third submission has nothing to do.
One cluster run covers all of it: each costs minutes on 2 cores."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from imganalyzer.config import default_config
from tests.support.tiny_groundingdino import build_tiny_groundingdino
from tests.support.tiny_insightface import build_tiny_insightface

from ..e2e.conftest import REPO, SNAKEMAKE, TEST_TIERS
from .slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MODULES = ["metadata", "technical", "duplicates", "embedding", "objects", "faces"]
# Rules that run on a node, and the partition profiles/slurm sends them to; the others
# (all, people, duplicates, index, benchmark_report) are local rules of the submitting host.
PARTITIONS = {
    "decode": "cpu",
    "metadata": "cpu",
    "duplicate_hashes": "cpu",
    "embedding": "gpu",
    "objects": "gpu",
    "faces": "gpu",
}
# Short polls: the plugin waits 40 s before its first status check by default.
CLUSTER_ARGS = (
    "--workflow-profile", str(REPO / "profiles/slurm"),
    # no accounting database here: sacct fails and the plugin would wait forever
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
)  # fmt: skip
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/")
# Fields that measure the run rather than the photos.
TIMING_KEY = re.compile(r"seconds|elapsed|duration|_s$|_at$|time|per_s|started|finished")
# Digests of result files' sizes and mtimes (caches' and reports' freshness checks; a browse
# part's stamp: the index fingerprints and thumbnail file it was made from).
FILE_VERSION_KEYS = {"key", "fingerprint", "stamp"}


@pytest.fixture(scope="module")
def cluster_settings(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict) -> dict:
    root = tmp_path_factory.mktemp("cluster_inputs")
    library = root / "library"
    subprocess.run([sys.executable, "-m", "imganalyzer.cli", "example", str(library)], check=True)
    vision = {
        "objects": {
            "model": str(build_tiny_groundingdino(root / "groundingdino")),
            # random weights: low thresholds, every label a person, so faces run everywhere
            "box_threshold": 0.05,
            "text_threshold": 0.05,
            "person_labels": default_config()["objects"]["prompts"],
            "batch_size": 2,
        },
        "faces": {"pack": str(build_tiny_insightface(root / "faces")), "min_face_size": 8},
        "people": {"min_cluster_size": 1},
    }
    return (
        tiny_models
        | vision
        | {
            "library": str(library),
            "shard_size": 7,  # 14 example photos: two shards
            "tiers": TEST_TIERS,
            "threads_per_decode_job": 2,
            "modules": MODULES,
            # GPU rules ask for a GPU (gpu=1) as on a real cluster; with no CUDA on the node
            # the models fall back to the CPU
            "device": "auto",
        }
    )


def write_config(root: Path, settings: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(settings | {"results": str(root / "results")}))
    return config


def snakemake_command(root: Path, *args: str) -> list[str]:
    return [
        *("timeout", "-k", "10", "-s", "KILL", "900"),  # a hung poll loop ignores SIGTERM
        *(str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile")),
        *("--configfile", str(root / "config.yaml"), "--cores", "2", *args),
    ]


def snakemake(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = snakemake_command(root, *args)
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)


def run_ok(root: Path, *args: str, env: dict | None = None) -> str:
    result = snakemake(root, *args, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory, cluster_settings: dict) -> Path:
    root = tmp_path_factory.mktemp("local_run")
    write_config(root, cluster_settings)
    started = time.monotonic()
    run_ok(root)
    print(f"local run: {time.monotonic() - started:.1f} s")
    return root


def planned_jobs(output: str) -> dict[str, int]:
    """Snakemake's first 'Job stats' table: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def submissions(output: str) -> list[tuple[str, str]]:
    """(SLURM job id, rule) of every sbatch the plugin made."""
    return SUBMITTED.findall(output)


def finished_jobs(cluster: SlurmCluster) -> dict[str, dict[str, str]]:
    """SLURM's job completion log: job id -> its fields (Partition, JobState...)."""
    jobs = {}
    for line in cluster.jobcomp.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def comparable(root: Path) -> dict[str, object]:
    """Everything a run wrote and what its index answers, minus logs, benchmarks, timing
    fields and fingerprints of file versions (sizes and mtimes of the result files)."""
    results = root / "results"
    found: dict[str, object] = {"index documents": search_all(root)}
    for path in sorted(results.rglob("*")):
        relative = path.relative_to(results).as_posix()
        if path.is_file() and not SKIPPED.match(relative):
            found[relative] = _content(path)
    return found


# logs and timings; Tantivy's segments (random names: the index is compared through its
# search results); the index's record of the file versions it read; lock files; the run's
# recorded config (it names its own results folder)
SKIPPED = re.compile(
    r"(logs|benchmarks|report|run)/|index/tantivy/|index/state\.json"
    r"|.*(\.lock|\.snakemake_timestamp)$"
)


def _content(path: Path) -> object:
    if path.suffix == ".jsonl":
        return [_untimed(json.loads(line)) for line in path.read_text().splitlines()]
    if path.suffix == ".npy":
        return np.load(path).tolist()
    if path.suffix == ".npz":  # people's centroids (sums over faces, see Close); the browse table
        with np.load(path) as arrays:
            return {name: _array(arrays[name]) for name in arrays.files}
    if path.suffix == ".zip":  # member contents; the zip headers hold write times
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    try:
        return _untimed(json.loads(path.read_bytes()))
    except ValueError:
        return path.read_bytes()


def _array(array: np.ndarray) -> object:
    """Numbers compared as Close, anything else (strings, keys) exactly."""
    return Close(array) if np.issubdtype(array.dtype, np.number) else array.tolist()


class Close:
    """An array equal to another within float32 rounding. People's centroids are means the
    `people` rule computes on the submitting host in both runs, from identical faces; their
    last bits were seen to differ (1e-8) between a local and a SLURM-mode run."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Close)
            and self.array.shape == other.array.shape
            and np.allclose(self.array, other.array, rtol=1e-5, atol=1e-6, equal_nan=True)
        )

    def __repr__(self) -> str:
        return f"Close({self.array!r})"


def _untimed(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: _untimed(v)
            for k, v in value.items()
            if not TIMING_KEY.search(k) and k not in FILE_VERSION_KEYS
        }
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def search_all(root: Path) -> object:
    command = [sys.executable, "-m", "imganalyzer.cli", "search", "", "--limit", "1000"]
    command += ["--json", "--config", str(root / "config.yaml")]
    found = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    # the ranking of an empty query depends on Tantivy's segment layout: compare documents
    hits = {hit.pop("path"): hit for hit in json.loads(found.stdout)}
    return {
        path: _untimed({k: v for k, v in hit.items() if k != "score"}) for path, hit in hits.items()
    }


def assert_same_results(cluster_root: Path, local_root: Path) -> None:
    cluster, local = comparable(cluster_root), comparable(local_root)
    assert sorted(cluster) == sorted(local)
    different = [name for name in local if cluster[name] != local[name]]
    assert not different, different


def test_node_jobs_go_through_sbatch_a_cancelled_one_reruns_alone_results_equal_local(
    slurm: SlurmCluster, cluster_settings: dict, local_results: Path, tmp_path: Path
) -> None:
    write_config(tmp_path, cluster_settings)
    started = time.monotonic()
    with (tmp_path / "first.log").open("w") as log:
        first_run = subprocess.Popen(
            snakemake_command(tmp_path, *CLUSTER_ARGS),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=slurm.env,
        )
        try:
            victim = running_job_of(slurm, "embedding", first_run, tmp_path)
            slurm.scancel(victim)
        finally:
            first_run.wait(timeout=900)
    print(f"cluster run with one job cancelled: {time.monotonic() - started:.1f} s")
    first = (tmp_path / "first.log").read_text()
    assert first_run.returncode != 0, first

    # every node job of the DAG went through sbatch, to the profile's partition
    planned = planned_jobs(first)
    node_jobs = Counter(r for r, n in planned.items() if r in PARTITIONS for _ in range(n))
    assert node_jobs == {
        "decode": 2, "metadata": 2, "duplicate_hashes": 2,
        "embedding": 1, "objects": 1, "faces": 1,
    }  # fmt: skip
    submitted = submissions(first)
    assert Counter(rule for _, rule in submitted) == node_jobs
    finished = finished_jobs(slurm)
    for job_id, rule in submitted:
        assert finished[job_id]["Partition"] == PARTITIONS[rule], rule
        expected = "CANCELLED" if job_id == victim else "COMPLETED"
        assert finished[job_id]["JobState"] == expected, (rule, finished[job_id])
    # GPU rules asked for the (fake) GPU, as profiles/slurm makes them do
    gpu_jobs = [job_id for job_id, rule in submitted if PARTITIONS[rule] == "gpu"]
    assert gpu_jobs and all(slurm.gpus_of(job_id) == 1 for job_id in gpu_jobs)

    # the next submission runs the cancelled job alone, and the results equal a local run's
    second = run_ok(tmp_path, *CLUSTER_ARGS, env=slurm.env)
    resubmitted = submissions(second)
    assert [rule for _, rule in resubmitted] == ["embedding"]
    assert finished_jobs(slurm)[resubmitted[0][0]]["JobState"] == "COMPLETED"
    assert_same_results(tmp_path, local_results)

    third = run_ok(tmp_path, *CLUSTER_ARGS, env=slurm.env)
    assert "Nothing to be done" in third
    assert not submissions(third)


def running_job_of(slurm: SlurmCluster, rule: str, run: subprocess.Popen, workdir: Path) -> str:
    """The SLURM id of the rule's job once Snakemake on the node has started the rule's work
    (its job log shows the rule: the workflow re-parsed, the script starting)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and run.poll() is None:
        for job in slurm.squeue():
            if not job["comment"].startswith(f"rule_{rule}") or job["state"] != "RUNNING":
                continue
            logs = workdir.glob(f".snakemake/slurm_logs/rule_{rule}/*/{job['id']}.log")
            if any(f"rule {rule}:" in log.read_text(errors="replace") for log in logs):
                return job["id"]
        time.sleep(0.2)
    raise AssertionError(f"no {rule} job was ever seen working")
