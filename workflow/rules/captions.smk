# A caption and answers to the configured questions; the vision tower runs once per image.
rule captions:
    input:
        manifests=job_paths(LAYOUT.manifest),
        tiers=job_paths(LAYOUT.tiers),
        technical=job_paths(LAYOUT.technical),
    output:
        str(LAYOUT.job_summary("captions", "{job}")),
    log:
        str(LAYOUT.log("captions", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("captions", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        gpu=gpu_held(),
        gpu_mem_mb=gpu_memory("captions"),
        # BLIP-2 OPT-2.7B: 7.7 GB of fp16 weights, loaded through the host.
        mem_mb=16000,
    params:
        results=results_folder,
        shards=job_shards,
        settings=config["captions"],
        device=config["device"],
        retry=retry_param("captions"),  # a failed job is re-run, only it
        version=MODELS["captions"].version,
    script:
        "../../scripts/captions.py"
