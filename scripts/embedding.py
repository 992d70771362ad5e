"""Snakemake adapter: CLIP image embeddings of the shards of one model job."""

from pathlib import Path

from imganalyzer.modules.embedding import ShardFiles, run_embedding_job
from imganalyzer.runtime.batched import write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    out = Path(smk.params.out_dir)
    shards = [
        ShardFiles(manifest, tiers, technical, out / f"{shard}.npy", out / f"{shard}.jsonl")
        for shard, manifest, tiers, technical in zip(
            smk.params.shards,
            smk.input.manifests,
            smk.input.tiers,
            smk.input.technical,
            strict=True,
        )
    ]
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        embedder = run_embedding_job(
            shards,
            model_name=smk.params.model,
            pretrained=smk.params.pretrained,
            device=smk.params.device,
            batch_size=smk.params.batch_size,
            threads=smk.threads,
        )
        write_job_summary(smk.output[0], embedder, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
