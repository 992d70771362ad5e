# Aesthetic scores from the stored embeddings: no pixels, no GPU (a ~1 GFLOP MLP per shard).
rule aesthetic:
    input:
        str(LAYOUT.job_summary("embedding", "{job}")),
        manifests=job_paths(LAYOUT.manifest),
    output:
        str(LAYOUT.job_summary("aesthetic", "{job}")),
    log:
        str(LAYOUT.log("aesthetic", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("aesthetic", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        results=results_folder,
        shards=job_shards,
        weights=config["aesthetic"]["weights"],
        batch_size=config["aesthetic"]["batch_size"],
        retry=retry_param("aesthetic"),  # a failed job is re-run, only it
        version=MODELS["aesthetic"].version,
    script:
        "../../scripts/aesthetic.py"
