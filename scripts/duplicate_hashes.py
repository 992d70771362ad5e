"""Snakemake adapter: perceptual hashes of one shard's images, from its stored tier."""

from imganalyzer.progress import job_logging
from imganalyzer.steps.duplicates_hashes import shard_hashes


def main(smk) -> None:
    with job_logging(smk.log[0]):
        shard_hashes(
            tiers=smk.input.tiers,
            manifest=smk.input.manifest,
            out_jsonl=smk.output[0],
            technical=smk.input.technical,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
