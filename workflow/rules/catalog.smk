# The new shard manifests of this run's catalog plan: start_run (onstart, a real run only)
# stages them, each job moves one into place (a rename: no Python, no re-parse). A dry-run
# or a lint lists these jobs and writes nothing. Only this run's batch matches: earlier
# manifests are immutable source files that no rule rewrites.
rule catalog_shard:
    output:
        results_path("catalog", "shards", "{shard}.tsv"),
    log:
        results_path("logs", "catalog", "{shard}.log"),
    wildcard_constraints:
        shard=PLAN.shard_pattern if PLAN else r"(?!)",
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    params:
        staged=lambda wildcards: results_path(
            "catalog", "staged", f"{wildcards.shard}.tsv"
        ),
    shell:
        "mv -f {params.staged:q} {output:q} 2> {log:q}"
