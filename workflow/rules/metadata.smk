from imganalyzer.versions import METADATA_VERSION


# EXIF and pixel size from a header-only read: no pixel is decoded.
rule metadata:
    input:
        manifest=manifest,
    output:
        LAYOUT.rows("metadata", "{shard}"),
    log:
        LAYOUT.log("metadata", "{shard}"),
    benchmark:
        LAYOUT.benchmark("metadata", "{shard}")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: shard_threads(config["threads_per_metadata_job"])  # header reads wait on I/O, not CPU
    resources:
        mem_mb=500,
    params:
        library=config["library"],
        version=METADATA_VERSION,
        retry=shard_retry_param("metadata"),  # a failed job is re-run, only it
    script:
        "../../scripts/metadata.py"
