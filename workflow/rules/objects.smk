# Detections for the configured prompts on the detect tier; has_text and has_person flags
# gate OCR and faces.
rule objects:
    input:
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
        tiers=job_files("tiers", "{shard}.zarr"),
        technical=job_files("technical", "{shard}.jsonl"),
    output:
        results_path("objects", "jobs", "{job}.json"),
    log:
        results_path("logs", "objects", "{job}.log"),
    benchmark:
        results_path("benchmarks", "objects", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2  # one thread drives the model, one loads and preprocesses the next batches
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
        # GroundingDINO-T (~0.7 GB fp32 on the host while loading), torch/CUDA libraries,
        # prefetched 1024 px batches.
        mem_mb=6000,
    params:
        shards=job_shards,
        out_dir=module_dir_of_output,
        settings=config["objects"],
        device=config["device"],
        retry=retry_param("objects"),  # a failed job is re-run, only it
        version=MODELS["objects"].version,
    script:
        "../../scripts/objects.py"
