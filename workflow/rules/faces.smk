# Faces (InsightFace) on the detect tier; the people rule groups them.


rule faces:
    input:
        manifests=job_paths(LAYOUT.manifest),
        tiers=job_paths(LAYOUT.tiers),
        technical=job_paths(LAYOUT.technical),
        objects=faces_gate,
    output:
        str(LAYOUT.job_summary("faces", "{job}")),
    log:
        str(LAYOUT.log("faces", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("faces", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        gpu=gpu_held(),
        gpu_mem_mb=gpu_memory("faces"),
        # buffalo_l: detector + recogniser + attributes, ~350 MB of ONNX weights.
        mem_mb=4000,
    params:
        results=results_folder,
        shards=job_shards,
        settings=config["faces"],
        device=config["device"],
        retry=retry_param("faces"),  # a failed job is re-run, only it
        version=MODELS["faces"].version,
    script:
        "../../scripts/faces.py"
