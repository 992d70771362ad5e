# Faces (InsightFace) on the detect tier; the people rule groups them.


rule faces:
    input:
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
        tiers=job_files("tiers", "{shard}.zarr"),
        technical=job_files("technical", "{shard}.jsonl"),
        objects=faces_gate,
    output:
        results_path("faces", "jobs", "{job}.json"),
    log:
        results_path("logs", "faces", "{job}.log"),
    benchmark:
        results_path("benchmarks", "faces", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
        # buffalo_l: detector + recogniser + attributes, ~350 MB of ONNX weights.
        mem_mb=4000,
    params:
        shards=job_shards,
        out_dir=module_dir_of_output,
        settings=config["faces"],
        device=config["device"],
        retry=retry_param("faces"),  # a failed job is re-run, only it
        version=MODELS["faces"].version,
    script:
        "../../scripts/faces.py"
