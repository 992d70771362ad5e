"""Manifests: escaped paths (tabs, newlines, names that are not UTF-8), reading them back,
grouping shards into model jobs, counting rows without parsing."""

from __future__ import annotations

import os
from pathlib import Path

from imganalyzer.catalog.manifests import (
    Entry,
    escape_path,
    group_shards,
    read_manifest,
    unescape_path,
    write_manifest,
)


def test_paths_with_tabs_newlines_and_backslashes_round_trip(tmp_path: Path) -> None:
    names = ["tab\there.jpg", "new\nline.jpg", "back\\slash.jpg", "ünï cödé.jpg", "\\t.jpg"]
    for name in names:
        assert unescape_path(escape_path(name)) == name
    entries = [Entry(n, i, i * 10) for i, n in enumerate(names)]
    write_manifest(tmp_path / "m.tsv", entries)
    assert read_manifest(tmp_path / "m.tsv") == entries


def test_names_that_are_not_utf8_have_a_lossless_utf8_text_form(tmp_path: Path) -> None:
    raw = [b"caf\xe9.jpg", b"d\xfcr/\xff\xfe\\x.jpg", b"\\xe9 literal.jpg", b"\xed\xa0\x80.jpg"]
    names = [os.fsdecode(name) for name in raw] + ["lone \ud800 surrogate.jpg"]
    for name in names:
        text = escape_path(name)
        text.encode("utf-8")  # valid UTF-8
        assert unescape_path(text) == name
    assert escape_path(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert len({escape_path(n) for n in names}) == len(names)
    entries = [Entry(n, i, i) for i, n in enumerate(names)]
    write_manifest(tmp_path / "m.tsv", entries)
    (tmp_path / "m.tsv").read_bytes().decode("utf-8")
    assert read_manifest(tmp_path / "m.tsv") == entries


def test_manifests_written_with_raw_bytes_still_read(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_bytes(b"path\tsize\tmtime_ns\ncaf\xe9.jpg\t1\t2\n")
    assert read_manifest(tmp_path / "m.tsv") == [Entry(os.fsdecode(b"caf\xe9.jpg"), 1, 2)]


def test_model_jobs_group_shards_within_each_ingest_batch() -> None:
    shards = [f"000001-{i:05d}" for i in range(5)] + ["000002-00000", "000003-00000"]
    assert group_shards(shards, per_job=2) == {
        "000001-00000-00001": ["000001-00000", "000001-00001"],
        "000001-00002-00003": ["000001-00002", "000001-00003"],
        "000001-00004-00004": ["000001-00004"],
        "000002-00000-00000": ["000002-00000"],
        "000003-00000-00000": ["000003-00000"],
    }
    # a new batch leaves the jobs of earlier batches as they were
    before = group_shards(shards, per_job=2)
    after = group_shards([*shards, "000004-00000"], per_job=2)
    assert {k: v for k, v in after.items() if k in before} == before


def test_manifest_rows_counts_entries_unparsed_or_says_there_are_enough(tmp_path: Path) -> None:
    from imganalyzer.catalog.manifests import manifest_rows

    path = tmp_path / "shard.tsv"
    write_manifest(path, [Entry(f"a/{i}.jpg", i, i) for i in range(7)])
    assert manifest_rows(path, at_least=200) == 7
    assert manifest_rows(path, at_least=0) is None  # surely more than 0: not read
    assert manifest_rows(tmp_path / "missing.tsv", at_least=200) is None
