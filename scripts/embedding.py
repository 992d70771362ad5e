"""Snakemake adapter: CLIP image embeddings of the shards of one model job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.embedding import run_embedding_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_embedding_job(
            Layout(smk.params.results),
            smk.wildcards.job,
            smk.params.shards,
            model_name=smk.params.model,
            pretrained=smk.params.pretrained,
            device=smk.params.device,
            batch_size=smk.params.batch_size,
            decode_on_device=smk.params.decode_on_device,
            threads=smk.threads,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
