# Descriptions from a remote vision model (off by default). The API key is read from the
# environment variable config names, in the job, and is never a param (params are stored).
rule cloud:
    input:
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
        tiers=job_files("tiers", "{shard}.zarr"),
        technical=job_files("technical", "{shard}.jsonl"),
    output:
        results_path("cloud", "jobs", "{job}.json"),
    log:
        results_path("logs", "cloud", "{job}.log"),
    benchmark:
        results_path("benchmarks", "cloud", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2  # reading and encoding tiers; requests run concurrently in threads
    resources:
        mem_mb=2000,
        # --resources cloud_api=1 keeps one job sending at a time (requests per minute are
        # limited per job).
        cloud_api=1,
    params:
        shards=job_shards,
        out_dir=module_dir_of_output,
        settings=config["cloud"],
        skipped=cloud_budget_skipped,
        retry=retry_param("cloud"),  # a failed job is re-run, only it
        version=MODELS["cloud"].version,
    script:
        "../../scripts/cloud.py"
