# XMP sidecars (opt-in: xmp.enabled): caption, keywords, people and our other results in
# standard XMP, beside the originals (mode beside) or in a mirror tree (mode mirror).
# Sidecars that other tools wrote are merged, never clobbered.


rule xmp:
    input:
        module_targets(),
    output:
        marker=results_path("xmp", "WRITTEN"),
    log:
        results_path("logs", "xmp", "xmp.log"),
    benchmark:
        results_path("benchmarks", "xmp", "xmp.tsv")
    localrule: True  # may write beside the originals: never on a cluster node
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        results=lambda wildcards, output: str(Path(output.marker).parent.parent),
        library=config["library"],
        modules=config["modules"],
        settings=config["xmp"],
        removed=REMOVED_DIGEST,
        edits=PEOPLE_EDITS_DIGEST,
    script:
        "../../scripts/xmp.py"
