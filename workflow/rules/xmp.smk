# XMP sidecars (opt-in: xmp.enabled): caption, keywords, people and our other results in
# standard XMP, beside the originals (mode beside) or in a mirror tree (mode mirror).
# Sidecars that other tools wrote are merged, never clobbered.


rule xmp:
    input:
        module_targets,
        library_view=rules.library_view.output[0],
    output:
        marker=LAYOUT.xmp_marker,
    log:
        LAYOUT.log("xmp", "xmp"),
    benchmark:
        LAYOUT.benchmark("xmp", "xmp")
    localrule: True  # may write beside the originals: never on a cluster node
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        results=results_folder,
        library=config["library"],
        modules=config["modules"],
        settings=config["xmp"],
        edits=PEOPLE_EDITS_DIGEST,
    script:
        "../../scripts/xmp.py"
