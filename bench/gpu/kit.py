"""GPU benchmark kit: every model module measured on one GPU in one short call.

``bash bench/gpu/run.sh [--cpu-smoke]``. Writes ``gpu_kit.json`` and ``gpu_kit.md`` (the
table) under $OUT if set, else bench/gpu/out/, after every section, so that a run cut
short still returns what it measured.

Per module (embedding, objects, captions, faces, aesthetic): images/s through the module's
own batched runtime (loader threads, precision choice, out-of-memory back-off) with the
workflow's one loader thread and with ``MANY_LOADERS``; GPU utilisation and peak memory
during the run; the batch size ``auto`` started at and ended with; and the ratio to a bare
forward loop over the same tensors already on the device (1.0: no pipeline overhead). Plus
BLIP-2 features-once vs one ``generate`` per prompt, GroundingDINO bf16-with-fp32-islands vs
fp32 and pure bf16, CLIP bf16 vs fp32, the out-of-memory back-off on CUDA, and the
duplicates' fp16 cosine search on the GPU vs fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from gpu import architectures, comparisons  # noqa: E402
from gpu.measure import bare_loop, pipeline, write_tier_store  # noqa: E402
from gpu.report import write_report  # noqa: E402

log = logging.getLogger("gpu-kit")

REAL_TIERS = {"detect": 1024, "clip": 384}  # config.yaml's defaults
SMOKE_TIERS = {"detect": 256, "clip": 128}
# The workflow's model rules have 2 threads: one drives the model, one loads batches.
WORKFLOW_LOADERS = 1
# A GPU machine's spare cores: what more loader threads would give.
MANY_LOADERS = 6
LARGER_CAPTION_BATCH = 128


@dataclass
class Settings:
    real: bool
    device: str
    budget_s: float
    target_s: float  # seconds of each measured pipeline run
    stored_images: int  # distinct synthetic photos in the tier store
    max_rows: int  # images one pipeline run reads at most
    started: float = field(default_factory=time.perf_counter)

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)


@dataclass
class Kit:
    settings: Settings
    tmp: Path
    reader: Any
    out: Path
    results: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str, needs_s: float, run: Callable[[Kit], dict[str, Any]]) -> None:
        """Run one section unless the budget is spent; record its result, skip or error."""
        left = self.settings.left_s()
        if left < needs_s:
            reason = f"skipped: {left:.0f} s of the budget left, needs about {needs_s:.0f} s"
            self.results.setdefault("skipped", {})[name] = reason
            log.warning("%s %s", name, reason)
            return
        log.info("== %s (%.0f s left)", name, left)
        began = time.perf_counter()
        try:
            self.results.setdefault("modules", {})[name] = run(self)
        except Exception as error:  # noqa: BLE001 (one section's failure must not lose the rest)
            log.exception("%s failed", name)
            summary = traceback.format_exception_only(error)[-1].strip()
            self.results.setdefault("errors", {})[name] = summary[:500]
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        log.info("%s took %.1f s", name, time.perf_counter() - began)
        self.results["wall_s"] = round(time.perf_counter() - self.settings.started, 1)
        write_report(self.out, self.results)


def measured(kit: Kit, model: Any) -> dict[str, Any]:
    """A model's pipeline with the workflow's loader and with many, and its bare loop."""
    s = kit.settings
    rows = {}
    for loaders in (WORKFLOW_LOADERS, MANY_LOADERS):
        torch.set_num_threads(loaders + 1)  # as run_*_job sets it for ``threads``
        rows[loaders] = pipeline(model, kit.reader, s.target_s, loaders, s.max_rows)
    torch.set_num_threads(os.cpu_count() or 1)
    bare = bare_loop(model, kit.reader, s.target_s / 2)
    result = dict(rows[WORKFLOW_LOADERS])
    result["model"] = model.model_id
    result["bare_images_per_s"] = bare
    result["pipeline_vs_bare"] = result["images_per_s"] / bare
    many = rows[MANY_LOADERS]
    result[f"images_per_s_{MANY_LOADERS}_loaders"] = many["images_per_s"]
    result[f"pipeline_vs_bare_{MANY_LOADERS}_loaders"] = many["images_per_s"] / bare
    result[f"gpu_utilisation_pct_{MANY_LOADERS}_loaders"] = many["gpu_utilisation_pct"]
    return result


def embedding(kit: Kit) -> dict[str, Any]:
    from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings

    name, pretrained = architectures.clip_model(kit.tmp, kit.settings.real)
    torch.manual_seed(0)
    settings = EmbeddingSettings.defaults(model=name, pretrained=pretrained)
    model = ClipEmbedder(replace(settings, device=kit.settings.device))
    model.load()
    result = measured(kit, model)
    result["precision"] = comparisons.clip_precision(model, kit.reader, kit.settings.target_s)
    return result


def objects(kit: Kit) -> dict[str, Any]:
    from imganalyzer.modules.objects import ObjectDetector, ObjectSettings

    folder = architectures.groundingdino_folder(kit.tmp / "groundingdino", kit.settings.real)
    model = ObjectDetector(ObjectSettings.defaults(model=folder, device=kit.settings.device))
    model.load()
    result = measured(kit, model)
    result["precision"] = comparisons.groundingdino_precision(model, folder, kit.reader)
    return result


def captions(kit: Kit) -> dict[str, Any]:
    settings = kit.settings
    model = architectures.captioner(kit.tmp / "blip2", settings.real, device=settings.device)
    model.load()
    result = measured(kit, model)
    result["features_once"] = comparisons.blip2_features_once(model, kit.reader)
    if settings.real:  # generate is bound by kernel launches: does a larger batch pay?
        model.batch_size = LARGER_CAPTION_BATCH
        larger = pipeline(model, kit.reader, settings.target_s, WORKFLOW_LOADERS, settings.max_rows)
        result[f"images_per_s_batch_{LARGER_CAPTION_BATCH}"] = larger["images_per_s"]
        result[f"peak_gpu_memory_gib_batch_{LARGER_CAPTION_BATCH}"] = larger["peak_gpu_memory_gib"]
    return result


def faces(kit: Kit) -> dict[str, Any]:
    pack = architectures.face_pack(kit.tmp / "face_pack", kit.settings.real)
    # "auto": onnxruntime's CUDA provider where the machine's onnxruntime has it, else its CPU
    return comparisons.faces_job(pack, kit.reader, kit.tmp / "faces", "auto")


def aesthetic(kit: Kit) -> dict[str, Any]:
    return comparisons.aesthetic_head(kit.tmp / "aesthetic.pt", kit.settings.max_rows)


def out_of_memory(kit: Kit) -> dict[str, Any]:
    name, pretrained = architectures.clip_model(kit.tmp, kit.settings.real)
    return comparisons.oom_backoff(name, pretrained, kit.reader)


def duplicates(kit: Kit) -> dict[str, Any]:
    n = 200_000 if kit.settings.real else 2_000
    return comparisons.cosine_search(n, compare_n=30_000 if kit.settings.real else 1_000)


# (name, seconds it needs at least on the real run, function)
SECTIONS: tuple[tuple[str, float, Callable[[Kit], dict[str, Any]]], ...] = (
    ("embedding", 45, embedding),
    ("objects", 60, objects),
    ("captions", 75, captions),
    ("faces", 40, faces),
    ("duplicates", 15, duplicates),
    ("out_of_memory", 15, out_of_memory),
    ("aesthetic", 5, aesthetic),
)


def machine() -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_cores": os.cpu_count(),
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = None
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU")
    names = ",".join(name for name, _, _ in SECTIONS)
    parser.add_argument("--only", help=f"comma-separated sections: {names}")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 420)")
    parser.add_argument("--target", type=float, help="seconds per measured pipeline run")
    parser.add_argument("--out", help="output folder (default $OUT, else bench/gpu/out)")
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    real = not args.cpu_smoke
    if real and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-smoke, or on a GPU machine")
    return Settings(
        real=real,
        device="cuda" if real else "cpu",
        budget_s=args.budget or (420 if real else 300),
        target_s=args.target or (8.0 if real else 0.5),
        stored_images=192 if real else 12,
        max_rows=50_000 if real else 48,
    )


def main(argv: list[str] | None = None) -> int:
    form = "%(asctime)s %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=logging.INFO, format=form, stream=sys.stdout)
    args = parse(argv)
    settings = settings_for(args)
    out = Path(args.out or os.environ.get("OUT") or ROOT / "bench" / "gpu" / "out")
    out.mkdir(parents=True, exist_ok=True)
    chosen = set(args.only.split(",")) if args.only else {s[0] for s in SECTIONS}
    unknown = chosen - {s[0] for s in SECTIONS}
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}")
    results: dict[str, Any] = {
        "mode": "gpu" if settings.real else "cpu-smoke",
        "machine": machine(),
        "settings": {"target_s": settings.target_s, "stored_images": settings.stored_images},
    }
    log.info("machine: %s", json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory(prefix="imganalyzer-gpu-kit-") as tmp:
        tiers = REAL_TIERS if settings.real else SMOKE_TIERS
        began = time.perf_counter()
        reader = write_tier_store(Path(tmp) / "tiers.zarr", settings.stored_images, tiers)
        results["settings"]["tiers"] = tiers
        results["settings"]["tier_store_s"] = round(time.perf_counter() - began, 1)
        kit = Kit(settings, Path(tmp), reader, out, results)
        for name, needs_s, run in SECTIONS:
            if name in chosen:
                kit.section(name, needs_s if settings.real else 0, run)
    write_report(out, results)
    print((out / "gpu_kit.md").read_text())
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
