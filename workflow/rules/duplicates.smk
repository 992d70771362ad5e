# Duplicates: a perceptual hash of every image from its stored tier (per shard), then one
# global step grouping exact copies (content hash, only where file sizes collide) and near
# copies (hash distance and CLIP cosine).


rule duplicate_hashes:
    input:
        manifest=manifest,
        tiers=results_path("tiers", "{shard}.zarr"),
        technical=results_path("technical", "{shard}.jsonl"),
    output:
        results_path("duplicates", "{shard}.jsonl"),
    log:
        results_path("logs", "duplicates", "{shard}.log"),
    benchmark:
        results_path("benchmarks", "duplicates", "{shard}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../../scripts/duplicate_hashes.py"


rule duplicates:
    input:
        duplicates_inputs,
    output:
        results_path("duplicates", "groups.json"),
    log:
        results_path("logs", "duplicates", "groups.log"),
    benchmark:
        results_path("benchmarks", "duplicates", "groups.tsv")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        results=lambda wildcards, output: str(Path(output[0]).parent.parent),
        library=config["library"],
        settings=config["duplicates"],
        use_clip="embedding" in config["modules"],
        removed=REMOVED_DIGEST,
    script:
        "../../scripts/duplicates.py"
