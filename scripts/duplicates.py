"""Snakemake adapter: the exact and near duplicate groups of the whole library."""

from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.steps.duplicates import DuplicateSettings, write_duplicates


def main(smk) -> None:
    with job_logging(smk.log[0]):
        config = {"duplicates": smk.params.settings, "device": smk.params.device}
        write_duplicates(
            Layout(smk.params.results),
            smk.params.library,
            smk.output[0],
            DuplicateSettings.from_config(config),
            use_clip=smk.params.use_clip,
            view_file=smk.input.library_view,  # the run's one scan of the library
        )


main(snakemake)  # noqa: F821 (injected by Snakemake)
