"""Snakemake adapter: group every current face into people, then write the rule's marker."""

import json

from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.steps.people import update_people
from imganalyzer.steps.people_clusters import PeopleSettings


def main(smk) -> None:
    with job_logging(smk.log[0]):
        report = update_people(
            Layout(smk.params.results),
            smk.params.library,
            PeopleSettings.from_config({"people": smk.params.settings}),
            threads=smk.threads,
            view_file=smk.input.library_view,  # the run's one scan of the library
        )
        atomic_write_text(smk.output.marker, json.dumps(vars(report), indent=1) + "\n")


main(snakemake)  # noqa: F821 (injected by Snakemake)
