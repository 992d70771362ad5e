"""Snakemake adapter: CLIP image embeddings of one shard from its clip tier."""

from imganalyzer.embedding import run_embedding_shard
from imganalyzer.shardjobs import job_logging


def main(smk) -> None:
    with job_logging(smk.log[0]):
        run_embedding_shard(
            manifest=smk.input.manifest,
            tiers=smk.input.tiers,
            technical=smk.input.technical,
            out_npy=smk.output.vectors,
            out_jsonl=smk.output.rows,
            model_name=smk.params.model,
            pretrained=smk.params.pretrained,
            device=smk.params.device,
            batch_size=smk.params.batch_size,
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
