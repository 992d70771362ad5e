from imganalyzer.versions import DECODE_VERSION


# Decode every image of a shard once: tiers for the GPU modules, thumbnails for
# listings and the technical analysis on the decoded array.
rule decode:
    input:
        manifest=manifest,
    output:
        tiers=directory(LAYOUT.tiers("{shard}")),
        technical=LAYOUT.technical("{shard}"),
        thumbnails=LAYOUT.thumbnails("{shard}"),
    log:
        LAYOUT.log("decode", "{shard}"),
    benchmark:
        LAYOUT.benchmark("decode", "{shard}")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: shard_threads(config["threads_per_decode_job"])  # a decode pool; decoding is CPU-bound
    resources:
        mem_mb=lambda wildcards, threads: 1500 + 400 * threads,
    params:
        library=config["library"],
        tiers=config["tiers"],
        compression=config["tier_compression"],
        quality=config["jpeg_quality"],
        max_pixels=config["max_pixels"],
        version=DECODE_VERSION,
        retry=shard_retry_param("decode"),  # a failed job is re-run, only it
    script:
        "../../scripts/decode.py"
