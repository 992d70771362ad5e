# Parse-time setup: validate the config, update the catalog (main process only),
# and list the shards. Everything real happens in the imganalyzer package.
import os
import time

from imganalyzer.catalog.current import LibraryView, stage_view, text_digest
from imganalyzer.catalog.manifests import (
    JOB_ID_PATTERN,
    SHARD_ID_PATTERN,
    group_shards,
    manifest_rows,
)
from imganalyzer.catalog.store import Catalog
from imganalyzer.runtime.registry import MODELS
from imganalyzer.config import (
    default_config,
    load_run_config,
    run_config_path,
    validate_config,
)
from imganalyzer.errors import ConfigError
from imganalyzer.files import file_digest
from imganalyzer.layout import Layout
from imganalyzer.runtime.jobstatus import (
    NO_FAILURE,
    exit_promptly,
    retry_token,
    run_summary,
    shard_retry_tokens,
)
from imganalyzer.runtime.preflight import ModelsMissing, check_models
from imganalyzer.runtime.gpushare import gpu_sharing
from imganalyzer.runlock import (
    ResultsLocked,
    acquire_results_lock,
    clear_stale_workflow_lock,
)
from imganalyzer.store import ResultsStore

try:
    validate_config(config)
except ConfigError as error:  # one line naming the key, no traceback
    raise SystemExit(f"imganalyzer: {error}") from None

LAYOUT = Layout(config["results"])  # every path under results (imganalyzer/layout.py)
# The schema's config: model settings added since a module's release re-run nothing while
# at these values (ModelSpec.later_keys).
SCHEMA_DEFAULTS = default_config()
CATALOG = Catalog(LAYOUT)
STARTED = time.time()
SMALL_SHARD_IMAGES_PER_THREAD = 50  # a pool thread per this many images of a new shard

# Cluster jobs re-parse this file: only the main process scans and plans. Nothing is
# written while parsing, so a dry-run or a lint writes nothing: a real run's onstart
# (start_run) writes the moves and stages the new manifests and the library view;
# catalog_shard and library_view jobs place them.
PLAN = None
# The current library as this run's one scan sees it (catalog.smk): the global steps read
# it from LAYOUT.library_view instead of scanning again. Its digest re-runs library_view.
VIEW_TEXT = ""
VIEW_DIGEST = ""
if workflow.is_main_process:
    # One id per invocation: the cloud jobs of a run share one budget (a ledger by run id).
    os.environ.setdefault(
        "IMGANALYZER_RUN_ID", time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    )
    PLAN = CATALOG.plan(config["library"], config["shard_size"], exclude=[LAYOUT.root])
    logger.info(PLAN.report.summary())
    VIEW_TEXT = LibraryView.of(PLAN.library_state()).text()
    VIEW_DIGEST = text_digest(VIEW_TEXT)


def before_jobs(execute):
    """Wraps ``workflow.execute``, the one entry of a run and a dry-run (never of --unlock,
    --report, --lint, --list*, --summary, --dag, --cleanup-metadata...), which Snakemake
    calls after this parse, knowing the mode, and before it takes its lock."""

    def execute_checked(*args, **kwargs):
        executor = kwargs["executor_plugin"] if "executor_plugin" in kwargs else args[0]
        prepare_jobs(executor.common_settings)
        return execute(*args, **kwargs)

    return execute_checked


def prepare_jobs(mode):
    """Every configured model is found (a dry-run too, not --touch: it runs no job;
    IMGANALYZER_PREFLIGHT=0 skips it, to plan on a machine without the models). A real run
    then takes the results folder's lock, clears Snakemake's lock that a killed run left
    (not with --nolock, where Snakemake ignores it), and records the formats version when
    the plan found no file to retry for it (imganalyzer.catalog.retries)."""
    if not mode.touch_exec and os.environ.get("IMGANALYZER_PREFLIGHT") != "0":
        try:
            check_models(config)
        except ModelsMissing as error:
            raise SystemExit(f"imganalyzer: {error}") from None
    if mode.dryrun_exec:
        return
    try:
        acquire_results_lock(LAYOUT)
        if workflow.execution_settings.lock:
            cleared = clear_stale_workflow_lock(LAYOUT, Path.cwd())
            if cleared:
                logger.info(f"imganalyzer: {cleared}")
    except ResultsLocked as error:
        raise SystemExit(f"imganalyzer: {error}") from None
    if PLAN is not None:  # here, not onstart: a run with nothing to do records it too
        PLAN.record_formats_checked()


if workflow.is_main_process:
    workflow.execute = before_jobs(workflow.execute)

SHARDS = CATALOG.shard_ids() + (list(PLAN.shards) if PLAN else [])
# Names, aliases, merges and splits made with `imganalyzer people`: a change re-runs the
# people, index and xmp rules.
PEOPLE_EDITS_DIGEST = file_digest(LAYOUT.people_edits)
# Model modules run one job per group of shards: one model load for many shards.
MODEL_JOBS = group_shards(SHARDS, config["shards_per_model_job"])


def global_resource(name):
    """A resource's limit from --resources or the profile (None: not given)."""
    resources = workflow.global_resources
    return resources[name].value if name in resources else None


# With a gpu_mem_mb resource, a local run lets two GPU jobs share a GPU when the GPU memory
# they declare fits (imganalyzer/runtime/gpushare.py); gpu=N still counts physical GPUs.
GPU_SHARING = gpu_sharing(
    global_resource("gpu"), global_resource("gpu_mem_mb"), workflow.local_exec
)
if GPU_SHARING is not None:
    workflow.register_resource("gpu", GPU_SHARING.slots)
    if workflow.is_main_process:
        logger.info(GPU_SHARING.summary())


wildcard_constraints:
    shard=SHARD_ID_PATTERN,
    job=JOB_ID_PATTERN,


def manifest(wildcards):
    return str(LAYOUT.manifest(wildcards.shard))


def results_folder(wildcards):
    """The results folder, a param of the model jobs and global steps: their scripts build
    the run's Layout from it.
    A function, not the literal (Snakemake's lint flags a literal that prefixes outputs, for
    runs without a shared filesystem; every model job reads the shared results folder).
    """
    return str(LAYOUT.root)


def job_shards(wildcards):
    return MODEL_JOBS[wildcards.job]


def module_targets(wildcards=None):
    """Per-shard results of the CPU modules; per-job summaries of the model modules. An
    input function: `snakemake --report` sets the modules of the last run first."""
    targets = []
    for module in config["modules"]:
        if module in MODELS:
            targets += [str(LAYOUT.job_summary(module, j)) for j in MODEL_JOBS]
        else:
            targets += [str(LAYOUT.rows(module, s)) for s in SHARDS]
        if module == "duplicates":
            targets.append(str(LAYOUT.duplicate_groups))
        if module == "faces":
            targets.append(str(LAYOUT.people_marker))
    return targets


def model_inputs(spec):
    """Input function of a model module's rule: the files its job reads, as its registry
    entry says: the shards' manifests, tier stores and decode rows, and the job summary of
    each model module whose results it reads (written last: its rows and arrays are there).
    """

    def inputs(wildcards):
        shards = MODEL_JOBS[wildcards.job]
        files = {"manifests": [str(LAYOUT.manifest(s)) for s in shards]}
        if spec.tier is not None:
            files["tiers"] = [str(LAYOUT.tiers(s)) for s in shards]
        gate = (spec.gate,) if spec.gate in config["modules"] else ()
        for module in dict.fromkeys(spec.inputs + gate + spec.input_arrays):
            if module == "technical":  # the decode job's rows
                files[module] = [str(LAYOUT.technical(s)) for s in shards]
            else:
                files[module] = [str(LAYOUT.job_summary(module, wildcards.job))]
        return files

    return inputs


def model_params(spec):
    """A model module's settings as its rule's params, and the entry's ``rerun`` param (a
    value of the job's rows: cloud's images an earlier run's budget left out, so that a
    change re-runs the job, which sends only those)."""
    params = spec.rule_params(config, SCHEMA_DEFAULTS)
    if spec.rerun:
        params["rerun"] = lambda wildcards: spec.rerun_value(
            [LAYOUT.rows(spec.module, shard) for shard in MODEL_JOBS[wildcards.job]]
        )
    return params


def model_resources(spec):
    """mem_mb, the entry's own resources, and a GPU (--resources gpu=1: one GPU job at a
    time beside the CPU jobs; a slot of one when sharing, with the entry's gpu_mem_mb
    declared) where the module holds one: with device cpu nothing is held, so several run
    side by side."""
    resources = {"mem_mb": spec.mem_mb, **spec.resources}
    if spec.gpu:
        held = spec.holds_gpu(config)
        resources["gpu"] = int(held)
        resources["gpu_mem_mb"] = (
            GPU_SHARING.job_memory_mb(spec.gpu_mem_mb) if held and GPU_SHARING else 0
        )
    return resources


def duplicates_inputs(wildcards):
    inputs = [str(LAYOUT.rows("duplicates", s)) for s in SHARDS]
    if "embedding" in config["modules"]:
        inputs += [str(LAYOUT.job_summary("embedding", j)) for j in MODEL_JOBS]
    if "metadata" in config["modules"]:  # formats: RAW is the preferred keeper
        inputs += [str(LAYOUT.rows("metadata", s)) for s in SHARDS]
    return inputs


def shard_threads(configured):
    """Threads of a per-shard job: as configured, but fewer for a small shard (a few photos
    added), so that its decode and metadata jobs run side by side. Its size comes from the
    plan for this run's new shards and from its manifest otherwise, so that a cluster job,
    which re-parses without the plan, asks for the threads SLURM allocated it."""
    enough = configured * SMALL_SHARD_IMAGES_PER_THREAD

    def threads(wildcards):
        planned = PLAN.shards.get(wildcards.shard) if PLAN else None
        if planned is not None:
            rows = len(planned)
        else:
            rows = manifest_rows(LAYOUT.manifest(wildcards.shard), enough)
        if rows is None:
            return configured
        return max(1, min(configured, rows // SMALL_SHARD_IMAGES_PER_THREAD))

    return threads


def retry_param(module):
    """A model job's ``retry`` param: changes after the job failed, so the next run re-runs
    exactly the failed jobs (see imganalyzer.runtime.jobstatus). From the wildcards only: Snakemake
    leaves params derived from input or output files out of its params trigger."""
    return lambda wildcards: retry_token(LAYOUT, module, wildcards.job)


def shard_retry_param(step):
    """The ``retry`` param of a per-shard CPU job (decode, metadata, duplicate hashes): the
    id of its last failure, else NO_FAILURE, which Snakemake leaves out of its params
    trigger (see imganalyzer.runtime.jobstatus): a run re-runs exactly the failed jobs.
    """
    tokens = shard_retry_tokens(LAYOUT, step)
    return lambda wildcards: tokens.get(wildcards.shard, NO_FAILURE)


RUN_STARTED = []  # start_run (onstart) ran: Snakemake found jobs to run


def start_run():
    """onstart (a real run, never a dry-run): hold the results folder's lock for this
    run (prepare_jobs took it already, before Snakemake's lock), then record the planned
    moves and stage the new manifests (catalog_shard jobs place them) and the library
    view (the library_view job places it)."""
    if not workflow.is_main_process:
        return
    RUN_STARTED.append(True)
    try:
        acquire_results_lock(LAYOUT)
    except ResultsLocked as error:
        raise SystemExit(f"imganalyzer: {error}") from None
    if PLAN is not None and (PLAN.shards or PLAN.moves):
        if not PLAN.is_current():
            raise SystemExit(
                "imganalyzer: the catalog changed since this run planned it (another run "
                "wrote it meanwhile); start this run again"
            )
        PLAN.write_moves()
        PLAN.stage()
    if PLAN is not None:
        stage_view(LAYOUT, VIEW_TEXT, VIEW_DIGEST)


def module_outputs():
    """Module -> the output files of its jobs (for the end-of-run summary)."""
    outputs = {}
    for module in config["modules"]:
        if module in MODELS:
            outputs[module] = [LAYOUT.job_summary(module, j) for j in MODEL_JOBS]
        else:  # metadata, technical, duplicates: one result file per shard
            outputs[module] = [LAYOUT.rows(module, s) for s in SHARDS]
    return outputs


def finish_run(failed=False):
    """onsuccess / onerror: the run's summary; exit status 1 when a model job failed."""
    if not workflow.is_main_process or PLAN is None:
        return
    summary = run_summary(
        LAYOUT, PLAN.report, config["modules"], module_outputs(), STARTED
    )
    logger.info(summary)
    exit_promptly()  # the run has ended: its process exits now, not a second later
    if not failed and ResultsStore(LAYOUT).failures(config["modules"]):
        raise SystemExit(1)


def summary_when_nothing_to_do(execute):
    """Wraps ``workflow.execute`` (a run or a dry-run; never --report, --lint...): when it
    finds nothing to be done, Snakemake calls no hook (onstart, onsuccess), and the run's
    summary is printed here instead: every real run ends with it."""

    def execute_then_summarise(*args, **kwargs):
        result = execute(*args, **kwargs)
        hooks = not workflow.execution_settings.no_hooks
        if not RUN_STARTED and not workflow.dryrun and hooks:
            finish_run()
        return result

    return execute_then_summarise


def report_of_the_last_run(create_report):
    """Wraps ``workflow.create_report`` (`snakemake --report`): the report is of the last
    run, with the modules it ran (recorded in the results folder; --config modules=...
    chooses others). The inputs that list the modules' results are input functions,
    evaluated when the report builds its DAG, after this."""

    def create_report_of_the_last_run(*args, **kwargs):
        chosen = "modules" in workflow.config_settings.config
        if run_config_path(LAYOUT.root).is_file() and not chosen:
            config["modules"] = load_run_config(LAYOUT.root)["modules"]
        return create_report(*args, **kwargs)

    return create_report_of_the_last_run


if workflow.is_main_process:
    workflow.execute = summary_when_nothing_to_do(workflow.execute)
    workflow.create_report = report_of_the_last_run(workflow.create_report)
