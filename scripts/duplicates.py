"""Snakemake adapter: the exact and near duplicate groups of the whole library."""

from imganalyzer.duplicates import write_duplicates
from imganalyzer.shardjobs import job_logging


def main(smk) -> None:
    with job_logging(smk.log[0]):
        write_duplicates(
            smk.params.results,
            smk.params.library,
            smk.output[0],
            use_clip=smk.params.use_clip,
            **dict(smk.params.settings),
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
