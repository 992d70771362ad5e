from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imganalyzer.cli.main import main
from imganalyzer.search.export import export_tables
from tests.support.results_library import Photo, ResultsLibrary, sample_photos, unit_vector

PHOTOS = {p.path: p for p in sample_photos()}


@pytest.fixture
def lib(tmp_path: Path) -> ResultsLibrary:
    lib = ResultsLibrary(tmp_path / "work")
    photos = sample_photos()
    lib.add_shard(photos[:3])
    lib.add_shard(photos[3:])
    # An edit (the old version is superseded) and a deletion: neither old row is exported.
    lib.add_shard([Photo("2022/home/cat.jpg", caption="a sleeping kitten", vector=unit_vector(9))])
    lib.delete("2021/paris/IMG_0002.jpg")
    return lib


CURRENT = sorted(set(PHOTOS) - {"2021/paris/IMG_0002.jpg"})


def test_parquet_tables_hold_the_current_images_only(lib: ResultsLibrary, tmp_path: Path) -> None:
    out = tmp_path / "export"
    written = export_tables(lib.layout, lib.library, out, "parquet")

    names = {p.name for p in written}
    assert {"metadata.parquet", "technical.parquet", "captions.parquet", "images.parquet"} <= names
    captions = pd.read_parquet(out / "captions.parquet")
    assert sorted(captions["path"]) == CURRENT
    assert captions.set_index("path").loc["2022/home/cat.jpg", "caption"] == "a sleeping kitten"
    images = pd.read_parquet(out / "images.parquet").set_index("path")
    assert sorted(images.index) == CURRENT
    assert images.loc["2021/paris/IMG_0001.jpg", "camera"] == "FUJIFILM X-T4"
    assert images.loc["2021/paris/IMG_0001.jpg", "aesthetic"] == 6.5
    assert images.loc["scans/old.jpg", "status"] == "error"
    assert str(images.loc["2022/home/receipt.jpg", "date"]) == "2022-03-01 12:00:00"


def test_embeddings_come_with_their_keys(lib: ResultsLibrary, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_tables(lib.layout, lib.library, out, "parquet")

    matrix = np.load(out / "embeddings.npy")
    keys = pd.read_parquet(out / "embedding_keys.parquet")
    assert matrix.dtype == np.float16 and matrix.shape == (len(keys), 8)
    assert sorted(keys["path"]) == sorted(p for p in CURRENT if p != "scans/old.jpg")
    row = keys.set_index("path").loc["2022/home/cat.jpg", "row"]
    np.testing.assert_array_equal(matrix[row], unit_vector(9))


def test_csv_export_writes_nested_values_as_json(lib: ResultsLibrary, tmp_path: Path) -> None:
    rows = lib.results / "technical" / "000001-00000.jsonl"
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    for line in lines:
        line["dominant_colors"] = [{"hex": "#ffffff", "fraction": 1.0}]
    rows.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "export"
    export_tables(lib.layout, lib.library, out, "csv", modules=["technical"])

    technical = pd.read_csv(out / "technical.csv").set_index("path")
    colors = technical.loc["2021/paris/IMG_0001.jpg", "dominant_colors"]
    assert json.loads(colors) == [{"hex": "#ffffff", "fraction": 1.0}]
    assert (out / "images.csv").is_file() and not (out / "captions.csv").exists()


def test_duckdb_reads_the_export(lib: ResultsLibrary, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "export"
    export_tables(lib.layout, lib.library, out, "parquet")
    query = (
        f"SELECT i.path, c.caption FROM '{out / 'images.parquet'}' i "
        f"JOIN '{out / 'captions.parquet'}' c USING (path) WHERE i.camera LIKE '%FUJIFILM%'"
    )
    assert duckdb.sql(query).fetchall() == [
        ("2021/paris/IMG_0001.jpg", "the eiffel tower at sunset")
    ]
    count = duckdb.sql(f"SELECT count(*) FROM '{out / 'images.parquet'}'").fetchall()[0][0]
    assert count == len(CURRENT)


def test_cli_export(lib: ResultsLibrary, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {lib.library}\nresults: {lib.results}\n")
    out = tmp_path / "export"
    assert main(["export", "--format", "csv", str(out), "--config", str(config)]) == 0
    assert str(out / "images.csv") in capsys.readouterr().out
    assert len(pd.read_csv(out / "metadata.csv")) == len(CURRENT)
