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
