"""Duplicates on a generated library run through the real catalog, decode and hash steps:
resized, re-compressed, slightly cropped and shifted copies of one photo, a byte-identical
copy, a RAW with its JPEG export, and other photos that must not match."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.fftpack import dct
from skimage import data

import imganalyzer.steps.duplicates as duplicates
import imganalyzer.steps.duplicates_exact as duplicates_exact
import imganalyzer.steps.duplicates_groups as duplicates_groups
import imganalyzer.steps.duplicates_hashes as duplicates_hashes
from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.cli.duplicates import add_duplicates_parser
from imganalyzer.decode.jobs import run_decode_shard, run_metadata_shard
from imganalyzer.example.writers import write_dng, write_jpeg
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.steps.duplicates import DuplicateSettings, find_duplicates, write_duplicates
from imganalyzer.steps.duplicates_clip import cosine_pairs
from imganalyzer.steps.duplicates_hashes import (
    band_layout,
    dhash,
    hash_pairs,
    hash_pairs_brute_force,
    phash,
)
from tests.unit.conftest import TEST_TIERS

SETTINGS = DuplicateSettings.defaults(device="cpu")  # near_threshold 0.95, hash_distance 8
BASE = "photos/astronaut.jpg"
COPIES = {  # near copies of BASE
    "photos/astronaut_half.jpg",
    "photos/astronaut_q60.jpg",
    "photos/astronaut_crop.jpg",
    "photos/astronaut_burst.jpg",
    "backup/astronaut.jpg",  # byte-identical
}
DIFFERENT = ["other/coffee.jpg", "other/rocket.jpg", "other/camera.jpg", "other/brick.jpg"]
RAW, RAW_EXPORT = "raw/chelsea.dng", "raw/chelsea_export.jpg"
SAME_SIZE = "other/moon_padded.jpg"  # a photo padded to BASE's size: same size, other bytes
CORRUPT = "other/broken.jpg"


def grey(image: np.ndarray) -> np.ndarray:
    return np.stack([image] * 3, axis=-1)


def build_library(library: Path) -> None:
    base = data.astronaut()
    write_jpeg(library / BASE, base)
    (library / "backup").mkdir()
    shutil.copy2(library / BASE, library / "backup/astronaut.jpg")
    half = Image.fromarray(base).resize((256, 256), Image.Resampling.LANCZOS)
    write_jpeg(library / "photos/astronaut_half.jpg", np.asarray(half))
    write_jpeg(library / "photos/astronaut_q60.jpg", base, quality=60)
    write_jpeg(library / "photos/astronaut_crop.jpg", base[:, : int(base.shape[1] * 0.97)])
    write_jpeg(library / "photos/astronaut_burst.jpg", np.roll(base, (4, 6), axis=(0, 1)))
    others = [data.coffee(), data.rocket(), grey(data.camera()), grey(data.brick())]
    for name, rgb in zip(DIFFERENT, others, strict=True):
        write_jpeg(library / name, rgb)
    padded = write_jpeg(library / SAME_SIZE, grey(data.moon()), quality=50).read_bytes()
    target = (library / BASE).stat().st_size
    assert len(padded) < target
    (library / SAME_SIZE).write_bytes(padded + b"\0" * (target - len(padded)))
    chelsea = data.chelsea()
    write_dng(library / RAW, chelsea)
    bigger = Image.fromarray(chelsea).resize((564, 376), Image.Resampling.LANCZOS)
    write_jpeg(library / RAW_EXPORT, np.asarray(bigger))  # more pixels than the RAW
    (library / CORRUPT).write_bytes(b"not a jpeg at all")


def analyse(library: Path, results: Path) -> list[str]:
    """Catalog, decode, metadata and hashes of every shard, as the workflow runs them."""
    catalog = Catalog(Layout(results))
    shards = catalog.ingest(library, shard_size=6, exclude=[results]).new_shards
    for shard in shards:
        manifest = catalog.manifest_path(shard)
        tiers, technical = (
            results / "tiers" / f"{shard}.zarr",
            results / "technical" / f"{shard}.jsonl",
        )
        run_decode_shard(
            manifest, library, tiers, technical, results / "thumbnails" / f"{shard}.zip",
            tiers=TEST_TIERS,
        )  # fmt: skip
        run_metadata_shard(manifest, library, results / "metadata" / f"{shard}.jsonl")
        out = results / "duplicates" / f"{shard}.jsonl"
        duplicates_hashes.shard_hashes(tiers, manifest, out, tier="clip", technical=technical)
    return shards


@dataclass
class Analysed:
    library: Path
    results: Path
    shards: list[str]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    root = tmp_path_factory.mktemp("dups")
    library, results = root / "library", root / "results"
    build_library(library)
    return Analysed(library, results, analyse(library, results))


@pytest.fixture
def fresh(analysed: Analysed, tmp_path: Path) -> Analysed:
    """A copy of the results (so a test may add files to it) over the same library."""
    results = tmp_path / "results"
    shutil.copytree(analysed.results, results)
    return Analysed(analysed.library, results, analysed.shards)


# --- Hashes ---------------------------------------------------------------------------------------
def test_phash_and_dhash_match_an_independent_computation() -> None:
    rgb = data.coffee()
    pixels = np.asarray(Image.fromarray(rgb).convert("L").resize((32, 32), Image.LANCZOS), float)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    expected = "".join("1" if b else "0" for b in (low > np.median(low)).ravel())
    assert f"{phash(rgb):064b}" == expected
    small = np.asarray(Image.fromarray(rgb).convert("L").resize((9, 8), Image.LANCZOS), float)
    expected = "".join("1" if b else "0" for b in (small[:, 1:] > small[:, :-1]).ravel())
    assert f"{dhash(rgb):064b}" == expected


def test_shard_rows_hold_hashes_of_the_tier_and_decode_errors(analysed: Analysed) -> None:
    rows = {}
    for shard in analysed.shards:
        for row in read_rows(analysed.results / "duplicates" / f"{shard}.jsonl"):
            rows[row["path"]] = row
    assert set(rows) == {
        str(p.relative_to(analysed.library)) for p in analysed.library.rglob("*.*")
    }
    assert rows[CORRUPT]["status"] == "error" and "not an image" in rows[CORRUPT]["error"]
    technical = {
        row["path"]: row
        for shard in analysed.shards
        for row in read_rows(analysed.results / "technical" / f"{shard}.jsonl")
    }
    assert rows[CORRUPT]["error_kind"] == technical[CORRUPT]["error_kind"] == "unsupported_format"
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all(len(r["phash"]) == 16 and r["tier"] == "clip" for r in ok)
    # Byte-identical files have the same tier, so the same hashes.
    assert rows[BASE]["phash"] == rows["backup/astronaut.jpg"]["phash"]


def planted_hashes(n: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Random 64-bit hashes where every tenth is a copy of another with 1-8 bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    hashes |= rng.integers(0, 2, size=n).astype(np.uint64)
    planted = set()
    for i in range(0, n - 1, 10):
        flips = rng.choice(64, size=rng.integers(1, 9), replace=False)
        hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(b) for b in flips))
        planted.add((i, i + 1))
    return hashes, planted


@pytest.mark.parametrize("max_distance", [0, 3, 8, 12])
def test_banded_hash_index_finds_exactly_the_brute_force_pairs(max_distance: int) -> None:
    hashes, planted = planted_hashes(12_000, seed=max_distance)
    banded = hash_pairs(hashes, max_distance)
    assert np.array_equal(banded, hash_pairs_brute_force(hashes, max_distance))
    distances = {(i, j): bin(int(hashes[i]) ^ int(hashes[j])).count("1") for i, j in planted}
    expected = {pair for pair, d in distances.items() if d <= max_distance}
    assert expected <= set(map(tuple, banded.tolist()))
    if max_distance == 8:
        assert expected == set(planted)


def test_band_layout_covers_the_64_bits() -> None:
    for n, distance in [(500_000, 8), (10_000, 4), (10**6, 16), (5_000, 0)]:
        bands = band_layout(n, distance)
        assert sum(width for _, width in bands) == 64
        assert all(width <= duplicates_hashes.MAX_BAND_BITS for _, width in bands)
        assert [shift for shift, _ in bands] == list(np.cumsum([0] + [w for _, w in bands[:-1]]))


def test_cosine_pairs_equal_the_full_matrix_and_cap_neighbours() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((700, 24)).astype(np.float32)
    vectors[1::7] = vectors[::7][: len(vectors[1::7])] + 0.1 * rng.standard_normal((100, 24))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16)
    full = vectors.astype(np.float32) @ vectors.astype(np.float32).T
    expected = {(i, j) for i, j in zip(*np.nonzero(full >= 0.95), strict=True) if i < j}
    found = cosine_pairs(vectors, 0.95, block=64)
    assert set(map(tuple, found.tolist())) == expected and len(expected) >= 90
    same = np.repeat(vectors[:1], 10, axis=0)  # ten identical vectors: 45 pairs
    capped = cosine_pairs(same, 0.95, top_k=2, block=4)
    assert len(capped) <= 2 * 10
    union = duplicates_groups.UnionFind(10)
    for i, j in capped:
        union.union(int(i), int(j))
    assert union.components(range(10)) == [list(range(10))]  # still one group


# --- Groups ---------------------------------------------------------------------------------------
def groups_of(report, kind: str) -> list[set[str]]:
    return [{m.path for m in g.members} for g in report.groups if g.kind == kind]


def groups_of_one(group) -> set[str]:
    return {m.path for m in group.members}


def pixels(member) -> int:
    return member.width * member.height


def test_near_copies_group_and_different_photos_do_not(analysed: Analysed) -> None:
    report = find_duplicates(Layout(analysed.results), analysed.library, SETTINGS, use_clip=False)
    near = groups_of(report, "near")
    assert {BASE} | COPIES in near
    assert {RAW, RAW_EXPORT} in near
    assert len(near) == 2  # no photo of DIFFERENT joined anything
    group = next(g for g in report.groups if g.kind == "near" and BASE in groups_of_one(g))
    keeper = next(m for m in group.members if m.path == group.keeper)
    assert pixels(keeper) == max(pixels(m) for m in group.members)
    by_path = {m.path: m for m in group.members}
    assert by_path["photos/astronaut_half.jpg"].width == 256
    assert 0 < by_path["photos/astronaut_crop.jpg"].hash_distance <= 8


def test_exact_copies_only_among_size_collisions(
    analysed: Analysed, tmp_path: Path, monkeypatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(analysed.results, results)
    (results / "duplicates" / "hashes.jsonl").unlink(missing_ok=True)  # another test's cache
    read: list[tuple[str, int | None]] = []
    real_digest = duplicates_exact.content_digest

    def counting(path: Path, limit: int | None = None) -> str:
        read.append((str(Path(path).relative_to(analysed.library)), limit))
        return real_digest(path, limit)

    monkeypatch.setattr(duplicates_exact, "content_digest", counting)
    report = find_duplicates(Layout(results), analysed.library, SETTINGS, use_clip=False)
    assert groups_of(report, "exact") == [{BASE, "backup/astronaut.jpg"}]
    sizes: dict[int, list[str]] = {}
    for path in analysed.library.rglob("*.*"):
        sizes.setdefault(path.stat().st_size, []).append(str(path.relative_to(analysed.library)))
    colliding = {p for paths in sizes.values() if len(paths) > 1 for p in paths}
    assert colliding == {BASE, "backup/astronaut.jpg", SAME_SIZE}
    assert {path for path, _ in read} == colliding  # files of a unique size are never read
    # The padded file differs in its first 64 KiB: only the two real copies are read in full.
    assert sorted(p for p, limit in read if limit is None) == sorted([BASE, "backup/astronaut.jpg"])
    cache = list(read_rows(results / "duplicates" / "hashes.jsonl"))
    assert {row["path"] for row in cache} == colliding
    read.clear()
    again = find_duplicates(Layout(results), analysed.library, SETTINGS, use_clip=False)
    assert read == [] and again.stats["cache_hits"] == 5
    assert groups_of(again, "exact") == groups_of(report, "exact")


def test_keeper_prefers_raw_over_a_larger_jpeg(analysed: Analysed) -> None:
    report = find_duplicates(Layout(analysed.results), analysed.library, SETTINGS, use_clip=False)
    group = next(g for g in report.groups if RAW in {m.path for m in g.members})
    members = {m.path: m for m in group.members}
    assert pixels(members[RAW_EXPORT]) > pixels(members[RAW])
    assert group.keeper == RAW and members[RAW].raw and not members[RAW_EXPORT].raw
    assert group.reason.startswith("RAW (dng) over jpeg")


def test_keeper_order_of_rules() -> None:
    def member(path: str, **fields) -> duplicates_groups.Member:
        values = {"size": 100, "width": 10, "height": 10, "sharpness": 1.0, "format": "jpeg"}
        values.update(fields)
        return duplicates_groups.Member(path, raw=values["format"] == "dng", **values)

    cases = [
        ([member("b"), member("a", width=11)], "a", "most pixels"),
        ([member("b"), member("a", sharpness=2.0)], "a", "sharpest"),
        ([member("a"), member("b", size=101)], "b", "largest file"),
        ([member("b"), member("a")], "a", "identical"),
        ([member("a", width=99), member("b", format="dng")], "b", "RAW"),
    ]
    for members, keeper, reason in cases:
        chosen, why = duplicates_groups.choose_keeper(members)
        assert chosen.path == keeper and why.startswith(reason)


def write_vectors(results: Path, shards: list[str], vector_of) -> None:
    """embedding/<shard>.npy and .jsonl rows as the embedding module writes them."""
    for shard in shards:
        entries = read_manifest(results / "catalog" / "shards" / f"{shard}.tsv")
        matrix = np.stack([vector_of(e.path) for e in entries]).astype(np.float16)
        (results / "embedding").mkdir(exist_ok=True)
        np.save(results / "embedding" / f"{shard}.npy", matrix)
        rows = [
            error_row(e, "not decoded") if e.path == CORRUPT else ok_row(e, {"model": "t"})
            for e in entries
        ]
        write_rows(results / "embedding" / f"{shard}.jsonl", rows)


def test_clip_cosine_adds_pairs_and_vetoes_hash_matches(fresh: Analysed) -> None:
    rng = np.random.default_rng(0)
    family = rng.standard_normal(16)
    other = rng.standard_normal(16)
    special = {
        "photos/astronaut_burst.jpg": family + 1.2 * np.linalg.norm(family) * np.eye(16)[0],
        DIFFERENT[1]: other + 0.05 * rng.standard_normal(16),  # rocket ~ coffee by CLIP
        DIFFERENT[0]: other,
    }

    def vector_of(path: str) -> np.ndarray:
        if path in special:
            vector = special[path]
        elif "astronaut" in path:
            vector = family
        else:
            vector = rng.standard_normal(16)
        return vector / np.linalg.norm(vector)

    write_vectors(fresh.results, fresh.shards, vector_of)
    report = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    near = groups_of(report, "near")
    assert {DIFFERENT[0], DIFFERENT[1]} in near  # by CLIP alone: their hashes are far apart
    astronauts = next(g for g in near if BASE in g)
    assert astronauts == {BASE} | COPIES - {"photos/astronaut_burst.jpg"}  # cosine veto
    assert report.stats["embedded"] == report.stats["images"] - 1  # all but the broken file
    assert report.stats["clip_shards_searched"] == len(fresh.shards)
    again = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    assert again.stats["clip_shards_searched"] == 0 and again.groups == report.groups
    # A new import is searched against the library; the cached shards are not searched again.
    write_jpeg(fresh.library / "new/rocket_edit.jpg", data.rocket()[::-1])  # other pHash
    special["new/rocket_edit.jpg"] = other + 0.05 * rng.standard_normal(16)
    new_shards = analyse(fresh.library, fresh.results)
    write_vectors(fresh.results, new_shards, vector_of)
    update = find_duplicates(Layout(fresh.results), fresh.library, SETTINGS)
    assert update.stats["clip_shards_searched"] == len(new_shards) == 1
    assert {DIFFERENT[0], DIFFERENT[1], "new/rocket_edit.jpg"} in groups_of(update, "near")


# --- groups.json and the command line -------------------------------------------------------------
def run_cli(argv: list[str], capsys) -> str:
    parser = argparse.ArgumentParser()
    add_duplicates_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_cli_reads_current_groups_json_and_prints_json(
    fresh: Analysed, capsys, monkeypatch
) -> None:
    config = fresh.results.parent / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "library": str(fresh.library),
                "results": str(fresh.results),
                "modules": ["metadata", "technical", "duplicates"],
            }
        )
    )
    out_json = fresh.results / "duplicates" / "groups.json"
    written = write_duplicates(
        Layout(fresh.results), fresh.library, out_json, SETTINGS, use_clip=False
    )
    monkeypatch.setattr(duplicates, "find_duplicates", lambda *a, **k: pytest.fail("recomputed"))
    printed = json.loads(run_cli(["duplicates", "--config", str(config), "--json"], capsys))
    assert printed == [g.as_dict() for g in written.groups]
    exact = json.loads(
        run_cli(["duplicates", "--config", str(config), "--json", "--kind", "exact"], capsys)
    )
    assert [g["kind"] for g in exact] == ["exact"]
    text = run_cli(["duplicates", "--config", str(config)], capsys)
    assert f"* {RAW}" in text and text.count("group") >= 3
    # An edited photo makes groups.json outdated: the command computes the groups again.
    photo = fresh.library / DIFFERENT[3]
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        with pytest.raises(pytest.fail.Exception, match="recomputed"):
            run_cli(["duplicates", "--config", str(config), "--json"], capsys)
    finally:
        os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cli_says_the_duplicates_module_has_not_run(tmp_path: Path, capsys) -> None:
    from imganalyzer.cli.main import main

    library, results = tmp_path / "library", tmp_path / "results"
    library.mkdir()
    (library / "a.jpg").write_bytes(b"same bytes")
    (library / "b.jpg").write_bytes(b"same bytes")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"library": str(library), "results": str(results)}))
    assert main(["duplicates", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "duplicates module, which has not run" in captured.err and not captured.out
    assert "no duplicates found" not in captured.out
