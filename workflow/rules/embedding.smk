# CLIP image embeddings from the clip tier, for every shard of a model job: one model
# load per job; batches are read and preprocessed in a background thread while the model
# runs on the previous one. Writes embedding/<shard>.npy and .jsonl per shard, then the
# job's summary (the output Snakemake tracks).
rule embedding:
    input:
        manifests=job_paths(LAYOUT.manifest),
        tiers=job_paths(LAYOUT.tiers),
        technical=job_paths(LAYOUT.technical),
    output:
        str(LAYOUT.job_summary("embedding", "{job}")),
    log:
        str(LAYOUT.log("embedding", "{job}")),
    benchmark:
        str(LAYOUT.benchmark("embedding", "{job}"))
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 3  # one thread drives the model, two read and decode the next batches
    resources:
        # Holds the GPU (--resources gpu=1: one GPU job at a time beside the CPU jobs; with
        # a gpu_mem_mb resource two GPU jobs whose declared GPU memory fits share it); with
        # device: cpu nothing is held, so several run side by side.
        gpu=gpu_held(),
        gpu_mem_mb=gpu_memory("embedding"),
        # ViT-L/14: fp32 weights and their checkpoint on the host while loading (2 x 1.7 GB),
        # CUDA/torch libraries (~1.5 GB), prefetched batches (~0.5 GB at batch size 256).
        mem_mb=8000,
    params:
        results=results_folder,
        shards=job_shards,
        model=config["embedding"]["model"],
        pretrained=config["embedding"]["pretrained"],
        device=config["device"],
        batch_size=config["embedding"]["batch_size"],
        decode_on_device=config["embedding"]["decode_on_device"],
        retry=retry_param("embedding"),  # a failed job is re-run, only it
        version=MODELS["embedding"].version,
    script:
        "../../scripts/embedding.py"
