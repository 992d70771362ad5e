"""Snakemake adapter: write or update the XMP sidecars, then the rule's marker."""

from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.steps.people import named_faces
from imganalyzer.steps.xmp import XmpSettings, write_sidecars


def main(smk) -> None:
    with job_logging(smk.log[0]):
        layout = Layout(smk.params.results)
        settings = XmpSettings.from_config({"xmp": smk.params.settings})
        faces = named_faces(layout) if "faces" in smk.params.modules else None
        report = write_sidecars(
            layout,
            smk.params.library,
            settings,
            smk.params.modules,
            faces,
            view_file=smk.input.library_view,  # the run's one scan of the library
        )
        atomic_write_text(smk.output.marker, report.summary() + "\n")


main(snakemake)  # noqa: F821 (injected by Snakemake)
