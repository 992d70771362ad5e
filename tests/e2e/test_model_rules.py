"""The model rules, generated from the registry, declare exactly what each model class reads:
the inputs of every model job in a real dry-run, against the class's ``inputs``,
``input_arrays`` and ``tier`` (the runtime reads those, and nothing else, in
``runtime.job.read_job_shard``)."""

from __future__ import annotations

import re

import pytest

from imganalyzer.catalog.manifests import group_shards
from imganalyzer.catalog.store import Catalog
from imganalyzer.config import load_config_file
from imganalyzer.layout import Layout
from imganalyzer.runtime.registry import MODELS

from .conftest import Workspace, build_test_library, make_workspace

pytestmark = pytest.mark.slow

JOB_LINES = re.compile(r"^rule (\w+):\n((?:    .*\n)+)", re.MULTILINE)


def planned_inputs(workspace: Workspace) -> dict[tuple[str, str], set[str]]:
    """(rule, job) -> its input files, as a dry-run plans every model job."""
    output = workspace.snakemake("-n").stdout
    planned = {}
    for rule, body in JOB_LINES.findall(output):
        fields = dict(line.strip().split(": ", 1) for line in body.splitlines() if ": " in line)
        if rule in MODELS:
            job = fields["wildcards"].removeprefix("job=")
            planned[rule, job] = set(fields.get("input", "").split(", ")) - {""}
    return planned


def expected_inputs(layout: Layout, module: str, job: str, shards: list[str], gated: bool):
    """The files the class of ``module`` reads for ``job``, built as its job builds it."""
    spec = MODELS[module]
    config = load_config_file(layout.root.parent / "config.yaml", check_paths=False)
    model = spec.model_class().for_job(spec.settings_type().from_config(config), layout, gated)
    files = {str(layout.manifest(s)) for s in shards}
    if model.tier is not None:
        files |= {str(layout.tiers(s)) for s in shards}
    for read in (*model.inputs, *model.input_arrays):
        if read == "technical":
            files |= {str(layout.technical(s)) for s in shards}
        else:  # another model module's rows and arrays: its job's summary is written last
            files.add(str(layout.job_summary(read, job)))
    return files


@pytest.mark.parametrize("with_objects", [True, False])
def test_each_model_rule_declares_what_its_class_reads(
    tmp_path, tiny_models, with_objects, monkeypatch
):
    monkeypatch.setenv("IMGANALYZER_PREFLIGHT", "0")  # the models are not there: only planned
    modules = ["metadata", "technical", *(m for m in MODELS if with_objects or m != "ocr")]
    if not with_objects:
        modules.remove("objects")  # faces then reads every image: no gate
    config = tiny_models | {"modules": modules, "shard_size": 4, "shards_per_model_job": 2}
    workspace = make_workspace(tmp_path, **config)
    build_test_library(workspace.library)
    planned = planned_inputs(workspace)
    layout = Layout(workspace.results)
    plan = Catalog(layout).plan(str(workspace.library), 4, exclude=[workspace.results])
    jobs = group_shards(sorted(plan.shards), 2)
    assert len(jobs) == 2 and any(len(shards) == 2 for shards in jobs.values())
    enabled = [m for m in modules if m in MODELS]
    assert set(planned) == {(m, job) for m in enabled for job in jobs}
    for (rule, job), inputs in planned.items():
        assert inputs == expected_inputs(layout, rule, job, jobs[job], with_objects), rule
