"""Snakemake adapter: OCR of the text-bearing images of the shards of one model job."""

from pathlib import Path

from imganalyzer.modules.ocr import OcrShardFiles, run_ocr_job
from imganalyzer.runtime.batched import write_job_summary
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    objects, out = Path(smk.params.objects_dir), Path(smk.params.out_dir)
    shards = [
        OcrShardFiles(manifest, objects / f"{shard}.jsonl", out / f"{shard}.jsonl")
        for shard, manifest in zip(smk.params.shards, smk.input.manifests, strict=True)
    ]
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        job = run_ocr_job(
            shards,
            smk.params.library,
            max_pixels=smk.params.max_pixels,
            device=smk.params.device,
            threads=smk.threads,
            **smk.params.settings,
        )
        write_job_summary(smk.output[0], job, smk.params.shards)


main(snakemake)  # noqa: F821 (injected by Snakemake)
