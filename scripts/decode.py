"""Snakemake adapter: decode one shard (tiers, thumbnails, technical results)."""

from imganalyzer.decode.jobs import run_decode_shard
from imganalyzer.progress import job_logging


def main(smk) -> None:
    with job_logging(smk.log[0]):
        run_decode_shard(
            manifest=smk.input.manifest,
            library=smk.params.library,
            tiers_out=smk.output.tiers,
            technical_out=smk.output.technical,
            thumbnails_out=smk.output.thumbnails,
            tiers=dict(smk.params.tiers),
            compression=smk.params.compression,
            quality=smk.params.quality,
            max_pixels=smk.params.max_pixels,
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
