"""The model preflight stops only commands that run jobs: --unlock, --report and the other
commands that run none work with models missing; a dry-run still names them. Without
internet, `imganalyzer models fetch` ends at once with one message."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import SNAKEMAKE, make_workspace
from .test_failures import small_library

pytestmark = pytest.mark.slow

MISSING = "Configured models are missing"


def test_commands_that_run_no_job_work_with_models_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws = make_workspace(
        tmp_path,
        modules=["metadata", "technical", "objects", "faces"],
        objects={"model": str(tmp_path / "no-such-groundingdino")},
        faces={"pack": str(tmp_path / "no-such-pack")},
    )
    small_library(ws)
    # the README's first run: only the modules that need no model
    ws.snakemake("--config", "modules=[metadata,technical]")
    result_file = next((ws.results / "metadata").glob("*.jsonl"))

    commands = [
        ["--unlock"],
        ["--report", "report.html"],
        ["--lint"],
        ["--list-rules"],
        ["--list-target-rules"],
        ["--summary"],
        ["--detailed-summary"],
        ["--list-changes", "params"],
        ["--list-untracked"],
        ["--cleanup-metadata", str(result_file)],
        ["--dag"],
        ["--rulegraph"],
        ["--filegraph"],
    ]
    for args in commands:
        result = ws.snakemake(*args, check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and MISSING not in output, (args, output)
    assert "<html" in (ws.root / "report.html").read_text()[:1000].lower()

    dry = ws.snakemake("-n", check=False)  # a dry-run plans jobs: it still names them
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0 and output.count(MISSING) == 1
    assert "no-such-groundingdino" in output and "no-such-pack" in output


def fetch_offline(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`imganalyzer models fetch` in a subprocess, every model downloadable, empty caches,
    and every download host a name that never resolves (RFC 2606's .invalid) unless
    ``env`` says otherwise: offline without touching the real network."""
    config = tmp_path / "offline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "library": str(tmp_path),
                "modules": ["metadata", "embedding", "aesthetic", "objects", "captions"],
                "embedding": {"model": "hf-hub:org/clip"},
                "aesthetic": {"weights": "https://weights.imganalyzer-test.invalid/head.pth"},
                "objects": {"model": "org/gdino"},
                "captions": {"model": "org/blip2"},
            }
        )
    )
    variables = {
        "HF_ENDPOINT": "https://hub.imganalyzer-test.invalid",
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    environment = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environment |= variables | env
    command = [str(SNAKEMAKE.parent / "imganalyzer"), "models", "fetch", "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


@pytest.mark.parametrize("offline", [{}, {"HF_HUB_OFFLINE": "1"}])
def test_models_fetch_without_internet_ends_with_one_message(
    tmp_path: Path, offline: dict[str, str]
) -> None:
    result = fetch_offline(tmp_path, **offline)
    assert result.returncode == 1 and result.stdout == f"config: {tmp_path / 'offline.yaml'}\n"
    err = result.stderr
    assert err.count("imganalyzer:") == 1 and "4 of 4 configured models could not be fetched" in err
    assert "Retrying" not in err and "Traceback" not in err
    if offline:
        assert err.count("HF_HUB_OFFLINE is set") == 4
    else:
        assert "hub.imganalyzer-test.invalid cannot be reached" in err
        assert "weights.imganalyzer-test.invalid cannot be reached" in err
    for folder, name in [
        (tmp_path / "hf", "Hugging Face hub cache"),
        (tmp_path / "torch" / "hub" / "checkpoints", "torch hub checkpoints"),
    ]:  # the caches to copy, where they go here
        assert re.search(rf"\n  {re.escape(str(folder))} +{name}", err), folder
    assert "imganalyzer models fetch" not in err  # never the command that just failed
    assert not (tmp_path / "torch" / "hub" / "checkpoints").exists()  # nothing half-written
