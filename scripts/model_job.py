"""Snakemake adapter: one job of a model module (the rule's name) over a group of shards."""

from imganalyzer.layout import Layout
from imganalyzer.runtime.job import run_module_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_module_job(
            smk.rule,
            Layout(smk.params.results),
            smk.wildcards.job,
            dict(smk.params.items()),
            threads=smk.threads,
            inputs=list(smk.input.keys()),
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
