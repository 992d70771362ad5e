"""Snakemake adapter: header-only metadata of one shard."""

from imganalyzer.decode.jobs import run_metadata_shard
from imganalyzer.progress import job_logging


def main(smk) -> None:
    with job_logging(smk.log[0]):
        run_metadata_shard(
            manifest=smk.input.manifest,
            library=smk.params.library,
            output=smk.output[0],
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
