"""File names that are not UTF-8 (old Samba and Windows shares): catalogued, analysed,
indexed, found by search and similar, exported, and named exactly in every output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from skimage import data

from imganalyzer.catalog.manifests import escape_path, read_manifest, unescape_path
from imganalyzer.example.writers import write_jpeg
from imganalyzer.results import read_rows

from .conftest import _env, make_workspace

pytestmark = pytest.mark.slow

LATIN1_NAME = b"caf\xe9.jpg"  # "café.jpg" written by a Windows-1252 machine
LATIN1_FOLDER = b"d\xfcr"  # "dür"


def _cli(ws, *args: str | bytes) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "imganalyzer.cli", *args, "--config", str(ws.config)]
    return subprocess.run(command, cwd=ws.root, capture_output=True, env=_env(), timeout=300)


def test_non_utf8_names_are_analysed_indexed_and_found(tmp_path: Path, tiny_models: dict) -> None:
    modules = ["metadata", "technical", "embedding"]
    ws = make_workspace(tmp_path, **{**tiny_models, "modules": modules})
    write_jpeg(ws.library / "plain.jpg", data.astronaut())
    write_jpeg(ws.library / "cat.jpg", data.chelsea())
    library = os.fsencode(ws.library)
    with open(os.path.join(library, LATIN1_NAME), "wb") as handle:
        handle.write((ws.library / "plain.jpg").read_bytes())  # the same picture
    os.mkdir(os.path.join(library, LATIN1_FOLDER))
    with open(os.path.join(library, LATIN1_FOLDER, b"tab\there.jpg"), "wb") as handle:
        handle.write((ws.library / "cat.jpg").read_bytes())
    hostile = os.fsdecode(LATIN1_NAME)
    in_folder = os.fsdecode(LATIN1_FOLDER + b"/tab\there.jpg")

    ws.snakemake()
    again = ws.snakemake()  # the index once failed on every later run
    assert "Nothing to be done" in again.stdout + again.stderr

    manifest = next((ws.results / "catalog/shards").glob("*.tsv"))
    manifest.read_bytes().decode("utf-8")  # stored as valid UTF-8 text ...
    assert {e.path for e in read_manifest(manifest)} >= {hostile, in_folder}  # ... exactly
    for module in modules:
        rows = {r["path"]: r for r in read_rows(next((ws.results / module).glob("*.jsonl")))}
        assert rows[hostile]["status"] == "ok", rows[hostile]
        assert rows[in_folder]["status"] == "ok", rows[in_folder]

    found = _cli(ws, "search", "café", "--mode", "text", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [unescape_path(h["path"]) for h in hits] == [hostile]

    listed = _cli(ws, "search", "", "--mode", "text", "--folder", os.fsdecode(LATIN1_FOLDER))
    assert listed.returncode == 0, listed.stderr
    assert escape_path(in_folder).encode() in listed.stdout

    # similar: the path as the shell passes it (raw bytes) and in its text form
    for spelling in (LATIN1_NAME, escape_path(hostile)):
        similar = _cli(ws, "similar", spelling, "--json")
        assert similar.returncode == 0, similar.stderr
        paths = [unescape_path(h["path"]) for h in json.loads(similar.stdout)]
        assert paths[0] == "plain.jpg" and hostile not in paths
    to_hostile = _cli(ws, "similar", "plain.jpg", "--json")
    assert unescape_path(json.loads(to_hostile.stdout)[0]["path"]) == hostile

    table = _cli(ws, "search", "", "--mode", "text")  # the text table: one line per image
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.decode("utf-8").splitlines()) == 1 + 4

    for fmt in ("parquet", "csv"):
        out = tmp_path / f"export-{fmt}"
        exported = _cli(ws, "export", str(out), "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        read = pd.read_parquet if fmt == "parquet" else pd.read_csv
        images = read(out / f"images.{fmt}")
        assert {unescape_path(p) for p in images["path"]} == {
            "plain.jpg", "cat.jpg", hostile, in_folder
        }  # fmt: skip
        keys = read(out / f"embedding_keys.{fmt}")
        assert hostile in {unescape_path(p) for p in keys["path"]}

    status = _cli(ws, "status")
    assert status.returncode == 0, status.stderr
