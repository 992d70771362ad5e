# Aesthetic scores from the stored embeddings: no pixels, no GPU (a ~1 GFLOP MLP per shard).
rule aesthetic:
    input:
        results_path("embedding", "jobs", "{job}.json"),
    output:
        results_path("aesthetic", "jobs", "{job}.json"),
    log:
        results_path("logs", "aesthetic", "{job}.log"),
    benchmark:
        results_path("benchmarks", "aesthetic", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        shards=job_shards,
        embedding_dir=module_dir_of_input,
        out_dir=module_dir_of_output,
        weights=config["aesthetic"]["weights"],
        batch_size=config["aesthetic"]["batch_size"],
        retry=retry_param("aesthetic"),  # a failed job is re-run, only it
        version=MODELS["aesthetic"].version,
    script:
        "../../scripts/aesthetic.py"
