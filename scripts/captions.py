"""Snakemake adapter: captions and answers (BLIP-2) of the shards of one model job."""

from imganalyzer.modules.captions import CaptionsShardFiles, run_captions_job
from imganalyzer.runtime.batched import tier_job_files, write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    shards = tier_job_files(
        CaptionsShardFiles,
        smk.params.shards,
        smk.input.manifests,
        smk.input.tiers,
        smk.input.technical,
        smk.params.out_dir,
    )
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        captioner = run_captions_job(
            shards, device=smk.params.device, threads=smk.threads, **smk.params.settings
        )
        write_job_summary(smk.output[0], captioner, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
