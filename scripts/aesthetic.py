"""Snakemake adapter: aesthetic scores of the shards of one model job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.aesthetic import run_aesthetic_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_aesthetic_job(
            Layout(smk.params.results),
            smk.wildcards.job,
            smk.params.shards,
            smk.params.weights,
            smk.params.batch_size,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
