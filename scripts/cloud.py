"""Snakemake adapter: descriptions from a remote vision model for the shards of one job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.cloud import CloudSettings
from imganalyzer.modules.cloud_job import run_cloud_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    layout = Layout(smk.params.results)
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        settings = CloudSettings.from_config(smk.params.settings)
        run_cloud_job(layout, smk.wildcards.job, smk.params.shards, settings, layout.cloud_ledger)


main(snakemake)  # noqa: F821 (injected by Snakemake)
