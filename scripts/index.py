"""Snakemake adapter: build or update the search index, then write the rule's marker."""

import json

from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.search.index import update_index


def main(smk) -> None:
    with job_logging(smk.log[0]):
        report = update_index(
            Layout(smk.params.results),
            smk.params.library,
            smk.params.modules,
            threads=smk.threads,
            view_file=smk.input.library_view,  # the run's one scan of the library
        )
        # The marker is the rule's only declared output: Snakemake deletes it before a
        # re-run, never the index itself, which is then updated in place.
        atomic_write_text(smk.output.marker, json.dumps(vars(report), indent=1) + "\n")


main(snakemake)  # noqa: F821 (injected by Snakemake)
