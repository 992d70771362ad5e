"""Snakemake adapter: descriptions from a remote vision model for the shards of one job."""

from pathlib import Path

from imganalyzer.modules.cloud import (
    CloudSettings,
    CloudShardFiles,
    run_cloud_job,
    write_cloud_summary,
)
from imganalyzer.runtime.batched import tier_job_files
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    out = Path(smk.params.out_dir)
    shards = tier_job_files(
        CloudShardFiles,
        smk.params.shards,
        smk.input.manifests,
        smk.input.tiers,
        smk.input.technical,
        out,
    )
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        settings = CloudSettings.from_config(smk.params.settings)
        stats = run_cloud_job(shards, settings, out / "ledger.json")
        write_cloud_summary(smk.output[0], stats, settings, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
