"""Snakemake adapter: zero-shot objects (GroundingDINO) of the shards of one model job."""

from pathlib import Path

from imganalyzer.objects import ObjectsShardFiles, run_objects_job
from imganalyzer.runtime import write_job_summary
from imganalyzer.shardjobs import job_logging


def main(smk) -> None:
    out = Path(smk.params.out_dir)
    shards = [
        ObjectsShardFiles(manifest, tiers, technical, out / f"{shard}.jsonl")
        for shard, manifest, tiers, technical in zip(
            smk.params.shards,
            smk.input.manifests,
            smk.input.tiers,
            smk.input.technical,
            strict=True,
        )
    ]
    with job_logging(smk.log[0]):
        detector = run_objects_job(
            shards, device=smk.params.device, threads=smk.threads, **smk.params.settings
        )
        write_job_summary(smk.output[0], detector, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
