"""Snakemake adapter: aesthetic scores of one shard from its stored embeddings."""

from imganalyzer.aesthetic import run_aesthetic_shard
from imganalyzer.shardjobs import job_logging


def main(smk) -> None:
    with job_logging(smk.log[0]):
        run_aesthetic_shard(
            embedding_npy=smk.input.vectors,
            embedding_jsonl=smk.input.rows,
            out_jsonl=smk.output.rows,
            weights=smk.params.weights,
            batch_size=smk.params.batch_size,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
