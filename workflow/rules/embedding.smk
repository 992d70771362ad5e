# CLIP image embeddings from the clip tier, for every shard of a model job: one model
# load per job; batches are read and preprocessed in a background thread while the model
# runs on the previous one. Writes embedding/<shard>.npy and .jsonl per shard, then the
# job's summary (the output Snakemake tracks).
rule embedding:
    input:
        manifests=job_files("catalog", "shards", "{shard}.tsv"),
        tiers=job_files("tiers", "{shard}.zarr"),
        technical=job_files("technical", "{shard}.jsonl"),
    output:
        results_path("embedding", "jobs", "{job}.json"),
    log:
        results_path("logs", "embedding", "{job}.log"),
    benchmark:
        results_path("benchmarks", "embedding", "{job}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 2  # one thread drives the model, one loads and preprocesses the next batches
    resources:
        # Holds the GPU (--resources gpu=1: one GPU job at a time beside the CPU jobs);
        # with device: cpu nothing is held, so several run side by side.
        gpu=0 if config["device"] == "cpu" else 1,
        # ViT-L/14: fp32 weights and their checkpoint on the host while loading (2 x 1.7 GB),
        # CUDA/torch libraries (~1.5 GB), prefetched batches (~0.5 GB at batch size 256).
        mem_mb=8000,
    params:
        shards=job_shards,
        out_dir=module_dir_of_output,
        model=config["embedding"]["model"],
        pretrained=config["embedding"]["pretrained"],
        device=config["device"],
        batch_size=config["embedding"]["batch_size"],
        retry=retry_param("embedding"),  # a failed job is re-run, only it
        version=MODELS["embedding"].version,
    script:
        "../../scripts/embedding.py"
