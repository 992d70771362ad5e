"""GPU benchmark kit: every model module measured on one GPU in one short call, each change
against the path before it in the same run.

``bash bench/gpu/run.sh [--cpu-smoke]``. Writes ``gpu_kit.json`` and ``gpu_kit.md`` (the
tables) under $OUT if set, else bench/gpu/out/, after every section, so that a run cut
short still returns what it measured. Sections run in order while the budget lasts.

Per model module (before_after.py, onnx_cuda.py): images/s through the module's own batched
runtime (loader threads, precision choice, out-of-memory back-off), GPU utilisation and
peak memory during the run, the batch size, and the ratio to a bare forward loop over the
same tensors already on the device (1.0: no pipeline overhead); the path before each change
beside it (the report's first table). Then the compiled variants and their compile times,
two modules sharing the GPU (sharing.py), the rates the 500K projection takes
(``projection``), and the older checks: CLIP and GroundingDINO precision, the CUDA
out-of-memory back-off, the duplicates' cosine search on the GPU.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from gpu import architectures, before_after, comparisons, onnx_cuda, sharing  # noqa: E402
from gpu.measure import write_tier_store  # noqa: E402
from gpu.report import write_report  # noqa: E402

log = logging.getLogger("gpu-kit")

REAL_TIERS = {"detect": 1024, "clip": 384}  # config.yaml's defaults
SMOKE_TIERS = {"detect": 256, "clip": 128}


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
    tiers: dict[str, int] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)  # models sections hand on

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
        took = time.perf_counter() - began
        self.results.setdefault("section_s", {})[name] = round(took, 1)
        log.info("%s took %.1f s", name, took)
        self.results["wall_s"] = round(time.perf_counter() - self.settings.started, 1)
        write_report(self.out, self.results)


def aesthetic(kit: Kit) -> dict[str, Any]:
    return comparisons.aesthetic_head(kit.tmp / "aesthetic.pt", kit.settings.max_rows)


def out_of_memory(kit: Kit) -> dict[str, Any]:
    name, pretrained = architectures.clip_model(kit.tmp, kit.settings.real)
    return comparisons.oom_backoff(name, pretrained, kit.reader)


def duplicates(kit: Kit) -> dict[str, Any]:
    n = 200_000 if kit.settings.real else 2_000
    return comparisons.cosine_search(n, compare_n=30_000 if kit.settings.real else 1_000)


# (name, seconds it needs at least on the real run, function), in order of importance: a
# section starts only if the budget has that much left.
SECTIONS: tuple[tuple[str, float, Callable[[Kit], dict[str, Any]]], ...] = (
    ("embedding", 50, before_after.embedding),
    ("objects", 55, before_after.objects),
    ("captions", 70, before_after.captions),
    ("faces", 40, onnx_cuda.faces),
    ("ocr", 15, onnx_cuda.ocr),
    ("sharing", 60, sharing.two_modules),
    ("captions_static", 110, before_after.captions_static),
    ("objects_compile", 110, before_after.objects_compile),
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
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 480)")
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
        budget_s=args.budget or (480 if real else 900),
        target_s=args.target or (6.0 if real else 0.5),
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
        kit = Kit(settings, Path(tmp), reader, out, results, tiers=tiers)
        for name, needs_s, run in SECTIONS:
            if name in chosen:
                kit.section(name, needs_s if settings.real else 0, run)
    write_report(out, results)
    print((out / "gpu_kit.md").read_text())
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
