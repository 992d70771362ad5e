from imganalyzer.versions import INDEX_VERSION


# The search index, once per run from every shard's results (OPP-5): Tantivy documents
# of the current images plus the matrix of their CLIP vectors. Incremental: only the
# documents of shards whose results changed are replaced. The marker is the declared
# output, so Snakemake never deletes the index itself before re-running the rule.
rule index:
    input:
        module_targets,
        library_view=rules.library_view.output[0],
    output:
        marker=LAYOUT.index_marker,
    log:
        LAYOUT.log("index", "index"),
    benchmark:
        LAYOUT.benchmark("index", "index")
    localrule: True  # a global step beside the catalog; its params come from the main process
    conda:
        "../../envs/imganalyzer.yaml"
    # Tantivy indexing threads (reading the shards' JSON is single-threaded); one for a
    # small increment, so that the report runs beside it on a small machine.
    threads: 2 if PLAN is None or PLAN.report.new_entries >= 1000 else 1
    resources:
        # Tantivy's writer heap (256 MB) and one shard's rows at a time; vectors are
        # streamed into a memory-mapped file.
        mem_mb=2000,
    params:
        results=results_folder,
        library=config["library"],
        modules=config["modules"],
        edits=PEOPLE_EDITS_DIGEST,  # names given to people are searchable
        version=INDEX_VERSION,
    script:
        "../../scripts/index.py"
