"""Snakemake adapter: faces (InsightFace) of the shards of one model job."""

from imganalyzer.layout import Layout
from imganalyzer.modules.faces import run_faces_job
from imganalyzer.runtime.jobstatus import model_job


def main(smk) -> None:
    with model_job(smk):  # a failure is recorded; the other jobs and the index go on
        run_faces_job(
            Layout(smk.params.results),
            smk.wildcards.job,
            smk.params.shards,
            device=smk.params.device,
            threads=smk.threads,
            gate_on_objects=bool(smk.input.objects),  # objects ran: only has_person images
            **smk.params.settings,
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
