# imganalyzer: catalog a photo library, decode every image once into shared
# tiers, analyse it per shard, and (later stages) index it for search.
import os

from snakemake.utils import min_version

from imganalyzer.config import record_run_config

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/metadata.smk"
include: "workflow/rules/duplicates.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/people.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/xmp.smk"
include: "workflow/rules/report.smk"


# A real run (dry runs and lint do not start) takes the results folder's lock, stages its
# catalog batch, and records its effective config there: every `imganalyzer` command then
# works from `--results` alone.
onstart:
    start_run()
    record_run_config(config)


onsuccess:
    finish_run()


onerror:
    finish_run(failed=True)


rule all:
    default_target: True
    input:
        module_targets,
        rules.benchmark_report.output,
        rules.index.output,
        rules.xmp.output if config["xmp"]["enabled"] else [],
