"""Snakemake adapter: captions and answers (BLIP-2) of the shards of one model job."""

from pathlib import Path

from imganalyzer.captions import CaptionsShardFiles, run_captions_job
from imganalyzer.runtime import write_job_summary
from imganalyzer.shardjobs import job_logging


def main(smk) -> None:
    out = Path(smk.params.out_dir)
    shards = [
        CaptionsShardFiles(manifest, tiers, technical, out / f"{shard}.jsonl")
        for shard, manifest, tiers, technical in zip(
            smk.params.shards,
            smk.input.manifests,
            smk.input.tiers,
            smk.input.technical,
            strict=True,
        )
    ]
    with job_logging(smk.log[0]):
        captioner = run_captions_job(
            shards, device=smk.params.device, threads=smk.threads, **smk.params.settings
        )
        write_job_summary(smk.output[0], captioner, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
