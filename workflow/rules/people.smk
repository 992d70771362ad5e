# People: one global clustering step over every current face that keeps ids and the
# names users give.


# Clusters every current face into people. The marker is the declared output: people.json
# and the user's edits (names, aliases, merges, splits) are state that Snakemake must never
# delete; edits made with `imganalyzer people` re-run this rule and the index.
rule people:
    input:
        [LAYOUT.job_summary("faces", job) for job in MODEL_JOBS],
        library_view=rules.library_view.output[0],
    output:
        marker=LAYOUT.people_marker,
    log:
        LAYOUT.log("faces", "people"),
    benchmark:
        LAYOUT.benchmark("faces", "people")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        # 512 float16 per face: 1M faces = 1 GB, plus the clustering's neighbour graph.
        mem_mb=4000,
    params:
        results=results_folder,
        library=config["library"],
        settings=config["people"],
        edits=PEOPLE_EDITS_DIGEST,
    script:
        "../../scripts/people.py"
