from imganalyzer.search.index import INDEX_VERSION


# The search index, once per run from every shard's results (OPP-5): Tantivy documents
# of the current images plus the matrix of their CLIP vectors. Incremental: only the
# documents of shards whose results changed are replaced. The marker is the declared
# output, so Snakemake never deletes the index itself before re-running the rule.
rule index:
    input:
        module_targets(),
    output:
        marker=results_path("index", "BUILT"),
    log:
        results_path("logs", "index", "index.log"),
    benchmark:
        results_path("benchmarks", "index", "index.tsv")
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
        results=lambda wildcards, output: str(Path(output.marker).parent.parent),
        library=config["library"],
        modules=config["modules"],
        # deleting photos adds no shard: this changes instead, so the index drops them
        removed=REMOVED_DIGEST,
        edits=PEOPLE_EDITS_DIGEST,  # names given to people are searchable
        version=INDEX_VERSION,
    script:
        "../../scripts/index.py"
