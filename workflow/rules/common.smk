# Parse-time setup: validate the config, update the catalog (main process only),
# and list the shards. Everything real happens in the imganalyzer package.
from pathlib import Path

from imganalyzer.catalog import SHARD_ID_PATTERN, Catalog
from imganalyzer.config import validate_config

validate_config(config)

RESULTS = Path(config["results"])
CATALOG = Catalog(RESULTS / "catalog")

# Cluster jobs re-parse this file: only the main process scans and writes.
if workflow.is_main_process:
    logger.info(
        CATALOG.ingest(
            config["library"], config["shard_size"], exclude=[RESULTS]
        ).summary()
    )

SHARDS = CATALOG.shard_ids()


wildcard_constraints:
    shard=SHARD_ID_PATTERN,


def results_path(*parts):
    return str(RESULTS.joinpath(*parts))


def manifest(wildcards):
    return str(CATALOG.manifest_path(wildcards.shard))


def module_targets():
    return [results_path(m, f"{s}.jsonl") for m in config["modules"] for s in SHARDS]
