# Text lines of the images whose objects result has has_text (the others are never read),
# from the original at no more than ocr.max_side pixels.
rule ocr:
    input:
        objects=str(LAYOUT.job_summary("objects", "{job}")),
        manifests=job_paths(LAYOUT.manifest),
    output:
        str(LAYOUT.job_summary("ocr", "{job}")),
    log:
        str(LAYOUT.log("ocr", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("ocr", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2
    resources:
        # PP-OCR (rapidocr) runs on the CPU; TrOCR holds the GPU unless device is cpu.
        gpu=gpu_held(holds=config["ocr"]["backend"] == "trocr"),
        gpu_mem_mb=gpu_memory("ocr", holds=config["ocr"]["backend"] == "trocr"),
        mem_mb=4000,
    params:
        results=results_folder,
        shards=job_shards,
        library=config["library"],
        settings=config["ocr"],
        max_pixels=config["max_pixels"],
        device=config["device"],
        retry=retry_param("ocr"),  # a failed job is re-run, only it
        version=MODELS["ocr"].version,
    script:
        "../../scripts/ocr.py"
