"""The README's module tables say what the model registry says."""

from __future__ import annotations

from pathlib import Path

import yaml

from imganalyzer.runtime.registry import MODELS

REPO = Path(__file__).resolve().parents[2]


def table_rows(heading: str) -> dict[str, list[str]]:
    """First cell -> the cells of each row of the first table after ``heading``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_the_slurm_table_gives_each_model_rule_its_entrys_threads_memory_and_partition() -> None:
    rows = table_rows("## SLURM cluster")
    for module, spec in MODELS.items():
        _, runs_on, threads, mem_mb, partition = rows[module]
        assert (runs_on, int(threads), int(mem_mb)) == ("node", spec.threads, spec.mem_mb)
        on_gpu = spec.gpu is True
        assert partition.startswith("gpu") == on_gpu, module
        assert ("--gpus=1" in partition) == bool(spec.gpu), module


def test_the_slurm_profile_sends_every_gpu_model_rule_to_the_gpu_partition() -> None:
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    on_gpu = {rule for rule, r in profile["set-resources"].items() if r["slurm_partition"] == "gpu"}
    assert on_gpu == {module for module, spec in MODELS.items() if spec.gpu is True}


def test_the_module_table_lists_each_model_module_and_its_results() -> None:
    rows = table_rows("## What it does today")
    for module in MODELS:
        assert f"`results/{module}/<shard>." in rows[module][2], module
