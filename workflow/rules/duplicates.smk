# Duplicates: a perceptual hash of every image from its stored tier (per shard), then one
# global step grouping exact copies (content hash, only where file sizes collide) and near
# copies (hash distance and CLIP cosine).


rule duplicate_hashes:
    input:
        manifest=manifest,
        tiers=LAYOUT.tiers("{shard}"),
        technical=LAYOUT.technical("{shard}"),
    output:
        LAYOUT.rows("duplicates", "{shard}"),
    log:
        LAYOUT.log("duplicates", "{shard}"),
    benchmark:
        LAYOUT.benchmark("duplicates", "{shard}")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        retry=shard_retry_param("duplicates"),  # a failed job is re-run, only it
    script:
        "../../scripts/duplicate_hashes.py"


rule duplicates:
    input:
        duplicates_inputs,
        library_view=rules.library_view.output[0],
    output:
        LAYOUT.duplicate_groups,
    log:
        LAYOUT.log("duplicates", "groups"),
    benchmark:
        LAYOUT.benchmark("duplicates", "groups")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        results=results_folder,
        library=config["library"],
        settings=config["duplicates"],
        use_clip="embedding" in config["modules"],
        device=config["device"],  # the CLIP pair search runs on it
    script:
        "../../scripts/duplicates.py"
