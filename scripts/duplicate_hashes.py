"""Snakemake adapter: perceptual hashes of one shard's images, from its stored tier."""

from imganalyzer.results import write_rows
from imganalyzer.runtime.jobstatus import shard_job
from imganalyzer.steps.duplicates_hashes import shard_hashes


def main(smk) -> None:
    rows = smk.output[0]
    # A failure (its decode job's, too) is recorded and the rows written empty.
    with shard_job(smk, "duplicates", rows, lambda: write_rows(rows, [])):
        shard_hashes(
            tiers=smk.input.tiers,
            manifest=smk.input.manifest,
            out_jsonl=rows,
            technical=smk.input.technical,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
