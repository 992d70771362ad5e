"""Snakemake adapter: zero-shot objects (GroundingDINO) of the shards of one model job."""

from imganalyzer.modules.objects import ObjectsShardFiles, run_objects_job
from imganalyzer.runtime.batched import tier_job_files, write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    shards = tier_job_files(
        ObjectsShardFiles,
        smk.params.shards,
        smk.input.manifests,
        smk.input.tiers,
        smk.input.technical,
        smk.params.out_dir,
    )
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        detector = run_objects_job(
            shards, device=smk.params.device, threads=smk.threads, **smk.params.settings
        )
        write_job_summary(smk.output[0], detector, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
