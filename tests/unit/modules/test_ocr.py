"""OCR with RapidOCR's real bundled models on rendered text, gated by the objects rows, and
the TrOCR backend through its real loader on a tiny random-weight model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import imganalyzer.modules.ocr as ocr
import imganalyzer.modules.ocr_backends as ocr_backends
from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode.readers import DecodedImage, decode_image
from imganalyzer.layout import Layout
from imganalyzer.modules.ocr import OcrReader, OcrSettings, reading_order, to_original
from imganalyzer.modules.ocr_backends import OcrLine, TextRegion, load_trocr, strongest_regions
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelNotFoundError
from imganalyzer.store import ResultsStore
from tests.support.tiny_trocr import WORDS, build_tiny_trocr

SIGN_LINES = ("IMGANALYZER TEST 2024", "HELLO WORLD")
BIG_LINES = ("OPEN DAILY", "CAFE 1987")
UPSIDE_DOWN = "UPSIDE DOWN 42"
OBJECTS_ERROR = "cannot identify image file"
MIN_IOU = 0.5
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans when the machine has it, else Pillow's own scalable font."""
    if os.path.exists(DEJAVU) and not os.environ.get("IMGANALYZER_TEST_DEFAULT_FONT"):
        return ImageFont.truetype(DEJAVU, size)
    return ImageFont.load_default(size=size)


def render(
    size: tuple[int, int], lines: tuple[str, ...], font_sizes: tuple[int, ...], at: tuple[int, int]
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Black lines on white, one under the other; returns the image and each line's ink box."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    x, y = at
    boxes = []
    for text, font_size in zip(lines, font_sizes, strict=True):
        face = font(font_size)
        draw.text((x, y), text, fill="black", font=face)
        boxes.append(draw.textbbox((x, y), text, font=face))
        y += int(font_size * 1.8)
    return image, boxes


def iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def entry_of(library: Path, name: str) -> Entry:
    stat = os.stat(library / name)
    return Entry(name, stat.st_size, stat.st_mtime_ns)


def objects_row(entry: Entry, has_text: bool) -> dict:
    fields = {"has_text": has_text, "has_person": False, "labels": [], "detections": []}
    return ok_row(entry, fields)


JOB = "000001-00000-00000"


@dataclass
class OcrShard:
    """A shard's manifest and objects rows in the results folder ``layout``."""

    layout: Layout
    id: str

    @property
    def objects(self) -> Path:
        return self.layout.rows("objects", self.id)

    @property
    def out_jsonl(self) -> Path:
        return self.layout.rows("ocr", self.id)


def write_shard(results: Path, shard: str, rows: list[tuple[Entry, dict]]) -> OcrShard:
    layout = Layout(results)
    write_manifest(layout.manifest(shard), [entry for entry, _ in rows])
    write_rows(layout.rows("objects", shard), [row for _, row in rows])
    return OcrShard(layout, shard)


def run_ocr(shards: list[OcrShard], library: Path, threads: int = 2, **settings) -> ocr.OcrReader:
    """One OCR job over ``shards`` (of one results folder), with the schema's other settings."""
    reader = OcrReader(OcrSettings.defaults(library=str(library), **settings))
    return run_model_job(reader, shards[0].layout, JOB, [s.id for s in shards], threads)


@dataclass
class Library:
    root: Path
    sign_boxes: list
    big_boxes: list  # in the 3000 px original's pixels
    shards: list[OcrShard]
    decoded: list[str]  # the paths the job decoded
    job: ocr.OcrReader


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = tmp_path_factory.mktemp("library")
    sign, sign_boxes = render((1000, 400), SIGN_LINES, (48, 48), (40, 40))
    sign.save(root / "sign.png")
    big, big_boxes = render((3000, 1200), BIG_LINES, (160, 160), (300, 200))
    big.save(root / "big.jpg", quality=95)
    upside_down, _ = render((900, 200), (UPSIDE_DOWN,), (56,), (40, 40))
    upside_down.rotate(180).save(root / "upside_down.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 10)
    sign.save(root / "changed.png")
    changed = entry_of(root, "changed.png")
    changed = Entry(changed.path, changed.size, changed.mtime_ns - 10**9)  # edited since
    no_text = Entry("no_text.jpg", 12345, 10**18)  # never written: opening it would fail
    broken = Entry("broken.jpg", 999, 10**18)
    results = tmp_path_factory.mktemp("ocr_results")
    shards = [
        write_shard(
            results,
            "000001-00000",
            [
                (entry_of(root, "sign.png"), objects_row(entry_of(root, "sign.png"), True)),
                (no_text, objects_row(no_text, False)),
                (broken, error_row(broken, OBJECTS_ERROR)),
            ],
        ),
        write_shard(
            results,
            "000002-00000",
            [
                (entry_of(root, "big.jpg"), objects_row(entry_of(root, "big.jpg"), True)),
                (entry_of(root, "corrupt.jpg"), objects_row(entry_of(root, "corrupt.jpg"), True)),
                (changed, objects_row(changed, True)),
                (
                    entry_of(root, "upside_down.png"),
                    objects_row(entry_of(root, "upside_down.png"), True),
                ),
            ],
        ),
    ]
    decoded = []

    def recording_decode(path, long_edge, max_pixels):
        decoded.append(str(path))
        return decode_image(path, long_edge, max_pixels)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ocr, "decode_image", recording_decode)
        job = run_ocr(shards, root, max_side=1000, device="cpu", threads=2)
    return Library(root, sign_boxes, big_boxes, shards, decoded, job)


def rows_of(shard: OcrShard) -> list[dict]:
    return list(read_rows(shard.out_jsonl))


@pytest.mark.slow  # the library fixture: rapidocr over a 3000 px image, ~7 s
def test_recognised_text_and_boxes_match_the_rendered_lines(library: Library) -> None:
    row = rows_of(library.shards[0])[0]
    assert row["status"] == "ok" and row["backend"] == "rapidocr" and "skipped" not in row
    assert [line["text"].upper() for line in row["lines"]] == list(SIGN_LINES)
    assert row["text"].upper() == "\n".join(SIGN_LINES)
    for line, drawn in zip(row["lines"], library.sign_boxes, strict=True):
        assert 0.5 <= line["confidence"] <= 1 and line["confidence"] == round(line["confidence"], 4)
        assert iou(line["box"], drawn) > MIN_IOU


@pytest.mark.slow
def test_a_large_image_is_read_bounded_and_boxes_come_back_in_original_pixels(
    library: Library,
) -> None:
    row = rows_of(library.shards[1])[0]
    assert [line["text"].upper() for line in row["lines"]] == list(BIG_LINES)
    for line, drawn in zip(row["lines"], library.big_boxes, strict=True):
        assert iou(line["box"], drawn) > MIN_IOU
    assert max(line["box"][2] for line in row["lines"]) > 1000  # scaled up from the 1000 px read


@pytest.mark.slow
def test_an_upside_down_line_is_turned_and_read(library: Library) -> None:
    row = rows_of(library.shards[1])[3]
    # Words may come as separate regions, placed in the turned image's order.
    assert sorted(row["text"].upper().split()) == sorted(UPSIDE_DOWN.split())


@pytest.mark.slow
def test_images_without_text_are_skipped_without_opening_the_file(library: Library) -> None:
    row = rows_of(library.shards[0])[1]
    assert row["status"] == "ok" and row["skipped"] == "no text"
    assert row["lines"] == [] and row["text"] == ""
    assert not any(path.endswith("no_text.jpg") for path in library.decoded)


@pytest.mark.slow
def test_an_objects_error_is_an_error_row_and_its_file_is_not_opened(library: Library) -> None:
    row = rows_of(library.shards[0])[2]
    assert row["status"] == "error" and row["error"] == f"objects: {OBJECTS_ERROR}"
    assert not any(path.endswith("broken.jpg") for path in library.decoded)


@pytest.mark.slow
def test_a_corrupt_or_changed_image_is_an_error_row_and_the_shard_goes_on(
    library: Library,
) -> None:
    big, corrupt, changed, _ = rows_of(library.shards[1])
    assert big["status"] == "ok" and big["lines"]
    # JPEG magic then garbage: the decoder reads it as a JPEG that ends early
    assert corrupt["status"] == "error"
    assert any(word in corrupt["error"] for word in ("corrupt", "truncated"))
    assert changed["status"] == "error" and "changed" in changed["error"]
    assert not any(path.endswith("changed.png") for path in library.decoded)


@pytest.mark.slow
def test_rows_follow_the_manifest_and_the_job_counts_them(library: Library) -> None:
    for shard in library.shards:
        objects = list(read_rows(shard.objects))
        assert [(r["path"], r["size"], r["mtime_ns"]) for r in rows_of(shard)] == [
            (r["path"], r["size"], r["mtime_ns"]) for r in objects
        ]
    counts = library.job.counts
    assert (counts.read, counts.skipped, counts.errors) == (3, 1, 3)
    rows = [row for shard in library.shards for row in rows_of(shard)]
    assert len(rows) == 7 and library.job.stats.images == 5  # opened: 3 read, 2 errors
    assert counts.lines == sum(len(row.get("lines", ())) for row in rows) >= 5
    summary = ResultsStore(library.shards[0].layout).summary("ocr", JOB)
    assert summary and (summary["read"], summary["errors"], summary["lines"]) == (
        3, 3, counts.lines,
    )  # fmt: skip
    assert library.job.model_id == "rapidocr" and library.job.module == "ocr"


def test_max_regions_keeps_the_largest_lines(tmp_path: Path) -> None:
    lines = ("SMALL PRINT HERE", "BIGGEST TITLE", "MEDIUM LINE", "TINY NOTE")
    image, _ = render((1000, 560), lines, (28, 80, 50, 22), (30, 20))
    image.save(tmp_path / "page.png")
    entry = entry_of(tmp_path, "page.png")
    shard = write_shard(tmp_path / "results", "000001-00000", [(entry, objects_row(entry, True))])
    run_ocr([shard], tmp_path, max_regions=2, device="cpu")
    assert rows_of(shard)[0]["text"].upper() == "BIGGEST TITLE\nMEDIUM LINE"


def test_lines_below_min_confidence_are_dropped_and_boxes_scaled() -> None:
    class Reader:
        name = "fake"

        def read(self, rgb: np.ndarray, regions=None) -> list[OcrLine]:
            return [
                OcrLine("sure", 0.71234, (10, 10, 50, 20)),
                OcrLine("unsure", 0.3, (0, 0, 5, 5)),
            ]

    decoded = DecodedImage(np.zeros((100, 200, 3), np.uint8), (800, 400), "pillow")
    row = ocr._recognise(Entry("a.jpg", 1, 2), decoded, Reader(), min_confidence=0.5)
    assert isinstance(row, dict)
    assert row["lines"] == [
        {"text": "sure", "confidence": 0.7123, "box": [40.0, 40.0, 200.0, 80.0]}
    ]
    assert row["text"] == "sure" and row["backend"] == "fake"


def test_strongest_regions_rank_by_area_times_score() -> None:
    def region(width: float, height: float, score: float) -> TextRegion:
        points = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
        return TextRegion(points, score)

    regions = [region(100, 10, 0.9), region(300, 10, 0.2), region(50, 50, 0.5), region(10, 1, 1)]
    kept = strongest_regions(regions, 2)
    assert [r.area * r.score for r in kept] == [1250.0, 900.0]


def test_reading_order_is_rows_top_to_bottom_then_left_to_right() -> None:
    def line(text: str, x0: float, y0: float, height: float = 20) -> OcrLine:
        return OcrLine(text, 1.0, (x0, y0, x0 + 50, y0 + height))

    shuffled = [line("d", 10, 100), line("b", 300, 12), line("a", 10, 8), line("c", 600, 5)]
    assert [x.text for x in reading_order(shuffled)] == ["a", "b", "c", "d"]


def test_to_original_scales_each_axis_and_clips() -> None:
    moved = to_original(OcrLine("x", 0.9, (10, 20, 500, 260)), (500, 250), (2000, 1000))
    assert moved.box == (40.0, 80.0, 2000.0, 1000.0)


@pytest.mark.slow  # the library fixture
def test_trocr_backend_reads_the_detected_lines_through_its_real_loader(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_tiny_trocr(tmp_path / "tiny_trocr")
    entry = entry_of(library.root, "sign.png")
    shard = write_shard(tmp_path / "results", "000001-00000", [(entry, objects_row(entry, True))])
    job = run_ocr([shard], library.root, backend="trocr", trocr_model=str(model),
                  min_confidence=0.0, device="cpu")  # fmt: skip
    row = rows_of(shard)[0]
    assert row["status"] == "ok" and row["backend"] == job.model_id == f"trocr:{model}"
    assert len(row["lines"]) == len(SIGN_LINES)  # the detector's lines, random words on each
    for line, drawn in zip(row["lines"], library.sign_boxes, strict=True):
        assert set(line["text"].split()) <= set(WORDS)
        assert 0 < line["confidence"] <= 1
        assert iou(line["box"], drawn) > MIN_IOU
    assert row["text"] == "\n".join(line["text"] for line in row["lines"])


def test_trocr_confidence_is_the_mean_token_probability_up_to_the_end_token() -> None:
    import torch

    log_probs = torch.log(torch.tensor([[0.5, 0.5, 0.1], [0.8, 0.2, 0.5]]))
    tokens = torch.tensor([[7, 2, 1], [7, 8, 9]])  # 2 = end token, then padding
    first, second = ocr_backends._sequence_confidences(log_probs, tokens, 2)
    assert first == pytest.approx(0.5)
    assert second == pytest.approx((0.8 * 0.2 * 0.5) ** (1 / 3))


def test_a_missing_trocr_model_names_itself_and_how_to_fetch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError) as missing:
        load_trocr("someone/no-such-trocr")
    assert "someone/no-such-trocr" in str(missing.value) and FETCH_COMMAND in str(missing.value)
    assert "empty-cache" in str(missing.value)
    folder = str(tmp_path / "not-there")
    with pytest.raises(ModelNotFoundError, match="not-there"):
        settings = {"backend": "trocr", "trocr_model": folder, "device": "cpu"}
        reader = OcrReader(OcrSettings.defaults(library=str(tmp_path), **settings))
        run_model_job(reader, Layout(tmp_path), JOB, [])
