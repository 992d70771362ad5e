from imganalyzer.decode.metadata import METADATA_VERSION


# EXIF and pixel size from a header-only read: no pixel is decoded.
rule metadata:
    input:
        manifest=manifest,
    output:
        results_path("metadata", "{shard}.jsonl"),
    log:
        results_path("logs", "metadata", "{shard}.log"),
    benchmark:
        results_path("benchmarks", "metadata", "{shard}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: shard_threads(config["threads_per_metadata_job"])  # header reads wait on I/O, not CPU
    resources:
        mem_mb=500,
    params:
        library=config["library"],
        version=METADATA_VERSION,
    script:
        "../../scripts/metadata.py"
