from imganalyzer.models import MODELS


# CLIP image embeddings of a shard, from its clip tier: one model load per job, batches
# read and preprocessed in a background thread while the model runs on the previous one.
rule embedding:
    input:
        manifest=manifest,
        tiers=results_path("tiers", "{shard}.zarr"),
        technical=results_path("technical", "{shard}.jsonl"),
    output:
        vectors=results_path("embedding", "{shard}.npy"),
        rows=results_path("embedding", "{shard}.jsonl"),
    log:
        results_path("logs", "embedding", "{shard}.log"),
    benchmark:
        results_path("benchmarks", "embedding", "{shard}.tsv")
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
        model=config["embedding"]["model"],
        pretrained=config["embedding"]["pretrained"],
        device=config["device"],
        batch_size=config["embedding"]["batch_size"],
        version=MODELS["embedding"].version,
    script:
        "../../scripts/embedding.py"


# Aesthetic scores from the stored embeddings: no pixels, no GPU (a ~1 GFLOP MLP per shard).
rule aesthetic:
    input:
        vectors=results_path("embedding", "{shard}.npy"),
        rows=results_path("embedding", "{shard}.jsonl"),
    output:
        rows=results_path("aesthetic", "{shard}.jsonl"),
    log:
        results_path("logs", "aesthetic", "{shard}.log"),
    benchmark:
        results_path("benchmarks", "aesthetic", "{shard}.tsv")
    conda:
        "../../envs/imganalyzer.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        weights=config["aesthetic"]["weights"],
        batch_size=config["aesthetic"]["batch_size"],
        version=MODELS["aesthetic"].version,
    script:
        "../../scripts/aesthetic.py"
