"""Captions benchmark: vision features once per image (OPP-2) vs ``model.generate`` per prompt.

Run from the repository root as a plain script:

    .venv/bin/python bench/bench_captions.py            # about 3 minutes on 2 cores
    .venv/bin/python bench/bench_captions.py --quick    # the tiny test model, seconds

The full run builds, with random weights, BLIP-2's real-size vision tower (ViT-g: 39
layers, 1408 wide, 224 px, ``Blip2VisionConfig``'s defaults) and real-size Q-Former
(12 layers, 768 wide, 32 queries), with a SMALL OPT language model (4 layers, 512 wide,
a 56-word vocabulary) so that the run takes minutes on a CPU: OPT-2.7B would make
generation, which both paths share, far slower. Nothing is downloaded.

Measured in one run, on the same images, caption + 4 questions each:

1. ``Captioner.infer``: the vision tower, Q-Former and projection once per image, then one
   batched ``language_model.generate`` for all images times all prompts;
2. the naive path: ``model.generate(**processor(images=image, text=prompt))`` for every
   image and prompt (5 vision passes per image);
3. the image features' (vision tower, Q-Former, projection) share of each path's time,
   and whether both paths produce the same text.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Row, bench_parser, machine_description, measure, ms_row, publish, ratio_row
from PIL import Image
from skimage import data

from imganalyzer.modules.captions import Captioner, CaptionSettings
from imganalyzer.runtime.batches import RowBatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpu.architectures import RealSizeCaptioner  # noqa: E402

from tests.support.tiny_blip2 import build_tiny_blip2  # noqa: E402

CLIP_TIER = 384  # the clip tier's default long edge
SMALL_LM = {"hidden_size": 512, "ffn_dim": 2048, "num_hidden_layers": 4, "num_attention_heads": 8}


def log(message: str) -> None:
    print(message, flush=True)


class RealSizeVisionCaptioner(RealSizeCaptioner):
    """BLIP-2's real-size ViT-g and Q-Former with a small OPT, built in memory."""

    language_model = {**SMALL_LM, "word_embed_proj_dim": SMALL_LM["hidden_size"]}
    vocabulary_size = 0
    widen_language_model = False


def tier_images(n: int) -> list[np.ndarray]:
    """scikit-image photos (and mirror images) at the clip tier's size."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    images = []
    for i in range(n):
        rgb = sources[i % len(sources)]
        image = Image.fromarray(np.ascontiguousarray(rgb[:, ::-1] if i >= len(sources) else rgb))
        image.thumbnail((CLIP_TIER, CLIP_TIER), Image.Resampling.LANCZOS)
        images.append(np.asarray(image))
    return images


def padded(images: list[np.ndarray]) -> RowBatch:
    canvas = np.zeros((len(images), CLIP_TIER, CLIP_TIER, 3), dtype=np.uint8)
    for slot, rgb in zip(canvas, images, strict=True):
        slot[: rgb.shape[0], : rgb.shape[1]] = rgb
    sizes = np.array([rgb.shape[:2] for rgb in images], dtype=np.int32)
    return RowBatch(np.arange(len(images)), canvas, sizes)


def naive(captioner: Captioner, images: list[np.ndarray]) -> list[list[str]]:
    """``model.generate`` for every image and prompt: the vision tower runs every time."""
    texts = []
    for rgb in images:
        texts.append([])
        for prompt in captioner.prompts:
            inputs = captioner.processor(images=rgb, text=prompt, return_tensors="pt")
            with torch.inference_mode():
                out = captioner.model.generate(
                    **inputs, max_new_tokens=captioner.max_new_tokens, do_sample=False, num_beams=1
                )
            new = out[0, inputs["input_ids"].shape[1] :]
            texts[-1].append(captioner.tokenizer.decode(new, skip_special_tokens=True).strip())
    return texts


class VisionTimer:
    """Seconds spent from the vision tower's start to the projection's end (the image
    features), summed over every forward pass, through module hooks."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seconds, self._started = 0.0, 0.0
        self._hooks = [
            model.vision_model.register_forward_pre_hook(self._start),
            model.language_projection.register_forward_hook(self._stop),
        ]

    def _start(self, *_: object) -> None:
        self._started = time.perf_counter()

    def _stop(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._started

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def timed(captioner: Captioner, fn, repeats: int):
    """(Timing of ``fn``, the image features' share of the fastest run, ``fn``'s result)."""
    shares, results = [], []

    def run() -> None:
        timer = VisionTimer(captioner.model)
        started = time.perf_counter()
        results.append(fn())
        shares.append(timer.seconds / (time.perf_counter() - started))
        timer.remove()

    timing = measure(run, repeats)
    return timing, shares[timing.runs.index(timing.best)], results[-1]


def run(quick: bool) -> list[Row]:
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    n_images, repeats = (4, 3) if quick else (2, 1)
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-") as tmp:
        if quick:
            model = str(build_tiny_blip2(Path(tmp)))
            captioner = Captioner(CaptionSettings.defaults(model=model, device="cpu"))
            label = "tiny test BLIP-2"
        else:
            model = "real-size ViT-g + Q-Former, small OPT"
            captioner = RealSizeVisionCaptioner(CaptionSettings.defaults(model=model))
            label = "real-size ViT-g/14 224 px + Q-Former, small OPT (4 x 512), random weights"
        started = time.perf_counter()
        captioner.load()
        log(f"{label}: built in {time.perf_counter() - started:.1f} s; {n_images} images, "
            f"{len(captioner.prompts)} prompts, max_new_tokens {captioner.max_new_tokens}, "
            f"CPU, {threads} threads")  # fmt: skip
        images = tier_images(n_images)
        batch = padded(images)
        captioner.infer(padded(images[:1]))  # warm-up
        log("features once ...")
        ours, ours_share, results = timed(captioner, lambda: captioner.infer(batch), repeats)
        log("naive: model.generate per image and prompt ...")
        slow, slow_share, texts = timed(captioner, lambda: naive(captioner, images), repeats)
    ours_texts = [[r["caption"], *r["answers"].values()] for r in results]
    return [
        ms_row("features once: 1 vision pass, 1 generate", ours, n_images, "per image"),
        ms_row(f"naive: {len(captioner.prompts)} x model.generate", slow, n_images, "per image"),
        ratio_row("speed-up (naive / features once)", slow.best, ours.best),
        Row("image features' share of time, naive", 100 * slow_share, "%"),
        Row("image features' share of time, features once", 100 * ours_share, "%"),
        Row("same text on both paths", float(ours_texts == texts), "yes=1"),
    ]


def main() -> None:
    parser = bench_parser(__doc__, "the tiny test model, 4 images (seconds)")
    args = parser.parse_args()
    log(machine_description())
    publish("captions: features once vs model.generate per prompt", run(args.quick), args.json)


if __name__ == "__main__":
    main()
