"""Snakemake adapter: summarise the jobs' benchmark files per module."""

import json

from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.progress import job_logging
from imganalyzer.steps.report import module_reports, write_time_plot


def main(smk) -> None:
    with job_logging(smk.log[0]):
        reports = module_reports(Layout(smk.params.results))
        atomic_write_text(smk.output.table, json.dumps([r.as_dict() for r in reports], indent=2))
        write_time_plot(reports, smk.output.plot)


main(snakemake)  # noqa: F821 (injected by Snakemake)
