# Detections for the configured prompts on the detect tier; has_text and has_person flags
# gate OCR and faces.
rule objects:
    input:
        manifests=job_paths(LAYOUT.manifest),
        tiers=job_paths(LAYOUT.tiers),
        technical=job_paths(LAYOUT.technical),
    output:
        str(LAYOUT.job_summary("objects", "{job}")),
    log:
        str(LAYOUT.log("objects", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("objects", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2  # one thread drives the model, one loads and preprocesses the next batches
    resources:
        gpu=gpu_held(),
        gpu_mem_mb=gpu_memory("objects"),
        # GroundingDINO-T (~0.7 GB fp32 on the host while loading), torch/CUDA libraries,
        # prefetched 1024 px batches.
        mem_mb=6000,
    params:
        results=results_folder,
        shards=job_shards,
        settings=config["objects"],
        device=config["device"],
        retry=retry_param("objects"),  # a failed job is re-run, only it
        version=MODELS["objects"].version,
    script:
        "../../scripts/objects.py"
