"""Snakemake adapter: OCR of the text-bearing images of the shards of one model job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.ocr import run_ocr_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_ocr_job(
            Layout(smk.params.results),
            smk.wildcards.job,
            smk.params.shards,
            smk.params.library,
            max_pixels=smk.params.max_pixels,
            device=smk.params.device,
            threads=smk.threads,
            **smk.params.settings,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
