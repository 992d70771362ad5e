"""An existing results folder picks up the formats this decoder learned (JPEG XL, libheif's
"mini" HEIF): the next run catalogues the files an older decoder refused again, alone, and
only their decode, metadata and model jobs run; the rest of the library is not touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from skimage import data

from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.example.writers import ExifInfo, write_jpeg
from imganalyzer.formats import FORMATS_VERSION
from imganalyzer.layout import Layout
from imganalyzer.results import read_rows, write_rows
from imganalyzer.runtime.batched import NOT_DECODED
from imganalyzer.runtime.batches import RowFailure
from tests.support.format_files import mini_heif_writable, write_jxl, write_mini_heic

from .conftest import Workspace, make_workspace
from .test_workflow import output_mtimes

pytestmark = pytest.mark.slow

FIRST, SECOND = "000001-00000", "000002-00000"
# What the decoder of formats version 1 wrote for them (its reader rows had no version).
OLD_ROWS = {
    "clip.jxl": "JPEG XL: no JPEG XL decoder is installed",
    "phone/mini.heic": "not an image (cannot identify image file)",
}


def refused_by_version_1(ws: Workspace, modules: list[str]) -> None:
    """Rewrite the first shard's rows of the JPEG XL and mini HEIF files as the version-1
    decoder wrote them: reader rows ``unsupported_format`` without a formats version, the
    model rows passing that on. Each file keeps its mtime (Snakemake sees no change), and
    the catalog's formats record goes (version 1 kept none)."""
    for module in modules:
        path = ws.results / module / f"{FIRST}.jsonl"
        stat = path.stat()
        technical = {r["path"]: r for r in read_rows(ws.results / "technical" / path.name)}
        rows = []
        for row in read_rows(path):
            if row["path"] in OLD_ROWS:
                refused = {k: row[k] for k in ("path", "size", "mtime_ns")} | {
                    "status": "error",
                    "error": OLD_ROWS[row["path"]],
                    "error_kind": "unsupported_format",
                }
                if module not in ("technical", "metadata"):
                    failure = RowFailure.passed_on(technical[row["path"]], NOT_DECODED)
                    refused |= {"error": failure.reason, "error_kind": failure.kind}
                row = refused
            rows.append(row)
        write_rows(path, rows)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    Layout(ws.results).formats_checked.unlink()


@pytest.mark.skipif(not mini_heif_writable(), reason="this libheif cannot write mini HEIF")
def test_files_an_older_decoder_refused_are_analysed_alone(
    tmp_path: Path, tiny_models: dict
) -> None:
    ws = make_workspace(tmp_path, **tiny_models)
    write_jpeg(ws.library / "a.jpg", data.astronaut(), ExifInfo(make="Canon"))
    write_jpeg(ws.library / "b.jpg", data.coffee())
    write_jpeg(ws.library / "c.jpg", data.chelsea())
    write_jxl(ws.library / "clip.jxl", data.rocket(), ExifInfo(make="Ricoh", model="GR III"))
    (ws.library / "phone").mkdir()
    write_mini_heic(ws.library / "phone" / "mini.heic", data.astronaut()[:256, :256])
    ws.snakemake()
    modules = ["technical", "metadata", "embedding", "aesthetic"]
    refused_by_version_1(ws, modules)
    before = output_mtimes(ws, run_wide=False)
    report = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert report["modules"]["technical"]["errors"] == 2

    dry = ws.snakemake("-n")
    assert "2 in newly supported formats in 1 new shard(s)" in dry.stdout + dry.stderr
    assert not (ws.results / "catalog" / "shards" / f"{SECOND}.tsv").exists()

    ws.snakemake()
    manifest = read_manifest(ws.results / "catalog" / "shards" / f"{SECOND}.tsv")
    assert [e.path for e in manifest] == ["clip.jxl", "phone/mini.heic"]
    after = output_mtimes(ws, run_wide=False)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing else re-ran
    new = sorted(set(after) - set(before))
    assert all(SECOND in name for name in new)
    for module in modules:  # decode, metadata and every model job ran for the new shard
        assert f"{module}/{SECOND}.jsonl" in new
        rows = list(read_rows(ws.results / module / f"{SECOND}.jsonl"))
        assert [row["status"] for row in rows] == ["ok", "ok"], rows

    report = json.loads(ws.imganalyzer("status", "--json").stdout)
    assert report["current"] == 5 and report["superseded"] == 2
    assert all(counts["errors"] == 0 for counts in report["modules"].values())
    found = ws.imganalyzer("search", "Ricoh", "--mode", "text", "--json")
    assert [hit["path"] for hit in json.loads(found.stdout)] == ["clip.jxl"]

    again = ws.snakemake()  # nothing left to retry: recorded, nothing to do
    assert "Nothing to be done" in again.stdout + again.stderr
    assert Layout(ws.results).formats_checked.read_text().strip() == str(FORMATS_VERSION)
