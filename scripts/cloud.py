"""Snakemake adapter: descriptions from a remote vision model for the shards of one job."""

from pathlib import Path

from imganalyzer.cloud import CloudSettings, CloudShardFiles, run_cloud_job, write_cloud_summary
from imganalyzer.runtime import tier_job_files
from imganalyzer.shardjobs import job_logging


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
    with job_logging(smk.log[0]):
        settings = CloudSettings.from_config(smk.params.settings)
        stats = run_cloud_job(shards, settings, out / "ledger.json")
        write_cloud_summary(smk.output[0], stats, settings, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
