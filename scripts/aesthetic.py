"""Snakemake adapter: aesthetic scores of the shards of one model job."""

from pathlib import Path

from imganalyzer.modules.aesthetic import run_aesthetic_job
from imganalyzer.runtime.batched import write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    embeddings, out = Path(smk.params.embedding_dir), Path(smk.params.out_dir)
    shards = [
        (embeddings / f"{s}.npy", embeddings / f"{s}.jsonl", out / f"{s}.jsonl")
        for s in smk.params.shards
    ]
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        scorer = run_aesthetic_job(shards, smk.params.weights, smk.params.batch_size)
        write_job_summary(smk.output[0], scorer, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
