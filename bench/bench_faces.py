"""Faces benchmark: InsightFace on the 1024 px detect tier vs on the full-resolution image, and
people clustering of many faces (incremental assignment vs clustering everything afresh).

Run from the repository root as a plain script:

    .venv/bin/python bench/bench_faces.py            # about 8 minutes on 2 cores
    .venv/bin/python bench/bench_faces.py --quick    # smoke test, < 1 minute

1. A SCRFD-shaped detector with a real-size backbone (~2.6 GFLOPs at 640 x 640, random
   weights; its score head fires on bright squares, so the faces are known) and the tiny
   ArcFace of the tests, loaded through ``FaceAnalysis`` from a folder like a real pack, on
   a 6000 x 4000 synthetic photo with 6 faces. The tier path (``FaceAnalyzer.analyze`` on
   the detect tier read from Zarr) vs the naive path (InsightFace's ``app.get`` on a BGR copy
   of the full-resolution array, as OPP-3.8 describes; the detector resizes it to 640 px
   itself). Each runs in a fresh process, after one warm-up image: images/s, and the peak
   memory it adds (peak resident size, reset after the model load, minus the resident size
   then). Decoding the original (never done by the tier path) is timed separately.
2. ``people.group_faces`` on synthetic 512-d ArcFace-like embeddings (20 faces per person):
   adding 5% new faces to people that already hold the rest (centroid assignment) vs
   clustering every face from scratch (DBSCAN, brute-force cosine).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Row, bench_parser, machine_description, measure, ms_row, publish, ratio_row

ORIGINAL = (6000, 4000)  # width, height: 24 MP
DETECT_TIER = {"detect": 1024}
CELL = 300  # original pixels of one stride-32 cell of the 640 px detector input
FACE_CELLS = [(1, 2), (1, 5), (2, 8), (4, 3), (4, 11), (5, 16)]
PER_PERSON = 20
NEW_SHARE = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- models and images


def build_pack(folder: Path) -> Path:
    """The tiny pack of the tests with its detector swapped for a real-size one."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch
    from torch import nn

    from tests.support import tiny_insightface as tiny

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()

            def block(c_in: int, c_out: int) -> nn.Sequential:
                return nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, 2, 1), nn.ReLU(),
                    nn.Conv2d(c_out, c_out, 3, 1, 1), nn.ReLU(),
                )  # fmt: skip

            self.stages = nn.ModuleList(
                [block(3, 16), block(16, 32), block(32, 64), block(64, 96), block(96, 128)]
            )
            self.heads = nn.ModuleList([nn.Conv2d(c, 30, 3, 1, 1) for c in (64, 96, 128)])

        def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
            features = []
            for stage in self.stages:
                image = stage(image)
                features.append(image)
            return [head(f).mean() for head, f in zip(self.heads, features[2:], strict=True)]

    class RealSizeScrfd(tiny.TinyScrfd):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Backbone()

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            # The backbone's output reaches every score, scaled to no effect: it must run.
            noise = sum(self.backbone(image)) * 1e-9
            outputs = super().forward(image)
            return tuple(o + noise for o in outputs)

    tiny.build_tiny_insightface(folder)
    (folder / "det_tiny.onnx").unlink()
    torch.manual_seed(0)
    example = torch.zeros(1, 3, 64, 64)
    tiny._export(RealSizeScrfd(), example, folder / "det_real.onnx", {2: "h", 3: "w"})
    return folder


def synthetic_photo() -> np.ndarray:
    """A 24 MP RGB image: textured background and white squares filling detector cells."""
    width, height = ORIGINAL
    rng = np.random.default_rng(0)
    small = rng.integers(0, 90, (height // 50, width // 50, 3), dtype=np.uint8)
    rgb = np.repeat(np.repeat(small, 50, axis=0), 50, axis=1)
    for row, column in FACE_CELLS:
        rgb[row * CELL : (row + 1) * CELL, column * CELL : (column + 1) * CELL] = 255
    return rgb


def write_inputs(folder: Path) -> None:
    from PIL import Image

    from imganalyzer.decode.tiers import TierWriter, make_tiers

    rgb = synthetic_photo()
    Image.fromarray(rgb).save(folder / "original.jpg", quality=92)
    with TierWriter(folder / "tiers.zarr", n_images=1, tiers=DETECT_TIER) as writer:
        writer.write(0, make_tiers(rgb, DETECT_TIER))


# ---------------------------------------------------------------- one path per process


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> None:
    """Linux: restart the peak resident size (VmHWM) from the current one, so that the peak
    of model loading does not hide the peak of the analysis."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def worker(path_kind: str, folder: Path, images: int) -> dict:
    """Analyse ``images`` images (the same one) on one path; rate and added peak memory."""
    from PIL import Image

    from imganalyzer.decode.tiers import TierReader
    from imganalyzer.modules.faces import FaceAnalyzer, FaceSettings

    settings = FaceSettings.defaults(pack=str(folder / "pack"), det_size=640, device="cpu")
    analyzer = FaceAnalyzer(settings, threads=2)
    analyzer.load()
    scale = (ORIGINAL[0] / 1024, ORIGINAL[1] / 683)
    reset_peak_rss()
    before = rss_bytes()  # the naive path's decoded original counts: it needs it in memory
    original = np.asarray(Image.open(folder / "original.jpg")) if path_kind == "full" else None
    reader = TierReader(folder / "tiers.zarr")
    inputs = (analyzer, path_kind, reader, original, scale)
    analyze_images(*inputs, images=1)  # warm-up: onnxruntime sizes its buffers on a first run
    started = time.perf_counter()
    found = analyze_images(*inputs, images=images)
    elapsed = time.perf_counter() - started
    peak = peak_rss_bytes()
    return {"seconds": elapsed, "faces": found, "added_peak_mb": (peak - before) / 2**20}


def analyze_images(analyzer, path_kind, reader, original, scale, images: int) -> int:  # noqa: ANN001
    found = 0
    for _ in range(images):
        if path_kind == "tier":
            found += len(analyzer.analyze(reader.image("detect", 0), scale))
        else:
            bgr = original[:, :, ::-1].copy()  # the naive module's full-resolution BGR copy
            found += len(analyzer.app.get(bgr))
    return found


def run_worker(path_kind: str, folder: Path, images: int) -> dict:
    command = [sys.executable, __file__, "--worker", path_kind, str(folder), str(images)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def detection_rows(quick: bool) -> list[Row]:
    images = 4 if quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_pack(folder / "pack")
        write_inputs(folder)
        tier = run_worker("tier", folder, images)
        full = run_worker("full", folder, images)
        from PIL import Image

        decode = measure(lambda: np.asarray(Image.open(folder / "original.jpg")), repeats=2)
    tier_rate, full_rate = images / tier["seconds"], images / full["seconds"]
    expected = len(FACE_CELLS) * images
    note = f"{images} images, {expected} faces expected"
    return [
        Row("faces on the 1024 px tier", tier_rate, "images/s", f"{tier['faces']} found; {note}"),
        Row("faces on the 24 MP original", full_rate, "images/s", f"{full['faces']} found"),
        ratio_row("tier vs original: images/s", tier_rate, full_rate),
        Row("tier: peak memory added", tier["added_peak_mb"], "MB"),
        Row("original: peak memory added", full["added_peak_mb"], "MB", "incl. the decoded array"),
        ms_row("decoding the 24 MP JPEG (naive path only)", decode),
    ]


# ---------------------------------------------------------------- clustering


def clustering_rows(quick: bool) -> list[Row]:
    from imganalyzer.steps.people_clusters import group_faces
    from imganalyzer.steps.people_edits import Edits

    n_faces = 10_000 if quick else 100_000
    n_people = n_faces // PER_PERSON
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((n_people, 512)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n_people), PER_PERSON)
    rng.shuffle(owner)
    vectors = centres[owner] + 0.029 * rng.standard_normal((n_faces, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"f{i}" for i in range(n_faces)]
    n_old = int(n_faces * (1 - NEW_SHARE))
    previous: dict[int, list[str]] = {}
    for i in range(n_old):
        previous.setdefault(int(owner[i]) + 1, []).append(ids[i])
    log(f"clustering {n_faces} faces of {n_people} people ...")
    incremental = measure(lambda: group_faces(ids, vectors, previous, Edits()), repeats=2)
    result = group_faces(ids, vectors, previous, Edits())
    full = measure(lambda: group_faces(ids, vectors, {}, Edits()), repeats=1)
    fresh = group_faces(ids, vectors, {}, Edits())
    return [
        ms_row(
            f"people: {NEW_SHARE:.0%} new faces assigned (of {n_faces})",
            incremental,
            note=f"{result.matched} matched, {result.new_people} new people",
        ),  # fmt: skip
        ms_row(
            f"people: all {n_faces} faces clustered afresh",
            full,
            note=f"{len(fresh.members)} people found, {n_people} true",
        ),  # fmt: skip
        ratio_row("incremental vs re-cluster", full.best, incremental.best),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(argv[1], Path(argv[2]), int(argv[3]))))
        return
    parser = bench_parser(__doc__, "fewer images and 10K faces instead of 100K")
    args = parser.parse_args(argv)
    if not args.json:
        log(machine_description())
    rows = detection_rows(args.quick) + clustering_rows(args.quick)
    title = (
        f"faces (real-size SCRFD-shaped detector, random weights, CPU{', --quick' * args.quick})"
    )
    publish(title, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
