# A caption and answers to the configured questions; the vision tower runs once per image.
rule captions:
    input:
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
        tiers=job_files("tiers", "{shard}.zarr"),
        technical=job_files("technical", "{shard}.jsonl"),
    output:
        results_path("captions", "jobs", "{job}.json"),
    log:
        results_path("logs", "captions", "{job}.log"),
    benchmark:
        results_path("benchmarks", "captions", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
        # BLIP-2 OPT-2.7B: 7.7 GB of fp16 weights, loaded through the host.
        mem_mb=16000,
    params:
        shards=job_shards,
        out_dir=module_dir_of_output,
        settings=config["captions"],
        device=config["device"],
        retry=retry_param("captions"),  # a failed job is re-run, only it
        version=MODELS["captions"].version,
    script:
        "../../scripts/captions.py"
