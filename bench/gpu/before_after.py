"""The kit's sections for the model modules: each measures the module as it was (before)
and with each change (after) in the same run, through the module's own batched runtime,
and records the pairs (``measure.pair``, in ``before_after``) that the report's first
table lists.

- embedding: tier chunks read through zarr (before) vs straight from the shard files, with
  the old rule's one loader thread and the new rule's two, and decoded on the device;
- objects: the model processor's 800 px on the loader's CPU with BERT on every batch
  (before) vs the tier at its own size, resized on the device, text encoded once; boxes of
  both paths at the same input size; the compiled forward pass and its compile time;
- captions: worst-case lengths (random weights never stop) and realistic ones (10 tokens a
  caption, 2 an answer), captions and answers in one generate call or two, a dynamic or a
  static KV cache (compiled decoding steps, CUDA graphs) and its compile time.

Each section also records the rate the projection takes (``kit.results["projection"]``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from gpu import architectures, comparisons
from gpu.baselines import TodayObjectDetector
from gpu.measure import (
    RepeatedTierBatches,
    bare_loop,
    fixed_batch,
    pair,
    pipeline,
    synchronize,
)

from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules.objects_input import InputSize

# The workflow's embedding rule before this change had 2 threads (one loader), now 3 (two).
OLD_LOADERS, NEW_LOADERS = 1, 2
MANY_LOADERS = 6
# Boxes compared between today's path and the new one at the same input size.
SAME_SIZE_IMAGES = 4
# max_answer_tokens when the answers are decoded in their own call (BLIP-2's answers are 1-3
# tokens: a cap of 10 almost never cuts one, and bounds the worst case's answer batch).
ANSWER_CAP = 10
# Seconds of budget the optional second halves of the compile sections need at least.
WARM_COMPILE_NEEDS_S = 60
STATIC_SPLIT_NEEDS_S = 120


def projected(kit: Any, key: str, rate: float, how: str) -> None:
    """The images/s the projection takes for ``key``, and how it was measured."""
    kit.results.setdefault("projection", {})[key] = {"images_per_s": rate, "how": how}


def _summary(run: dict[str, Any], bare: float) -> dict[str, Any]:
    keys = ("images_per_s", "gpu_utilisation_pct", "peak_gpu_memory_gib", "loader_wait_s")
    return {**{k: run[k] for k in keys}, "pipeline_vs_bare": run["images_per_s"] / bare}


# --- Embedding --------------------------------------------------------------------------
def embedding(kit: Any) -> dict[str, Any]:
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    s = kit.settings
    name, pretrained = architectures.clip_model(kit.tmp, s.real)
    torch.manual_seed(0)
    model = ClipEmbedder(
        EmbeddingSettings.defaults(model=name, pretrained=pretrained, device=s.device)
    )
    model.load()
    through_zarr = TierReader(kit.reader.path, shard_files=False)
    runs = {
        "zarr_1_loader": pipeline(model, through_zarr, s.target_s, OLD_LOADERS, s.max_rows),
        "files_1_loader": pipeline(model, kit.reader, s.target_s, OLD_LOADERS, s.max_rows),
        "files_2_loaders": pipeline(model, kit.reader, s.target_s, NEW_LOADERS, s.max_rows),
        "device_decode_1_loader": pipeline(
            model, kit.reader, s.target_s, OLD_LOADERS, s.max_rows, encoded=True
        ),
        f"files_{MANY_LOADERS}_loaders": pipeline(
            model, kit.reader, s.target_s, MANY_LOADERS, s.max_rows
        ),
    }
    bare = bare_loop(model, kit.reader, s.target_s / 2)
    result = dict(runs["files_2_loaders"])  # the workflow's settings now
    result.update(model=model.model_id, bare_images_per_s=bare)
    result["pipeline_vs_bare"] = result["images_per_s"] / bare
    result["variants"] = {key: _summary(run, bare) for key, run in runs.items()}
    if not s.real:  # bf16 vs fp32, unchanged here, measured by earlier runs (results/)
        result["precision"] = comparisons.clip_precision(model, kit.reader, s.target_s)
    result["device_decode"] = _device_decode_cosine(model, kit.reader)
    before = runs["zarr_1_loader"]["images_per_s"]
    result["before_after"] = [
        pair("embedding: tier chunks from the shard files (1 loader)", "through zarr", before,
             "shard files", runs["files_1_loader"]["images_per_s"]),
        pair("embedding: + 2 loader threads (rule threads 3)", "through zarr, 1 loader", before,
             "shard files, 2 loaders", result["images_per_s"]),
        pair("embedding: JPEG decoded on the device (decode_on_device, 1 loader)",
             "through zarr, 1 loader", before, "nvJPEG",
             runs["device_decode_1_loader"]["images_per_s"]),
    ]  # fmt: skip
    workflow_runs = [run for key, run in runs.items() if not key.endswith("6_loaders")]
    best = max(workflow_runs, key=lambda run: run["images_per_s"])
    projected(kit, "embedding", best["images_per_s"], f"{best['loader_threads']} loader(s)")
    return result


def _device_decode_cosine(model: Any, reader: TierReader) -> dict[str, Any]:
    """Embeddings of images decoded on the device (nvJPEG on CUDA) vs by the loader."""
    n = min(32, reader.n_images)
    decoded = model.infer(fixed_batch(reader, model.image_tier, n)).astype(np.float32)
    encoded = RepeatedTierBatches(reader, model.image_tier, n, encoded=True).read(0, n)
    on_device = model.infer(encoded).astype(np.float32)
    cosine = np.sum(decoded * on_device, axis=1)
    return {"images": n, "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}


# --- Objects -----------------------------------------------------------------------------
def detector_settings(folder: str, device: str, **changes: Any) -> Any:
    """The schema's objects settings for the kit's GroundingDINO ``folder`` on ``device``."""
    from imganalyzer.modules.objects import ObjectSettings

    return ObjectSettings.defaults(model=folder, device=device, **changes)


def objects(kit: Any) -> dict[str, Any]:
    from imganalyzer.modules.objects import ObjectDetector

    s = kit.settings
    folder = architectures.groundingdino_folder(kit.tmp / "groundingdino", s.real)
    kit.shared["groundingdino"] = folder
    today = TodayObjectDetector(detector_settings(folder, s.device))
    now = ObjectDetector(detector_settings(folder, s.device))
    before = pipeline(today, kit.reader, s.target_s, 1, s.max_rows)
    after = pipeline(now, kit.reader, s.target_s, 1, s.max_rows)
    bare_before = bare_loop(today, kit.reader, s.target_s / 2)
    bare = bare_loop(now, kit.reader, s.target_s / 2)
    result = dict(after)
    result.update(model=now.model_id, bare_images_per_s=bare)
    result["pipeline_vs_bare"] = after["images_per_s"] / bare
    result["input"] = {"short_edge": list(now.input_range), "multiple": now.input_multiple}
    result["before"] = {**_summary(before, bare_before), "bare_images_per_s": bare_before}
    result["same_size"] = _same_size_boxes(today, folder, kit.reader, s.device)
    if not s.real:  # the islands are unchanged; measured by earlier runs (results/)
        result["precision"] = comparisons.groundingdino_precision(now, folder, kit.reader)
    result["before_after"] = [
        pair("objects: tier at its own size, resized on the device, text once",
             "processor 800 px on the loader", before["images_per_s"],
             "tier size (480-800 short edge)", after["images_per_s"]),
    ]  # fmt: skip
    projected(kit, "objects", after["images_per_s"], "tier size, eager")
    return result


def _same_size_boxes(today: Any, folder: str, reader: TierReader, device: str) -> dict:
    """Today's path and the new one at the same input size (the processor's): the
    largest score and box difference, with today's query selection replayed (random
    weights make proposal scores nearly tie)."""
    from imganalyzer.modules.objects import ObjectDetector
    from tests.support.tiny_groundingdino import ReplayedQuerySelection

    same = ObjectDetector(detector_settings(folder, device))
    same.load()
    size = same.processor.image_processor.size  # the processor's own: 800 px on the real one
    same.input_size = InputSize((size["shortest_edge"],) * 2, size["longest_edge"], 1)
    batch = fixed_batch(reader, today.image_tier, SAME_SIZE_IMAGES)
    tier_side = reader.tiers[today.image_tier]
    with torch.inference_mode(), ReplayedQuerySelection() as selection:
        old = today.predict_batch(today.preprocess(batch).to(today.device).to(today.dtype))
        selection.replay()
        new = same.predict_batch(same.preprocess(batch).to(same.device))
    score = (new[0].max(-1).values - old[0].max(-1).values).abs()
    return {
        "images": SAME_SIZE_IMAGES,
        "max_score_diff": float(score.max()),
        "max_box_diff_tier_px": float((new[1] - old[1]).abs().max() * tier_side),
    }


def objects_compile(kit: Any) -> dict[str, Any]:
    """The compiled forward pass (objects.compile): compile time of the job's shapes on a
    cold cache and again with torch's on-disk caches warm, then its pipeline."""
    from imganalyzer.modules import objects_input
    from imganalyzer.modules.objects import ObjectDetector

    s = kit.settings
    if not s.real:  # inductor takes minutes per graph on a small CPU: capture the graph only
        objects_input.COMPILE_BACKEND = "eager"
    folder = kit.shared.get("groundingdino") or architectures.groundingdino_folder(
        kit.tmp / "groundingdino", s.real
    )
    eager_rate = kit.results.get("modules", {}).get("objects", {}).get("images_per_s")
    compiled = ObjectDetector(detector_settings(folder, s.device, compile=True))
    began = time.perf_counter()
    run = pipeline(compiled, kit.reader, s.target_s, 1, s.max_rows)
    assert compiled.compiled is not None
    cold_s, shapes = compiled.compiled.compile_s, sorted(compiled.compiled.shapes)
    result = dict(run)
    result.update(compile_cold_s=cold_s, compiled_graphs=[list(x) for x in shapes])
    result["section_s"] = time.perf_counter() - began
    if kit.settings.left_s() > WARM_COMPILE_NEEDS_S * (1 if s.real else 0):
        torch._dynamo.reset()  # in-memory graphs gone; inductor's disk caches stay
        again = ObjectDetector(detector_settings(folder, s.device, compile=True))
        again.load()
        batch = fixed_batch(kit.reader, again.image_tier, again.batch_size)
        with torch.inference_mode():
            again.predict_batch(again.preprocess(batch).to(again.device))
        assert again.compiled is not None
        result["compile_warm_cache_s"] = again.compiled.compile_s
    if eager_rate:
        result["before_after"] = [
            pair("objects: compiled forward pass (compile: true)", "eager", eager_rate,
                 "torch.compile", run["images_per_s"]),
        ]  # fmt: skip
        if "compile_warm_cache_s" in result:
            result["before_after"].append(
                pair("objects: compile time of one graph", "cold cache", cold_s / len(shapes),
                     "warm on-disk cache", result["compile_warm_cache_s"], "s")
            )  # fmt: skip
        if run["images_per_s"] > eager_rate:
            projected(kit, "objects", run["images_per_s"], "tier size, compiled")
    return result


# --- Captions ----------------------------------------------------------------------------
def captions(kit: Any) -> dict[str, Any]:
    s = kit.settings
    model = architectures.captioner(kit.tmp / "blip2", s.real, device=s.device)
    kit.shared["captioner"] = model
    before = pipeline(model, kit.reader, s.target_s, 1, s.max_rows)
    bare = bare_loop(model, kit.reader, s.target_s / 2)
    result = dict(before)
    result.update(model=model.model_id, bare_images_per_s=bare)
    result["pipeline_vs_bare"] = before["images_per_s"] / bare
    variants = _caption_variants(model, kit.reader, static=False)
    result["variants"] = variants
    for lengths in ("worst", "realistic"):
        separate = variants[f"{lengths}, two calls"]["s"] < variants[f"{lengths}, one call"]["s"]
        _decoding(model, lengths, separate)
        run = before
        if lengths == "realistic" or separate:
            run = pipeline(model, kit.reader, s.target_s, 1, s.max_rows)
        projected(kit, f"captions_{lengths}", run["images_per_s"],
                  f"{'two' if separate else 'one'} generate call(s), dynamic cache")  # fmt: skip
        result[f"{lengths}_lengths"] = _summary(run, bare) | {"separate_answers": separate}
    _decoding(model, "worst", separate=False)
    result["answer_cap_when_apart"] = ANSWER_CAP
    result["before_after"] = [
        pair(f"captions, {lengths} lengths: captions and answers in two calls (answers <= "
             f"{ANSWER_CAP} tokens)",
             "one call", 1 / variants[f"{lengths}, one call"]["s"],
             "two calls", 1 / variants[f"{lengths}, two calls"]["s"], "batches/s")
        for lengths in ("worst", "realistic")
    ]  # fmt: skip
    if not s.real:
        result["features_once"] = comparisons.blip2_features_once(model, kit.reader)
    return result


def _caption_variants(
    model: Any, reader: TierReader, static: bool, splits: tuple[bool, ...] = (False, True)
) -> dict[str, Any]:
    """Seconds per batch of ``predict_batch`` (vision, Q-Former, decoding) on one batch
    already on the device, per call split (``splits``: separate answers or not) and length
    regime (a static cache compiles on each split's first call)."""
    batch = fixed_batch(reader, model.image_tier, model.batch_size)
    inputs = model.preprocess(batch).to(model.device).to(model.dtype)
    model.static_cache = static
    found: dict[str, Any] = {}
    for separate in splits:
        for lengths in ("worst", "realistic"):
            _decoding(model, lengths, separate)
            with torch.inference_mode():
                synchronize()
                began = time.perf_counter()
                ids = model.predict_batch(inputs)  # a static cache compiles here
                synchronize()
                first_s = time.perf_counter() - began
                seconds = comparisons.best_of(lambda: model.predict_batch(inputs), repeats=2)
            name = f"{lengths}, {'two calls' if separate else 'one call'}"
            found[name] = {"s": seconds, "first_call_s": first_s, "tokens": ids.shape[1]}
    _decoding(model, "worst", separate=False)
    model.static_cache = False
    return found


def _decoding(model: Any, lengths: str, separate: bool) -> None:
    """Length regime and call split of the kit's captioner (answers capped when apart)."""
    model.realistic, model.separate_answers = lengths == "realistic", separate
    model.max_answer_tokens = ANSWER_CAP if separate else model.max_new_tokens


def captions_static(kit: Any) -> dict[str, Any]:
    """The static KV cache (transformers compiles each decoding step with CUDA graphs on a
    GPU): time per batch against the dynamic cache, its compile time, and its pipeline."""
    s = kit.settings
    model = kit.shared.get("captioner") or architectures.captioner(
        kit.tmp / "blip2", s.real, device=s.device
    )
    dynamic = kit.results.get("modules", {}).get("captions", {}).get("variants")
    variants = _caption_variants(model, kit.reader, static=True, splits=(False,))
    if kit.settings.left_s() > STATIC_SPLIT_NEEDS_S * (1 if s.real else 0):
        variants |= _caption_variants(model, kit.reader, static=True, splits=(True,))
    result: dict[str, Any] = {"variants": variants}
    result["compile_s"] = sum(v["first_call_s"] - v["s"] for v in variants.values())
    best = min(variants, key=lambda name: variants[name]["s"] if "realistic" in name else 1e9)
    _decoding(model, "realistic", "two calls" in best)
    model.static_cache = True
    run = pipeline(model, kit.reader, s.target_s, 1, s.max_rows)
    _decoding(model, "worst", separate=False)
    model.static_cache = False
    result["realistic_pipeline"] = run
    if dynamic:
        result["before_after"] = [
            pair(f"captions: static KV cache, compiled decoding ({name})", "dynamic cache",
                 1 / dynamic[name]["s"], "static + CUDA graphs", 1 / variants[name]["s"],
                 "batches/s")
            for name in variants
        ]  # fmt: skip
    kit.shared.pop("captioner", None)  # its GPU memory, for the sections after
    realistic = kit.results.get("projection", {}).get("captions_realistic", {})
    if run["images_per_s"] > realistic.get("images_per_s", 0):
        projected(kit, "captions_realistic", run["images_per_s"], f"static cache, {best}")
    return result
