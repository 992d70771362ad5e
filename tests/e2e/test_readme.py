"""The README as a contract: every command of its first two code blocks (the quick start and
the next steps after the example) runs as written, in a fresh workspace: a copy of the
repository's tracked files, with this environment's ``bin`` on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, SNAKEMAKE

pytestmark = pytest.mark.slow

# Lines of those blocks that are not run, and why. Any other line is run.
NOT_RUN = {
    "python3 -m venv": "the install: the test runs inside the environment it installed",
    "pytest": "the test suite, which this test is part of",
}


def readme_commands() -> list[str]:
    """The command lines of the README's first two ```bash blocks, in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)
    return [line for block in blocks[:2] for line in block.splitlines() if line.strip()]


def not_run(command: str) -> bool:
    return any(command.startswith(start) for start in NOT_RUN)


# What a run or a command leaves in a working copy: not part of a fresh clone.
UNTRACKED = (".git", ".venv", ".snakemake", "results", "example", "exported", "report.html")


def fresh_workspace(root: Path) -> Path:
    """The repository's tracked files (as a fresh clone has them) under ``root``; outside a
    git checkout, its files less what runs leave behind."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:

        def left_behind(folder: str, names: list[str]) -> set[str]:
            top = Path(folder) == REPO
            return {n for n in names if (top and n in UNTRACKED) or n == "__pycache__"}

        return Path(shutil.copytree(REPO, root, ignore=left_behind))
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # not a file deleted in the working tree
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def test_the_readme_commands_run_as_written_after_the_example(tmp_path: Path) -> None:
    commands = readme_commands()
    skipped = [c for c in commands if not_run(c)]
    assert [next(s for s in NOT_RUN if c.startswith(s)) for c in skipped] == list(NOT_RUN)
    assert any(c.startswith("imganalyzer example") for c in commands)  # the example first
    workspace = fresh_workspace(tmp_path / "imganalyzer")
    env = dict(os.environ, PYTHONPATH=str(workspace))  # the copy's package, Snakefile, scripts
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("IMGANALYZER_RESULTS", None)
    outputs = {}
    for command in (c for c in commands if not not_run(c)):
        result = subprocess.run(
            ["bash", "-c", command], cwd=workspace, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}\n{output}"
        assert "Traceback" not in output, f"{command}\n{output}"
        outputs[command.split("#")[0].strip()] = output
    report = outputs["snakemake --report report.html"]
    assert "Report created" in report and (workspace / "report.html").is_file()
    # the report is of the example's run: only its modules, no job that never ran
    assert "Missing metadata" not in report
    assert "Loading script code for rule embedding" not in report
    assert (workspace / "exported/images.parquet").is_file()
