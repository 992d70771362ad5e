# Zero-shot objects (GroundingDINO), captions and answers (BLIP-2), and OCR of the images
# the objects module saw text in. One job per group of shards (one model load each), like
# the embedding jobs; per-shard rows go to results/<module>/<shard>.jsonl.


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


# Text lines of the images whose objects result has has_text (the others are never read),
# from the original at no more than ocr.max_side pixels.
rule ocr:
    input:
        objects=results_path("objects", "jobs", "{job}.json"),
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
    output:
        results_path("ocr", "jobs", "{job}.json"),
    log:
        results_path("logs", "ocr", "{job}.log"),
    benchmark:
        results_path("benchmarks", "ocr", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        # PP-OCR (rapidocr) runs on the CPU; TrOCR holds the GPU unless device is cpu.
        gpu=(
            0
            if config["device"] == "cpu" or config["ocr"]["backend"] == "rapidocr"
            else 1
        ),
        mem_mb=4000,
    params:
        shards=job_shards,
        objects_dir=module_dir_of_input,
        out_dir=module_dir_of_output,
        library=config["library"],
        settings=config["ocr"],
        max_pixels=config["max_pixels"],
        device=config["device"],
        retry=retry_param("ocr"),  # a failed job is re-run, only it
        version=MODELS["ocr"].version,
    script:
        "../../scripts/ocr.py"
