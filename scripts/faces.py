"""Snakemake adapter: faces (InsightFace) of the shards of one model job."""

from pathlib import Path

from imganalyzer.modules.faces import FacesShardFiles, run_faces_job
from imganalyzer.runtime.batched import write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    out = Path(smk.params.out_dir)
    objects = Path(smk.input.objects).parent.parent if smk.input.objects else None
    shards = [
        FacesShardFiles(
            manifest,
            tiers,
            technical,
            objects=objects / f"{shard}.jsonl" if objects else None,
            out_jsonl=out / f"{shard}.jsonl",
            out_npy=out / f"{shard}.npy",
        )
        for shard, manifest, tiers, technical in zip(
            smk.params.shards,
            smk.input.manifests,
            smk.input.tiers,
            smk.input.technical,
            strict=True,
        )
    ]
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        analyzer = run_faces_job(
            shards, device=smk.params.device, threads=smk.threads, **smk.params.settings
        )
        write_job_summary(smk.output[0], analyzer, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
