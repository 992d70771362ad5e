"""Snakemake adapter: zero-shot objects (GroundingDINO) of the shards of one model job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.objects import run_objects_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_objects_job(
            Layout(smk.params.results),
            smk.wildcards.job,
            smk.params.shards,
            device=smk.params.device,
            threads=smk.threads,
            **smk.params.settings,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
