"""Snakemake adapter: header-only metadata of one shard."""

from imganalyzer.decode.jobs import run_metadata_shard
from imganalyzer.results import write_rows
from imganalyzer.runtime.jobstatus import shard_job


def main(smk) -> None:
    rows = smk.output[0]
    # A failure is recorded and the rows written empty; the index and the other jobs go on.
    with shard_job(smk, "metadata", rows, lambda: write_rows(rows, [])):
        run_metadata_shard(
            manifest=smk.input.manifest,
            library=smk.params.library,
            output=rows,
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
