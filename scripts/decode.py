"""Snakemake adapter: decode one shard (tiers, thumbnails, technical results)."""

from imganalyzer.decode.jobs import run_decode_shard, write_undecoded_shard
from imganalyzer.runtime.jobstatus import shard_job


def main(smk) -> None:
    out = smk.output

    def failed() -> None:
        write_undecoded_shard(out.tiers, out.technical, out.thumbnails)

    with shard_job(smk, "decode", out.technical, failed):  # recorded; the run goes on
        run_decode_shard(
            manifest=smk.input.manifest,
            library=smk.params.library,
            tiers_out=out.tiers,
            technical_out=out.technical,
            thumbnails_out=out.thumbnails,
            tiers=dict(smk.params.tiers),
            compression=smk.params.compression,
            quality=smk.params.quality,
            max_pixels=smk.params.max_pixels,
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
