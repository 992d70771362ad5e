"""The model preflight stops only commands that run jobs: --unlock, --report and the other
commands that run none work with models missing; a dry-run still names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import make_workspace
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
