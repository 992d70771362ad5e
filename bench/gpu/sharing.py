"""Two GPU jobs on one GPU (``--resources gpu=1 gpu_mem_mb=...``): two model modules in
two processes, as two workflow jobs would run, timed one after the other and then at the
same time on the same device. The aggregate images/s of both against running them in turn
is what sharing the GPU buys.

Phases, kept in step by a barrier of the two workers and this process: both load and warm
up; the first runs alone; the second runs alone; both run together. Each runs the same
rows (its own tier rows) every time.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from gpu.measure import GpuSampler, RepeatedTierBatches, pair

PHASE_TIMEOUT_S = 300
# The pair measured: the two modules that take the most GPU time.
MODULES = ("objects", "captions")


def _model(module: str, spec: dict[str, Any]) -> Any:
    from gpu import architectures
    from gpu.before_after import detector_settings

    if module == "objects":
        from imganalyzer.modules.objects import ObjectDetector

        return ObjectDetector(detector_settings(spec["groundingdino"], spec["device"]))
    if module == "captions":
        return architectures.captioner(Path(spec["tmp"]) / "blip2-sharing", spec["real"],
                                       device=spec["device"])  # fmt: skip
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    name, pretrained = architectures.clip_model(Path(spec["tmp"]), spec["real"])
    settings = {"model": name, "pretrained": pretrained, "device": spec["device"]}
    return ClipEmbedder(EmbeddingSettings.defaults(**settings))


def _worker(module: str, first: bool, spec: dict[str, Any], barrier: Any, queue: Any) -> None:
    import torch

    from imganalyzer.decode.tiers import TierReader

    torch.set_num_threads(2)
    model = _model(module, spec)
    model.load()
    reader = TierReader(spec["store"])
    rows = max(2, spec["rows"][module] // model.batch_size) * model.batch_size
    source = RepeatedTierBatches(reader, model.image_tier, rows)
    warm = RepeatedTierBatches(reader, model.image_tier, 2 * model.batch_size)
    model.run(warm, lambda i, r: None)

    def timed() -> tuple[float, float]:
        began = time.perf_counter()
        model.run(source, lambda i, r: None)
        return began, time.perf_counter()

    barrier.wait(PHASE_TIMEOUT_S)  # loaded
    alone = timed() if first else None
    barrier.wait(PHASE_TIMEOUT_S)
    alone = alone or (timed() if not first else None)
    barrier.wait(PHASE_TIMEOUT_S)
    together = timed()
    queue.put((module, rows, alone, together))
    barrier.wait(PHASE_TIMEOUT_S)


def two_modules(kit: Any) -> dict[str, Any]:
    s = kit.settings
    rates = kit.results.get("modules", {})
    spec = {
        "device": s.device, "real": s.real, "tmp": str(kit.tmp), "store": str(kit.reader.path),
        "groundingdino": kit.shared.get("groundingdino"),
        "rows": {m: int(rates.get(m, {}).get("images_per_s", 8) * s.target_s) for m in MODULES},
    }  # fmt: skip
    if spec["groundingdino"] is None:
        from gpu import architectures

        spec["groundingdino"] = architectures.groundingdino_folder(
            kit.tmp / "groundingdino", s.real
        )
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(3), context.Queue()
    workers = [
        context.Process(target=_worker, args=(m, i == 0, spec, barrier, queue), daemon=True)
        for i, m in enumerate(MODULES)
    ]
    for worker in workers:
        worker.start()
    utilisation: dict[str, float | None] = {}
    try:
        barrier.wait(PHASE_TIMEOUT_S)
        for phase in (f"{MODULES[0]} alone", f"{MODULES[1]} alone", "together"):
            with GpuSampler() as gpu:
                barrier.wait(PHASE_TIMEOUT_S)  # the end of the phase
            utilisation[phase] = gpu.mean_utilisation
        found = [queue.get(timeout=PHASE_TIMEOUT_S) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return _summary(found, utilisation)


def _summary(found: list[Any], utilisation: dict[str, float | None]) -> dict[str, Any]:
    images = sum(rows for _, rows, _, _ in found)
    in_turn_s = sum(end - began for _, _, (began, end), _ in found)
    together_s = max(end for *_, (_, end) in found) - min(began for *_, (began, _) in found)
    result: dict[str, Any] = {
        "modules": list(MODULES),
        "images": images,
        "gpu_utilisation_pct": utilisation,
        "per_module": {
            module: {
                "images": rows,
                "alone_images_per_s": rows / (alone[1] - alone[0]),
                "together_images_per_s": rows / (together[1] - together[0]),
            }
            for module, rows, alone, together in found
        },
        "in_turn_images_per_s": images / in_turn_s,
        "together_images_per_s": images / together_s,
    }
    result["before_after"] = [
        pair(f"GPU sharing: {' + '.join(MODULES)} in two processes", "one after the other",
             result["in_turn_images_per_s"], "at the same time",
             result["together_images_per_s"]),
    ]  # fmt: skip
    return result
