"""The real workflow (Snakemake CLI, default profile) on a tiny generated library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.decode.thumbnails import read_thumbnail
from imganalyzer.decode.tiers import TierReader
from imganalyzer.example.writers import write_jpeg
from imganalyzer.results import read_rows

from .conftest import TEST_TIERS, Workspace

pytestmark = pytest.mark.slow

FIRST = "000001-00000"
BAD = {"bad/truncated.jpg", "bad/empty.jpg", "bad/notes.jpg"}


def rows_by_path(ws: Workspace, module: str, shard: str = FIRST) -> dict[str, dict]:
    return {row["path"]: row for row in read_rows(ws.results / module / f"{shard}.jsonl")}


def output_mtimes(ws: Workspace, run_wide: bool = True) -> dict[str, int]:
    """Outputs and their mtimes; ``run_wide=False`` leaves out the report, the index and the
    run's library view, which every run that changes anything updates."""
    run_wide_outputs = {"report", "index", "run"}
    skipped = {".snakemake", "logs", "catalog"} | (set() if run_wide else run_wide_outputs)
    return {
        str(p.relative_to(ws.results)): p.stat().st_mtime_ns
        for p in ws.results.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")  # the run lock: a hidden file, not an output
        and not skipped & set(p.relative_to(ws.results).parts)
    }


def status(ws: Workspace) -> dict:
    return json.loads(ws.imganalyzer("status", "--json").stdout)


def test_first_run_analyses_every_good_file_and_reports_bad_ones(workspace: Workspace) -> None:
    ws = workspace
    ws.snakemake()
    entries = read_manifest(ws.results / "catalog/shards" / f"{FIRST}.tsv")
    assert len(entries) == len(ws.files)

    technical = rows_by_path(ws, "technical")
    metadata = rows_by_path(ws, "metadata")
    # a JPEG cut inside its pixel data still has a whole header: only decode can tell
    header_bad = BAD - {"bad/truncated.jpg"}
    for rows, bad in ((technical, BAD), (metadata, header_bad)):
        assert {p for p, r in rows.items() if r["status"] == "error"} == bad
        assert all(r["error"] for p, r in rows.items() if p in bad)
    assert "empty" in technical["bad/empty.jpg"]["error"]

    # metadata equals what was written
    paris = metadata["2023/trip/paris.jpg"]
    assert (paris["make"], paris["model"], paris["iso"]) == ("FUJIFILM", "X-T4", 400)
    assert paris["f_number"] == pytest.approx(5.6)
    assert paris["datetime_original"] == "2023-07-14T18:03:22+02:00"
    assert paris["gps_latitude"] == pytest.approx(48.8583, abs=1e-4)
    assert paris["gps_longitude"] == pytest.approx(-2.2945, abs=1e-4)
    assert (paris["width"], paris["height"]) == (1200, 800)
    cat = metadata["2023/trip/cat portrait.jpg"]
    assert (cat["orientation"], cat["width"], cat["height"]) == (6, 300, 451)

    # technical: a blurred copy is less sharp; displayed sizes recorded
    assert technical["2023/trip/paris_blurred.jpg"]["sharpness"] < (
        technical["2023/trip/paris.jpg"]["sharpness"] / 2
    )
    assert (technical["2023/trip/cat portrait.jpg"]["width"],) == (300,)
    assert technical["raw/with_preview.dng"]["decoder"] == "raw-preview"
    assert technical["raw/no_preview.DNG"]["decoder"] == "raw-half-size"

    # tiers: right size and orientation for every good file
    reader = TierReader(ws.results / "tiers" / f"{FIRST}.zarr")
    assert reader.n_images == len(entries)
    for index, entry in enumerate(entries):
        for tier, long_edge in TEST_TIERS.items():
            _, sizes, ok = reader.read(tier, index, index + 1)
            assert bool(ok[0]) == (entry.path not in BAD), entry.path
            if entry.path not in BAD:
                row = technical[entry.path]
                decoded = max(row["width"], row["height"])
                if row["decoder"] == "raw-half-size":
                    decoded //= 2
                assert max(sizes[0]) == min(long_edge, decoded), (entry.path, tier, sizes[0])
        thumbnail = read_thumbnail(ws.results / "thumbnails" / f"{FIRST}.zip", index)
        assert (thumbnail is None) == (entry.path in BAD)

    cat_index = [e.path for e in entries].index("2023/trip/cat portrait.jpg")
    cat_tier = reader.image("detect", cat_index)
    assert cat_tier.shape[0] > cat_tier.shape[1]  # portrait, as displayed
    expected = np.asarray(
        Image.fromarray(np.rot90(data.chelsea(), k=-1)).resize(
            (cat_tier.shape[1], cat_tier.shape[0]), Image.Resampling.LANCZOS
        )
    )
    assert np.abs(cat_tier.astype(int) - expected).mean() < 12

    # embeddings: one unit vector per decoded row, in manifest order; zeros for failures
    vectors = np.load(ws.results / "embedding" / f"{FIRST}.npy")
    assert vectors.dtype == np.float16 and len(vectors) == len(entries)
    norms = np.linalg.norm(vectors.astype(np.float32), axis=1)
    for entry, norm in zip(entries, norms, strict=True):
        assert norm == pytest.approx(0.0 if entry.path in BAD else 1.0, abs=1e-2), entry.path
    embedding_rows = [r["path"] for r in read_rows(ws.results / "embedding" / f"{FIRST}.jsonl")]
    assert embedding_rows == [e.path for e in entries]
    aesthetic = rows_by_path(ws, "aesthetic")
    assert {p for p, r in aesthetic.items() if r["status"] == "ok"} == {
        e.path for e in entries if e.path not in BAD
    }
    assert all(isinstance(r["aesthetic"], float) for r in aesthetic.values() if r["status"] == "ok")

    modules = {m["module"]: m for m in json.loads((ws.results / "report/modules.json").read_text())}
    assert modules["decode"]["images"] == len(entries) and modules["embedding"]["jobs"] == 1
    ws.snakemake("--report", str(ws.root / "report.html"))
    assert "module_times.svg" in (ws.root / "report.html").read_text()

    # the index, the run's last rule: EXIF words, filters, and CLIP similarity
    found = json.loads(ws.imganalyzer("search", "FUJIFILM", "--mode", "text", "--json").stdout)
    # the truncated copy's header (and so its EXIF) is whole: only its decode failed
    assert {h["path"] for h in found} == {
        "2023/trip/paris.jpg",
        "2023/trip/paris_blurred.jpg",
        "bad/truncated.jpg",
    }
    sharp = ws.imganalyzer(
        "search", "FUJIFILM", "--mode", "text", "--min-sharpness", "500", "--json"
    ).stdout
    assert [h["path"] for h in json.loads(sharp)] == ["2023/trip/paris.jpg"]
    # the DNG and the blurred copy hold the same photo as paris.jpg: their vectors are the
    # nearest (itself excluded). Their order is the exact cosine's, whose two values lie
    # 1.5e-4 apart with the tiny random-weight tower (float16 scores tied them).
    similar = json.loads(ws.imganalyzer("similar", "2023/trip/paris.jpg", "--json").stdout)
    assert {h["path"] for h in similar[:2]} == {
        "raw/with_preview.dng",
        "2023/trip/paris_blurred.jpg",
    }
    hybrid = json.loads(ws.imganalyzer("search", "a cat", "--json").stdout)
    assert hybrid and all(h["path"] not in BAD for h in hybrid)

    report = status(ws)
    assert report["current"] == len(entries)
    assert report["modules"]["technical"] == {"done": 8, "errors": 3, "pending": 0}
    assert {e["path"] for e in report["errors"]} == BAD


def test_reruns_process_only_new_and_changed_files(workspace: Workspace) -> None:
    ws = workspace
    ws.snakemake()
    before = output_mtimes(ws)

    second = ws.snakemake()
    assert "Nothing to be done" in second.stdout + second.stderr
    assert "imganalyzer: 0 new or changed" in second.stdout + second.stderr  # its summary
    assert output_mtimes(ws) == before
    dry = ws.snakemake("-n")
    assert "Nothing to be done" in dry.stderr + dry.stdout
    assert "imganalyzer:" not in dry.stderr + dry.stdout  # a dry-run is no run

    # two new photos: one new shard, and only its jobs run
    write_jpeg(ws.library / "2024/new1.jpg", data.astronaut())
    write_jpeg(ws.library / "2024/new2.jpg", data.coffee())
    ws.snakemake()
    shards = sorted(p.stem for p in (ws.results / "catalog/shards").glob("*.tsv"))
    assert shards == [FIRST, "000002-00000"]
    after = output_mtimes(ws, run_wide=False)
    old_outputs = {k: v for k, v in before.items() if k in after}
    assert {k: v for k, v in after.items() if k in old_outputs} == old_outputs
    new_outputs = sorted(set(after) - set(before))
    assert all("000002-00000" in k for k in new_outputs) and len(new_outputs) >= 4
    assert set(rows_by_path(ws, "metadata", "000002-00000")) == {"2024/new1.jpg", "2024/new2.jpg"}

    # an edited photo: a new small shard; the old entry shows as superseded
    edited = ws.library / "2023/trip/paris.jpg"
    write_jpeg(edited, data.rocket())
    os.utime(edited, ns=(1_800_000_000_000_000_000,) * 2)
    ws.snakemake()
    assert [e.path for e in read_manifest(ws.results / "catalog/shards/000003-00000.tsv")] == [
        "2023/trip/paris.jpg"
    ]
    report = status(ws)
    assert report["superseded"] == 1 and report["removed"] == 0
    assert report["current"] == len(ws.files) + 2
    assert report["modules"]["metadata"] == {"done": 11, "errors": 2, "pending": 0}

    # a deleted photo: removed, no longer current
    shutil.rmtree(ws.library / "raw")
    report = status(ws)
    assert report["removed"] == 2
    assert report["current"] == len(ws.files) + 2 - 2
    leica = ("search", "Leica", "--mode", "text", "--json")
    assert len(json.loads(ws.imganalyzer(*leica).stdout)) == 2  # still indexed
    third = ws.snakemake()  # no new shard: only the index notices the deletion
    assert "rule decode" not in third.stdout + third.stderr
    assert json.loads(ws.imganalyzer(*leica).stdout) == []
    fourth = ws.snakemake()
    assert "Nothing to be done" in fourth.stdout + fourth.stderr


def test_bad_config_fails_at_start_naming_the_key(workspace: Workspace) -> None:
    result = workspace.snakemake("--config", "shard_size=0", check=False)
    assert result.returncode != 0
    assert "shard_size" in result.stdout + result.stderr
    # A bound the cloud module used to check itself (from 16, in its own code): the schema's
    nested = workspace.snakemake("--config", "cloud={max_long_edge: 32}", check=False)
    assert nested.returncode != 0
    expected = "config key 'cloud.max_long_edge': 32 is less than the minimum of 64"
    assert expected in nested.stdout + nested.stderr
    # A command validates the same way: one line naming the key, no traceback
    bad = workspace.root / "bad.yaml"
    bad.write_text(workspace.config.read_text() + "\ncloud:\n  concurrency: 100000\n")
    command = [sys.executable, "-m", "imganalyzer.cli", "status", "--config", str(bad)]
    cli = subprocess.run(command, cwd=workspace.root, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.strip().splitlines() == [
        "imganalyzer: config key 'cloud.concurrency': 100000 is greater than the maximum of 256"
    ]
