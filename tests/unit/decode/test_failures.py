"""One error kind per file: the metadata job, the decode job, duplicates and OCR give a bad
file the same ``error_kind`` (and the readers classify through one function)."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image
from skimage import data

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode.failures import FileError, classify
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.example.writers import write_heic
from imganalyzer.layout import Layout
from imganalyzer.modules.ocr import OcrReader, OcrSettings
from imganalyzer.results import ERROR_KINDS, ok_row, read_rows, write_rows
from imganalyzer.runtime.job import run_model_job
from imganalyzer.steps.duplicates_hashes import shard_hashes
from tests.support.exif_samples import X_T4
from tests.support.format_files import write_jxl

SHARD = "000001-00000"
JOB = "000001-00000-00000"


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bad_files(folder: Path) -> dict[str, tuple[str, bool]]:
    """Real damaged files -> (their error kind, whether their metadata is still readable:
    a header-only reader has what it needs where only the pixel data is damaged)."""
    photo = data.astronaut()[:200, :300]
    heic = write_heic(folder / "source.heic", photo[:96, :128]).read_bytes()
    os.remove(folder / "source.heic")
    jxl = write_jxl(folder / "source.jxl", photo, X_T4).read_bytes()
    bare_jxl = write_jxl(folder / "source.jxl", photo).read_bytes()
    os.remove(folder / "source.jxl")
    garbage = np.random.default_rng(0).integers(0, 256, len(jxl), np.uint8).tobytes()
    jpeg = _jpeg(photo)
    tifffile.imwrite(folder / "deep.tif", (photo.astype(np.uint16) * 257), photometric="rgb")
    deep_tiff = (folder / "deep.tif").read_bytes()
    os.remove(folder / "deep.tif")
    files = {
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated", True),
        "notes.jpg": (b"shopping list: milk, eggs\n", "unsupported_format", False),
        "empty.jpg": (b"", "empty", False),
        "cut_pixels.heic": (heic[: len(heic) - 200], "truncated", True),
        "cut_header.heic": (heic[:200], "truncated", False),
        "garbage.jxl": (bare_jxl[:20] + garbage[20:], "corrupt", True),  # its header intact
        "cut_header.jxl": (jxl[:100], "truncated", False),  # cut in its Exif box
        "noise.jpg": (b"\xff\xd8\xff\xe0" + garbage[:5000], "truncated", False),  # lengths too long
        "zeros.jpg": (b"\xff\xd8\xff" + bytes(5000), "corrupt", False),  # no JPEG marker
        "scan_garbage.jpg": (jpeg[:3000] + garbage[:3000] + jpeg[-2:], "corrupt", True),
        "cut_deep.tif": (deep_tiff[: len(deep_tiff) // 2], "truncated", True),  # via tifffile
    }
    for name, (content, _, _) in files.items():
        (folder / name).write_bytes(content)
    return {name: (kind, readable) for name, (_, kind, readable) in files.items()}


def _rows(path: Path) -> dict[str, dict]:
    return {row["path"]: row for row in read_rows(path)}


def test_every_module_gives_a_bad_file_one_error_kind(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    expected = bad_files(library)
    layout = Layout(tmp_path / "results")
    entries = []
    for name in sorted(expected):
        status = os.stat(library / name)
        entries.append(Entry(name, status.st_size, status.st_mtime_ns))
    manifest = layout.manifest(SHARD)
    manifest.parent.mkdir(parents=True)
    write_manifest(manifest, entries)
    metadata, technical = tmp_path / "metadata.jsonl", layout.technical(SHARD)
    technical.parent.mkdir(parents=True)
    run_metadata_shard(manifest, library, metadata)
    run_decode_shard(
        manifest, library, layout.tiers(SHARD), technical, tmp_path / "thumbnails.zip",
        tiers={"clip": 96},
    )  # fmt: skip
    duplicates = tmp_path / "duplicates.jsonl"
    shard_hashes(layout.tiers(SHARD), manifest, duplicates, tier="clip", technical=technical)
    # OCR reads the originals itself: objects rows that saw text make it open every file.
    objects = [ok_row(entry, {"has_text": True}) for entry in entries]
    layout.rows("objects", SHARD).parent.mkdir(parents=True)
    write_rows(layout.rows("objects", SHARD), objects)
    reader = OcrReader(OcrSettings.defaults(library=str(library), device="cpu"))
    run_model_job(reader, layout, JOB, [SHARD])

    modules = {
        "metadata": _rows(metadata),
        "technical": _rows(technical),
        "duplicates": _rows(duplicates),
        "ocr": _rows(layout.rows("ocr", SHARD)),
    }
    for name, (kind, metadata_readable) in expected.items():
        kinds = {module: rows[name].get("error_kind") for module, rows in modules.items()}
        if metadata_readable:
            assert modules["metadata"][name]["status"] == "ok", name
            del kinds["metadata"]
        assert set(kinds.values()) == {kind}, (name, kinds)
        reasons = {module: rows[name].get("error") for module, rows in modules.items()}
        assert reasons["duplicates"] == reasons["technical"], name  # passed on as it is
        assert all("\n" not in str(reason) for reason in reasons.values())


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file"), "vanished"),
        (PermissionError(errno.EACCES, "Permission denied"), "unreadable"),
        (OSError(errno.EIO, "Input/output error"), "unreadable"),
        (OSError(errno.EINVAL, "Invalid argument"), "corrupt"),  # a seek to a damaged offset
        (OSError("broken data stream when reading image file"), "corrupt"),
        (OSError("image file is truncated (12 bytes not processed)"), "truncated"),
        (EOFError(), "truncated"),
        (SyntaxError("not a JPEG file"), "corrupt"),
        (Image.UnidentifiedImageError("cannot identify image file"), "unsupported_format"),
        (rawpy.LibRawFileUnsupportedError(b"Unsupported file format"), "unsupported_format"),
        (rawpy.LibRawIOError(b"Input/output error"), "truncated"),
        (ValueError("Unsupported codec: No decoding plugin installed"), "unsupported_codec"),
        (FileError("image has 9 pixels, over the max_pixels limit", "too_large"), "too_large"),
    ],
)
def test_classify_names_the_kind_of_each_failure(tmp_path: Path, error, kind: str) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg(data.astronaut()[:64, :64]))
    reason, found = classify(error, path)
    assert found == kind and found in ERROR_KINDS
    assert reason and "\n" not in reason


def test_a_cut_box_file_is_truncated_whatever_its_reader_said(tmp_path: Path) -> None:
    heic = write_heic(tmp_path / "photo.heic", data.astronaut()[:64, :64]).read_bytes()
    (tmp_path / "cut.heic").write_bytes(heic[:-50])
    reason, kind = classify(ValueError("Invalid input: No 'meta' box"), tmp_path / "cut.heic")
    assert kind == "truncated" and reason.startswith("truncated HEIF file")
    reason, kind = classify(ValueError("Invalid input: No 'meta' box"), tmp_path / "photo.heic")
    assert kind == "corrupt" and reason == "corrupt HEIF file: Invalid input: No 'meta' box"
