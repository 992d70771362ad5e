# Descriptions from a remote vision model (off by default). The API key is read from the
# environment variable config names, in the job, and is never a param (params are stored).
rule cloud:
    input:
        manifests=job_paths(LAYOUT.manifest),
        tiers=job_paths(LAYOUT.tiers),
        technical=job_paths(LAYOUT.technical),
    output:
        str(LAYOUT.job_summary("cloud", "{job}")),
    log:
        str(LAYOUT.log("cloud", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("cloud", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2  # reading and encoding tiers; requests run concurrently in threads
    resources:
        mem_mb=2000,
        # --resources cloud_api=1 keeps one job sending at a time (requests per minute are
        # limited per job).
        cloud_api=1,
    params:
        results=results_folder,
        shards=job_shards,
        settings=config["cloud"],
        skipped=cloud_budget_skipped,
        retry=retry_param("cloud"),  # a failed job is re-run, only it
        version=MODELS["cloud"].version,
    script:
        "../../scripts/cloud.py"
