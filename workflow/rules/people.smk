# People: one global clustering step over every current face that keeps ids and the
# names users give.


# Clusters every current face into people. The marker is the declared output: people.json
# and the user's edits (names, aliases, merges, splits) are state that Snakemake must never
# delete; edits made with `imganalyzer people` re-run this rule and the index.
rule people:
    input:
        [results_path("faces", "jobs", f"{job}.json") for job in MODEL_JOBS],
    output:
        marker=results_path("faces", "PEOPLE_UPDATED"),
    log:
        results_path("logs", "faces", "people.log"),
    benchmark:
        results_path("benchmarks", "faces", "people.tsv")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        # 512 float16 per face: 1M faces = 1 GB, plus the clustering's neighbour graph.
        mem_mb=4000,
    params:
        results=lambda wildcards, output: str(Path(output.marker).parent.parent),
        library=config["library"],
        settings=config["people"],
        removed=REMOVED_DIGEST,
        edits=PEOPLE_EDITS_DIGEST,
    script:
        "../../scripts/people.py"
