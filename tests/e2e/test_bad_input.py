"""Awkward and broken files: every bad one is an error row, every good one is analysed,
no job fails, and the library is never written to."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from imganalyzer.catalog.store import Catalog
from imganalyzer.example.writers import write_dng, write_heic, write_jpeg, write_png
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows

from .conftest import make_workspace

pytestmark = pytest.mark.slow

MAX_PIXELS = 1_000_000  # small, so that a cheap 2 MP PNG plays the decompression bomb


def build_corpus(library: Path) -> tuple[set[str], set[str]]:
    """Returns (paths that must analyse, paths that must be error rows)."""
    photo = data.astronaut()
    for folder in ("ok", "bad"):
        (library / folder).mkdir(parents=True, exist_ok=True)
    write_jpeg(library / "ok/ünïcödé name with spaces.jpg", photo)
    write_jpeg(library / "ok/one_pixel.jpg", photo[:1, :1])
    write_png(library / "ok/panorama.png", np.tile(photo[:10, :1], (1, 30_000, 1)))
    Image.fromarray(photo).convert("CMYK").save(library / "ok/cmyk.jpg", quality=90)
    write_png(
        library / "ok/deep16.png", (np.arange(256 * 64, dtype=np.uint16) * 4).reshape(64, 256)
    )
    Image.fromarray(photo).quantize(64).save(library / "ok/palette.png")
    Image.new("L", (2000, 1000), 128).save(library / "bad/bomb.png")
    good = write_jpeg(library / "bad/truncated.jpg", photo).read_bytes()
    (library / "bad/truncated.jpg").write_bytes(good[: len(good) // 3])
    for name, writer in (("truncated.heic", write_heic), ("truncated.dng", write_dng)):
        whole = writer(library / "bad" / name, photo[:128, :128]).read_bytes()
        (library / "bad" / name).write_bytes(whole[: len(whole) // 2])
    (library / "bad/zero.jpg").write_bytes(b"")
    (library / "bad/random.nef").write_bytes(np.random.default_rng(1).bytes(5000))
    (library / "bad/random.heic").write_bytes(np.random.default_rng(2).bytes(5000))
    (library / "bad/vanishes.jpg").write_bytes(good)
    # links: a loop and one leaving the library are skipped by the scan
    (library / "ok/loop").symlink_to(library)
    outside = library.parent / "outside.jpg"
    outside.write_bytes(good)
    (library / "ok/outside.jpg").symlink_to(outside)
    analysed = {
        "ok/ünïcödé name with spaces.jpg",
        "ok/one_pixel.jpg",
        "ok/panorama.png",
        "ok/cmyk.jpg",
        "ok/deep16.png",
        "ok/palette.png",
    }
    errors = {
        "bad/bomb.png",
        "bad/truncated.jpg",
        "bad/truncated.heic",
        "bad/truncated.dng",
        "bad/zero.jpg",
        "bad/random.nef",
        "bad/random.heic",
        "bad/vanishes.jpg",
    }
    return analysed, errors


def library_digest(library: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(library)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(library.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_bad_files_become_error_rows_and_the_library_is_untouched(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, max_pixels=MAX_PIXELS)
    analysed, errors = build_corpus(ws.library)
    unreadable = ws.library / "bad/unreadable.jpg"
    unreadable.write_bytes(b"\xff\xd8 not really a photo")
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):  # root reads anything: test_decode simulates it
        unreadable.unlink()
    else:
        errors.add("bad/unreadable.jpg")
    before = library_digest(ws.library)
    # catalogued as a run's start catalogues them (a dry-run no longer writes the catalog)
    Catalog(Layout(ws.results)).ingest(ws.library, 100, exclude=[ws.results])
    os.unlink(ws.library / "bad/vanishes.jpg")  # deleted between scan and decode
    before.pop("bad/vanishes.jpg")
    ws.snakemake()

    technical = {r["path"]: r for r in read_rows(next((ws.results / "technical").glob("*.jsonl")))}
    assert set(technical) == analysed | errors
    assert {p for p, r in technical.items() if r["status"] == "ok"} == analysed
    reasons = {p: technical[p]["error"] for p in errors}
    assert "max_pixels" in reasons["bad/bomb.png"]
    assert "empty" in reasons["bad/zero.jpg"]
    assert "not found" in reasons["bad/vanishes.jpg"]
    assert all("\n" not in reason and reason for reason in reasons.values())
    assert technical["ok/panorama.png"]["width"] == 30_000
    assert technical["ok/cmyk.jpg"]["exposure_mean"] > 0.2

    metadata = {r["path"]: r for r in read_rows(next((ws.results / "metadata").glob("*.jsonl")))}
    assert all(metadata[p]["status"] == "ok" for p in analysed)
    assert library_digest(ws.library) == before
