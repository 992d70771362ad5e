# The new shard manifests of this run's catalog plan: start_run (onstart, a real run only)
# stages them, each job moves one into place (a rename: no Python, no re-parse). A dry-run
# or a lint lists these jobs and writes nothing. Only this run's batch matches: earlier
# manifests are immutable source files that no rule rewrites.
rule catalog_shard:
    output:
        LAYOUT.manifest("{shard}"),
    log:
        LAYOUT.log("catalog", "{shard}"),
    wildcard_constraints:
        shard=PLAN.shard_pattern if PLAN else r"(?!)",
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    params:
        staged=lambda wildcards: str(LAYOUT.staged_manifest(wildcards.shard)),
    shell:
        "mv -f {params.staged:q} {output:q} 2> {log:q}"


# The current library as this run's one scan saw it (the plan's view, common.smk): the
# global steps (duplicates, people, index, xmp) take it as input instead of scanning the
# library again. start_run stages it; this job moves it into place. The digest re-runs it
# whenever the view changes (files added, edited, moved or removed), and only then.
rule library_view:
    output:
        LAYOUT.library_view,
    log:
        LAYOUT.log("catalog", "library_view"),
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    params:
        staged=str(LAYOUT.staged_library_view),
        digest=VIEW_DIGEST,
    shell:
        "mv -f {params.staged:q} {output:q} 2> {log:q}"
