"""Snakemake adapter: header-only metadata of one shard."""

from imganalyzer.decode.jobs import job_logging, run_metadata_shard


def main(smk) -> None:
    with job_logging(smk.log[0]):
        run_metadata_shard(
            manifest=smk.input.manifest,
            library=smk.params.library,
            output=smk.output[0],
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
