"""The kit's side-by-side measurements: precision variants, BLIP-2's features-once path,
the faces job, the aesthetic head, the CUDA out-of-memory back-off and the duplicates'
cosine search. Each returns plain numbers for the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gpu.measure import GpuSampler, RepeatedTierBatches, fixed_batch, peak_memory, synchronize

from imganalyzer.decode.tiers import TierReader
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import ArrayBatches

# Images compared between precisions or decoding paths.
COMPARED_IMAGES = 32
NAIVE_IMAGES = 4  # BLIP-2 through model.generate, one call per prompt: slow by design


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest of ``repeats`` runs of ``fn`` in seconds, the device synchronised."""
    times = []
    for _ in range(repeats):
        synchronize()
        began = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - began)
    return min(times)


def _on_device(model: BatchedModel, inputs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    inputs = inputs.to(model.device)
    return inputs.to(dtype) if inputs.is_floating_point() else inputs


def clip_precision(model: BatchedModel, reader: TierReader, target_s: float) -> dict[str, Any]:
    """The embedder in its dtype vs an fp32 copy with the same weights: cosine between the
    two embeddings of each image, and the forward time ratio."""
    if model.dtype == torch.float32:
        return {"skipped": "the model already runs in fp32 here"}
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    torch.manual_seed(0)  # open_clip initialises on the CPU: the same seed, the same weights
    settings = {"model": model.model_name, "pretrained": model.pretrained}
    full = ClipEmbedder(EmbeddingSettings.defaults(**settings, device=model.device.type))
    full.half_precision_safe = False
    full.load()
    half_weight = next(model.model.visual.parameters()).float()
    full_weight = next(full.model.visual.parameters())
    same_weights = torch.allclose(half_weight, full_weight, rtol=2**-7, atol=1e-6)
    batch = fixed_batch(reader, model.tier, COMPARED_IMAGES)
    half_vectors = model.infer(batch).astype(np.float32)
    full_vectors = full.infer(batch).astype(np.float32)
    cosine = np.sum(half_vectors * full_vectors, axis=1)
    inputs = model.preprocess(batch)
    with torch.inference_mode():
        half_s = best_of(lambda: model.predict_batch(_on_device(model, inputs, model.dtype)))
        full_s = best_of(lambda: full.predict_batch(_on_device(full, inputs, torch.float32)))
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "same_weights_up_to_rounding": bool(same_weights),
        "min_cosine_to_fp32": float(cosine.min()),
        "mean_cosine_to_fp32": float(cosine.mean()),
        "speedup_over_fp32": full_s / half_s,
    }


def groundingdino_precision(model: BatchedModel, folder: str, reader: TierReader) -> dict[str, Any]:
    """bf16 with the fp32 islands (the module's setting) and pure bf16 vs fp32: forward time
    ratio and drift of scores and boxes, with fp32's query selection replayed (random weights
    make proposal scores nearly tie: see tests/support/tiny_groundingdino.py)."""
    if model.dtype != torch.bfloat16:
        return {"skipped": f"the model runs in {model.dtype} here: no islands"}
    from imganalyzer.modules.objects import ObjectDetector, ObjectSettings
    from tests.support.tiny_groundingdino import ReplayedQuerySelection

    settings = ObjectSettings.defaults(model=folder, device=model.device.type)
    full = ObjectDetector(settings)
    full.half_precision_safe = False
    full.load()
    pure = ObjectDetector(settings, fp32_modules=())
    pure.load()
    inputs = full.preprocess(fixed_batch(reader, model.tier, 4))
    result: dict[str, Any] = {}
    tier_side = reader.tiers[model.tier]  # boxes are relative: drift in tier pixels
    with torch.inference_mode(), ReplayedQuerySelection() as selection:
        probs, boxes = full.predict_batch(_on_device(full, inputs, torch.float32))
        selection.replay()
        full_s = best_of(lambda: full.predict_batch(_on_device(full, inputs, torch.float32)))
        for name, variant in (("islands", model), ("pure_bf16", pure)):
            half = _on_device(variant, inputs, torch.bfloat16)
            got_probs, got_boxes = variant.predict_batch(half)
            seconds = best_of(lambda v=variant, h=half: v.predict_batch(h))
            score = (got_probs.max(-1).values - probs.max(-1).values).abs()
            result[name] = {
                "speedup_over_fp32": full_s / seconds,
                "max_score_diff": float(score.max()),
                "mean_score_diff": float(score.mean()),
                "max_box_diff_px": float((got_boxes - boxes).abs().max() * tier_side),
            }
    return result


def blip2_features_once(model: Any, reader: TierReader) -> dict[str, Any]:
    """The captioner's path (vision tower, Q-Former and projection once per image; one batched
    ``generate`` over images x prompts) vs ``model.generate`` once per image and prompt, on
    the same images: time ratio and how many texts are identical."""
    batch = fixed_batch(reader, model.tier, NAIVE_IMAGES)
    inputs = model.preprocess(batch)
    once: list[dict[str, Any]] = []

    def features_once() -> None:
        once[:] = model.infer(batch)

    once_s = best_of(features_once, repeats=2)
    naive: list[list[str]] = []

    def one_generate_per_prompt() -> None:
        naive.clear()
        for image, (height, width) in zip(batch.data, batch.sizes, strict=True):
            naive.append(_generate_each_prompt(model, image[:height, :width]))

    naive_s = best_of(one_generate_per_prompt, repeats=1)
    ours = [[row["caption"], *row["answers"].values()] for row in once]
    pairs = [pair for texts in zip(ours, naive, strict=True) for pair in zip(*texts, strict=True)]
    same = sum(a == b for a, b in pairs)
    return {
        "images": len(inputs),
        "prompts": len(model.prompts),
        "speedup": naive_s / once_s,
        "identical_texts": f"{same}/{len(inputs) * len(model.prompts)}",
        "example": ours[0][0][:80],
    }


def _generate_each_prompt(model: Any, rgb: np.ndarray) -> list[str]:
    texts = []
    for prompt in model.prompts:
        encoded = model.processor(images=rgb, text=prompt, return_tensors="pt")
        encoded = {
            key: value.to(model.device, model.dtype if value.is_floating_point() else None)
            for key, value in encoded.items()
        }
        with torch.inference_mode():
            out = model.model.generate(
                **encoded, max_new_tokens=model.max_new_tokens, do_sample=False, num_beams=1
            )
        new = out[0, encoded["input_ids"].shape[1] :]
        texts.append(model.tokenizer.decode(new, skip_special_tokens=True).strip())
    return texts


def faces_job(pack: str, reader: TierReader, folder: Path, device: str) -> dict[str, Any]:
    """The faces job itself (``run_model_job``: its loader thread, onnxruntime's providers)
    over one shard of the kit's tier store, vs ``analyze`` on images already in memory."""
    from imganalyzer.catalog.manifests import Entry, write_manifest
    from imganalyzer.layout import Layout
    from imganalyzer.modules.faces import FaceAnalyzer, FaceSettings
    from imganalyzer.results import ok_row, write_rows
    from imganalyzer.runtime.job import run_model_job

    layout, shard, job = Layout(folder), "000001-00000", "000001-00000-00000"
    entries = [Entry(f"kit/{i:05d}.jpg", 1, 1) for i in range(reader.n_images)]
    write_manifest(layout.manifest(shard), entries)
    layout.tiers(shard).parent.mkdir(parents=True, exist_ok=True)
    if not layout.tiers(shard).exists():
        layout.tiers(shard).symlink_to(reader.path.resolve(), target_is_directory=True)
    _, sizes, _ = reader.read("detect", 0, reader.n_images)
    scale = 6  # original pixels per tier pixel: a 24 MP photo over a 1024 px tier
    technical = [
        ok_row(e, {"width": int(w) * scale, "height": int(h) * scale})
        for e, (h, w) in zip(entries, sizes, strict=True)
    ]
    write_rows(layout.technical(shard), technical)
    settings = FaceSettings.defaults(pack=pack, device=device)
    # warm-up: sessions, arenas
    run_model_job(FaceAnalyzer(settings), layout, job, [shard], threads=2)
    with GpuSampler() as gpu:
        analyzer = run_model_job(FaceAnalyzer(settings), layout, job, [shard], threads=2)
    stats = analyzer.stats
    images, _, _ = reader.read("detect", 0, reader.n_images)
    crops = [image[:h, :w] for image, (h, w) in zip(images, sizes, strict=True)]
    bare_analyzer = FaceAnalyzer(settings)
    bare_s = best_of(lambda: [bare_analyzer.analyze(crop, (scale, scale)) for crop in crops], 1)
    rate = stats.images / stats.total_s
    providers = _providers(analyzer)
    on_torch = any(provider.startswith("onnx2torch") for provider in providers)
    return {
        "device": "cuda" if any("cuda" in p.lower() for p in providers) else "cpu",
        "dtype": "float32 (onnx2torch)" if on_torch else "float32 (onnxruntime)",
        "model": "SCRFD-shaped (ResNet-18 trunk) + ResNet-50 ArcFace-shaped, ONNX",
        "images": stats.images,
        "faces": analyzer.faces,
        "seconds": round(stats.total_s, 2),
        "images_per_s": rate,
        "gpu_utilisation_pct": gpu.mean_utilisation,
        "peak_gpu_memory_gib": gpu.peak_used_gib,
        "batch_auto_initial": 1,
        "batch_final": 1,
        "loader_wait_s": round(stats.wait_s, 2),
        "bare_images_per_s": len(crops) / bare_s,
        "pipeline_vs_bare": rate / (len(crops) / bare_s),
        "providers": providers,
    }


def _providers(analyzer: Any) -> list[str]:
    found = set()
    for model in getattr(analyzer.app, "models", {}).values():
        session = getattr(model, "session", None)
        if session is not None:
            found.update(session.get_providers())
    return sorted(found)


def aesthetic_head(weights: Path, n_rows: int) -> dict[str, Any]:
    """The aesthetic head over stored embeddings (ArrayBatches): it runs on the CPU by design."""
    from imganalyzer.modules.aesthetic import AestheticHead, AestheticScorer, AestheticSettings

    torch.manual_seed(0)
    torch.save(AestheticHead(in_dim=768).state_dict(), weights)
    scorer = AestheticScorer(AestheticSettings.defaults(weights=str(weights)))
    scorer.load()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_rows, 768)).astype(np.float16)
    stats = scorer.run(ArrayBatches(vectors, np.ones(n_rows, dtype=bool)), lambda i, r: None)
    return {
        "model": "LAION aesthetic MLP head (random weights)",
        "images": stats.images,
        "seconds": round(stats.total_s, 3),
        "images_per_s": stats.images / stats.total_s,
        "device": scorer.device.type,
        "batch_auto_initial": scorer.batch_size,
        "batch_final": stats.batch_size,
    }


def oom_backoff(name: str, pretrained: str | None, reader: TierReader) -> dict[str, Any]:
    """On CUDA: the embedder at batch 2048 with only 3 GiB above its weights allowed, so that
    the batch cannot fit: the runtime must halve it until it does and embed every image."""
    if not torch.cuda.is_available():
        return {
            "skipped": "needs CUDA (the CPU path is covered by tests/unit/runtime/test_batched.py)"
        }
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    settings = {"model": name, "pretrained": pretrained, "device": "cuda", "batch_size": 2048}
    model = ClipEmbedder(EmbeddingSettings.defaults(**settings))
    model.load()
    total = torch.cuda.get_device_properties(0).total_memory
    allowed = torch.cuda.memory_allocated() + 3 * 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total))
    source = RepeatedTierBatches(reader, model.tier, 4096)
    try:
        with peak_memory() as memory:
            stats = model.run(source, lambda i, r: None)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    return {
        "requested_batch": 2048,
        "allowed_gib": round(allowed / 2**30, 1),
        "oom_backoffs": stats.oom_backoffs,
        "batch_final": stats.batch_size,
        "images": stats.images,
        "all_embedded": stats.images == source.n_rows,
        "peak_gpu_memory_gib": memory["peak_gib"],
        "images_per_s": stats.images / stats.total_s,
    }


def cosine_search(n: int, compare_n: int) -> dict[str, Any]:
    """The duplicates' exact CLIP cosine search (``cosine_pairs``): fp16 on CUDA over ``n``
    vectors, and on ``compare_n`` of them CUDA fp16 vs CPU fp32 (time and the pairs found)."""
    from imganalyzer.steps.duplicates import DuplicateSettings
    from imganalyzer.steps.duplicates_clip import cosine_pairs

    near_threshold = DuplicateSettings.defaults().near_threshold
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 768)).astype(np.float32)
    near = rng.choice(n, size=(n // 100, 2), replace=False)  # 1% planted near copies
    vectors[near[:, 1]] = vectors[near[:, 0]] + rng.normal(0, 0.15, (len(near), 768))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    found: dict[str, np.ndarray] = {}

    def search(rows: np.ndarray, on: str) -> Callable[[], None]:
        def run() -> None:
            found[on] = cosine_pairs(rows, near_threshold, device=on)

        return run

    result: dict[str, Any] = {"vectors": n, "device": device}
    seconds = best_of(search(vectors, device), repeats=2)
    result["seconds"] = round(seconds, 2)
    result["pairs"] = len(found[device])
    subset = vectors[:compare_n]
    device_s = best_of(search(subset, device), repeats=2)
    cpu_s = best_of(search(subset, "cpu"), repeats=1)
    on_device = {tuple(p) for p in found[device].tolist()}
    on_cpu = {tuple(p) for p in found["cpu"].tolist()}
    result.update(
        compare_vectors=compare_n,
        speedup_over_cpu_fp32=cpu_s / device_s,
        pairs_cpu_fp32=len(on_cpu),
        pairs_only_on_one=len(on_device ^ on_cpu),
    )
    return result
