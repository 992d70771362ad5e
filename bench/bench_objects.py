"""Objects benchmark: GroundingDINO batched vs one image at a time, and fp32 vs mixed vs bf16.

Run from the repository root as a plain script:

    .venv/bin/python bench/bench_objects.py            # a few minutes on 2 cores
    .venv/bin/python bench/bench_objects.py --quick    # the tiny test model: under a minute

The model is GroundingDINO-T's architecture (``GroundingDinoConfig`` defaults: Swin-T
backbone, BERT-base text encoder, 900 queries) with seeded random weights, saved and loaded
back with ``from_pretrained`` like a real checkpoint (nothing is downloaded). To fit a CPU
run, its image processor resizes to a shortest edge of 320 px (the real one: 800 px).
``--quick`` uses the tiny test model instead. Measured in this one run (no assertions):

1. images/s through ``ObjectDetector.run`` at batch 1 vs batch 4, on a shard of
   same-shape photos (one forward per batch) stored as a real detect tier;
2. one forward pass in fp32, mixed precision (bf16 with ``FP32_MODULES`` in fp32) and pure
   bf16 on the CPU, and how far the mixed and bf16 token probabilities and boxes move from
   fp32. With random weights the query selection (top-k of near-tied proposal scores) flips
   on any change, so the other runs replay fp32's selection; the "fp32, bf16-rounded input"
   row is the floor any bf16 run starts from.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import Row, bench_parser, machine_description, measure, publish, rate_row, ratio_row
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support.tiny_groundingdino

from imganalyzer.decode.tiers import TierReader, TierWriter  # noqa: E402
from imganalyzer.modules.objects import (  # noqa: E402
    FP32_MODULES,
    ObjectDetector,
    ObjectSettings,
)
from imganalyzer.runtime.batches import RowBatch, TierBatches  # noqa: E402
from tests.support.tiny_groundingdino import (  # noqa: E402
    ReplayedQuerySelection,
    build_tiny_groundingdino,
    save_groundingdino,
    tiny_vocabulary,
)

DETECT_SIDE = 1024
REAL_IMAGE_SIZE = {"shortest_edge": 320, "longest_edge": 534}
BATCHED = 4


def log(message: str) -> None:
    print(message, flush=True)


def real_size_model(folder: Path) -> Path:
    """GroundingDINO-T's architecture: the config's defaults are the tiny variant's."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(out_features=["stage2", "stage3", "stage4"])  # Swin-T defaults
    text = BertConfig()  # bert-base-uncased: 12 layers, 768 wide, 30522 tokens
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text)
    vocab = tiny_vocabulary()
    vocab.update({f"[filler{i}]": i for i in range(len(vocab), text.vocab_size)})
    return save_groundingdino(folder, config, vocab, REAL_IMAGE_SIZE)


def tier_store(path: Path, n: int) -> TierReader:
    """``n`` 4:3 crops of scikit-image photos as a detect tier."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with TierWriter(path, n_images=n, tiers={"detect": DETECT_SIDE}) as writer:
        for i in range(n):
            rgb = sources[i % len(sources)]
            height = min(rgb.shape[0], rgb.shape[1] * 3 // 4)
            crop = rgb[:height, : height * 4 // 3]
            image = Image.fromarray(crop).resize((DETECT_SIDE, DETECT_SIDE * 3 // 4))
            writer.write(i, {"detect": np.asarray(image)})
    return TierReader(path)


def batching_rows(model: str, reader: TierReader, repeats: int) -> list[Row]:
    detector = ObjectDetector(ObjectSettings.defaults(model=model, device="cpu", batch_size=1))
    detector.load()
    source = TierBatches(reader, "detect")
    timings = {}
    for batch_size in (1, BATCHED):
        detector.batch_size = batch_size
        detector.run(source, lambda indices, found: None)  # warm-up
        log(f"batch {batch_size} ...")
        timings[batch_size] = measure(
            lambda: detector.run(source, lambda indices, found: None), repeats
        )
    n = source.n_rows
    return [
        rate_row("batch 1", timings[1], n),
        rate_row(f"batch {BATCHED}", timings[BATCHED], n),
        ratio_row(f"batch {BATCHED} / batch 1", timings[1].best, timings[BATCHED].best),
    ]


def bf16_detector(model: str, fp32_modules) -> ObjectDetector:
    detector = ObjectDetector(ObjectSettings.defaults(model=model, device="cpu"), fp32_modules)
    detector.device, detector.dtype = torch.device("cpu"), torch.bfloat16
    detector.load_model(detector.device, detector.dtype)
    return detector


def precision_rows(model: str, reader: TierReader, repeats: int) -> list[Row]:
    full = ObjectDetector(ObjectSettings.defaults(model=model, device="cpu"))
    full.load()
    images, sizes, _ = reader.read("detect", 0, 2)
    inputs = full.preprocess(RowBatch(np.arange(2), images, sizes))
    variants = {
        "mixed (FP32_MODULES in fp32)": bf16_detector(model, FP32_MODULES),
        "pure bf16": bf16_detector(model, ()),
    }
    rows = []
    with torch.inference_mode(), ReplayedQuerySelection() as selection:
        probs, boxes = full.predict_batch(inputs)
        selection.replay()
        fp32 = measure(lambda: full.predict_batch(inputs), repeats)
        rows.append(Row("fp32 forward", fp32.best * 1e3 / 2, "ms/image"))
        floor_probs, floor_boxes = full.predict_batch(inputs.to(torch.bfloat16).float())
        rows += drift_rows("fp32, bf16-rounded input", probs, boxes, floor_probs, floor_boxes)
        for name, detector in variants.items():
            log(f"{name} ...")
            half = inputs.to(torch.bfloat16)
            got_probs, got_boxes = detector.predict_batch(half)
            timing = measure(lambda d=detector, h=half: d.predict_batch(h), repeats)
            rows.append(Row(f"{name} forward", timing.best * 1e3 / 2, "ms/image"))
            rows.append(ratio_row(f"{name}: speed-up over fp32", fp32.best, timing.best))
            rows += drift_rows(name, probs, boxes, got_probs, got_boxes)
    return rows


def drift_rows(name, probs, boxes, got_probs, got_boxes) -> list[Row]:
    score = (got_probs.max(-1).values - probs.max(-1).values).abs()
    box_px = (got_boxes - boxes).abs() * DETECT_SIDE
    return [
        Row(
            f"{name}: max score diff",
            float(score.max()),
            "",
            f"max {score.max():.4f}, mean {score.mean():.5f}",
        ),
        Row(f"{name}: max box diff", float(box_px.max()), "px", f"at {DETECT_SIDE} px"),
    ]


def run(quick: bool) -> list[Row]:
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    n_images, repeats = (8, 1) if quick else (8, 2)
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-") as tmp:
        log("building the model ...")
        folder = Path(tmp) / "model"
        model = str(build_tiny_groundingdino(folder) if quick else real_size_model(folder))
        reader = tier_store(Path(tmp) / "t.zarr", n_images)
        log(f"{n_images} images, {threads} threads")
        return batching_rows(model, reader, repeats) + precision_rows(model, reader, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "the tiny test model, 1 repeat")
    args = parser.parse_args(argv)
    if not args.json:
        log(machine_description())
    rows = run(args.quick)
    variant = "tiny test model" if args.quick else "GroundingDINO-T architecture, 320 px"
    publish(f"objects ({variant}, random weights, CPU)", rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
