"""Search benchmark: index build, incremental update and query latency on a synthetic library.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``):

    .venv/bin/python bench/bench_search.py                 # 500,000 images, 768-d vectors
    .venv/bin/python bench/bench_search.py --images 100000
    .venv/bin/python bench/bench_search.py --quick         # 20,000 images

Builds a real results tree in a temporary folder: tiny library files catalogued by
``Catalog.ingest`` (shards of 1,000), per-shard ``metadata``, ``technical``, ``aesthetic``,
``captions``, ``ocr`` and ``faces`` rows with realistic field lengths (a 12-word caption,
three answers, OCR text on 30% of images, labels and names drawn from Zipf-distributed
vocabularies) and ``embedding/<shard>.npy`` random unit float16 vectors. Then times:

* ``update_index`` from nothing (JSON rows -> Tantivy documents, plus the vector matrix);
* an incremental update after 1,000 random files were edited (a new shard of 1,000
  supersedes them: 1,000 documents added, 1,000 keys deleted, the matrix rewritten), and
  ``write_vectors`` alone, the part that does not shrink with the change;
* a no-change update (the library stat, the fingerprints, no write);
* p50/p95 latency of text, semantic, hybrid and filtered queries through ``SearchIndex``
  (a random unit vector stands in for the CLIP text tower, which is not timed here).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import Row, bench_parser, machine_description, measure, ms_row, publish
from previous_search import PreviousPath

from imganalyzer.catalog.current import current_shards
from imganalyzer.catalog.manifests import read_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.search.query import Filters, SearchIndex
from imganalyzer.search.vectors import write_vectors
from imganalyzer.store import ResultsStore

SHARD_SIZE = 1000
DIM = 768
EDITS = 1000
QUERIES = 50
CAMERAS = [("FUJIFILM", "X-T4"), ("Canon", "Canon EOS R5"), ("NIKON CORPORATION", "NIKON Z 6_2")]
CAMERAS += [("SONY", "ILCE-7M3"), ("Apple", "iPhone 13"), ("Google", "Pixel 7")]
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]


def log(message: str) -> None:
    print(message, flush=True)


class Words:
    """A vocabulary of made-up words drawn with Zipf-like frequencies (as in real text)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu"]
        picks = rng.integers(0, len(syllables), size=(size, 3))
        self.words = ["".join(syllables[i] for i in row) + str(n) for n, row in enumerate(picks)]
        weights = 1.0 / np.arange(1, size + 1)
        # One pool of draws, read in turn: drawing per call would dominate the setup.
        self.pool = rng.choice(size, size=4_000_000, p=weights / weights.sum()).tolist()
        self.cursor = 0

    def text(self, n: int) -> str:
        if self.cursor + n > len(self.pool):
            self.cursor = 0
        start, self.cursor = self.cursor, self.cursor + n
        return " ".join([self.words[i] for i in self.pool[start : self.cursor]])


def make_library(root: Path, n_images: int) -> None:
    for index in range(n_images):
        folder = root / f"{2015 + index % 10}" / f"event-{index % 500:03d}"
        if index < 5000:
            folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"IMG_{index:07d}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, b"jpeg")
        os.close(fd)


def write_results(results: Path, shard: str, catalog: Catalog, words: Words, seed: int) -> None:
    rng = np.random.default_rng(seed)
    entries = read_manifest(catalog.manifest_path(shard))
    n = len(entries)
    camera = rng.integers(len(CAMERAS), size=n)
    focal, aperture = rng.integers(16, 200, size=n), rng.choice([1.4, 2.8, 4.0], size=n)
    year, month, day, hour = (
        rng.integers(a, b, size=n) for a, b in ((2015, 2025), (1, 13), (1, 29), (0, 24))
    )
    gps = rng.random(n) < 0.7
    lat, lon = rng.uniform(-60, 70, size=n), rng.uniform(-180, 180, size=n)
    sharpness, score = rng.gamma(2, 200, size=n), rng.normal(5, 1, size=n)
    ocr_words = np.where(rng.random(n) < 0.3, rng.integers(5, 30, size=n), 0)
    n_people = rng.integers(0, 3, size=n)
    modules: dict[str, list[dict]] = {m: [] for m in ("metadata", "technical", "aesthetic")}
    modules.update({m: [] for m in ("captions", "ocr", "faces", "embedding")})
    for i, e in enumerate(entries):
        make, model = CAMERAS[camera[i]]
        metadata = {
            "make": make,
            "model": model,
            "lens": f"{focal[i]}mm F{aperture[i]}",
            "datetime_original": f"{year[i]}-{month[i]:02d}-{day[i]:02d}T{hour[i]:02d}:00:00",
            "gps_latitude": float(lat[i]) if gps[i] else None,
            "gps_longitude": float(lon[i]) if gps[i] else None,
            "iso": 400,
            "width": 6000,
            "height": 4000,
            "format": "jpeg",
        }
        answers = {q: words.text(4) for q in ("where?", "what is happening?", "time of day?")}
        modules["metadata"].append(ok_row(e, metadata))
        modules["technical"].append(ok_row(e, {"sharpness": float(sharpness[i]), "noise": 1.0}))
        modules["aesthetic"].append(ok_row(e, {"aesthetic": float(score[i])}))
        modules["captions"].append(ok_row(e, {"caption": words.text(12), "answers": answers}))
        modules["ocr"].append(ok_row(e, {"text": words.text(int(ocr_words[i]))}))
        modules["faces"].append(ok_row(e, {"people": PEOPLE[i % 7 : i % 7 + n_people[i]]}))
        modules["embedding"].append(ok_row(e, {"model": "synthetic"}))
    for module, rows in modules.items():
        write_rows(results / module / f"{shard}.jsonl", rows)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(results / "embedding" / f"{shard}.npy", vectors.astype(np.float16))


def ingest_and_write(
    library: Path, results: Path, catalog: Catalog, words: Words, seed: int
) -> int:
    report = catalog.ingest(library, SHARD_SIZE, exclude=[results])
    for offset, shard in enumerate(report.new_shards):
        write_results(results, shard, catalog, words, seed + offset)
    return len(report.new_shards)


def latency_rows(name: str, query: Callable[[int], object], note: str = "") -> list[Row]:
    query(0)  # warm: page the matrix in, load the searcher
    seconds = []
    for i in range(QUERIES):
        start = time.perf_counter()
        query(i)
        seconds.append(time.perf_counter() - start)
    p50, p95 = statistics.median(seconds), float(np.percentile(seconds, 95))
    return [
        Row(f"query p50: {name}", p50 * 1e3, "ms", note),
        Row(f"query p95: {name}", p95 * 1e3, "ms", f"n={QUERIES}"),
    ]


def query_rows(index: SearchIndex, words: Words, rng: np.random.Generator) -> list[Row]:
    texts = [words.text(2) for _ in range(QUERIES + 1)]
    vectors = rng.standard_normal((QUERIES + 1, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode(i: int) -> Callable[[str], np.ndarray]:
        return lambda _text: vectors[i]

    rare = Filters(person="Alice", camera="X-T4", after=parse("2021"))
    broad = Filters(min_aesthetic=4.0)
    rows = latency_rows("text (2 words, BM25)", lambda i: index.search(texts[i], "text"))
    rows += latency_rows(
        "semantic (exact: int8 codes, then the few candidates)",
        lambda i: index.search("", "semantic", encode_text=encode(i)),
    )
    rows += latency_rows(
        "hybrid (RRF of both)", lambda i: index.search(texts[i], "hybrid", encode_text=encode(i))
    )
    rows += latency_rows(
        "hybrid + selective filter",
        lambda i: index.search(texts[i], "hybrid", rare, encode_text=encode(i)),
        f"person, camera, date: {share(index, rare):.1%} of images",
    )
    rows += latency_rows(
        "hybrid + broad filter",
        lambda i: index.search(texts[i], "hybrid", broad, encode_text=encode(i)),
        f"min aesthetic 4: {share(index, broad):.1%} of images",
    )
    rows += latency_rows(
        "text + --near 500 km",
        lambda i: index.search(texts[i], "text", Filters(near=(48.8, 2.3, 500.0))),
    )
    before = PreviousPath(SearchIndex(index.store.layout)).index
    rows += latency_rows(
        "semantic, previous path (float16 product over all vectors)",
        lambda i: before.search("", "semantic", None, 20, encode(i)),
        "measured after the rows above",
    )
    rows += latency_rows(
        "hybrid, previous path",
        lambda i: before.search(texts[i], "hybrid", None, 20, encode(i)),
    )
    return rows


def share(index: SearchIndex, filters: Filters) -> float:
    """The fraction of the indexed images that pass ``filters``."""
    matching = index.searcher.search(index.filter_query(filters), 1, count=True).count
    return matching / index.searcher.num_docs


def parse(text: str):
    from imganalyzer.search.query import parse_date_bound

    return parse_date_bound(text)


def run(n_images: int) -> list[Row]:
    rng = np.random.default_rng(0)
    words = Words(20_000, rng)
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-search-") as tmp:
        library, results = Path(tmp) / "library", Path(tmp) / "results"
        layout = Layout(results)
        catalog = Catalog(layout)
        log(f"creating {n_images:,} files and their results ...")
        start = time.perf_counter()
        make_library(library, n_images)
        shards = ingest_and_write(library, results, catalog, words, seed=1)
        log(f"  {shards} shards in {time.perf_counter() - start:.1f} s")

        log("building the index ...")
        build = measure(lambda: update_index(layout, library, threads=2), 1)
        index_dir = layout.index
        tantivy_bytes = sum(p.stat().st_size for p in (index_dir / "tantivy").rglob("*"))
        matrix_bytes = (index_dir / "vectors.npy").stat().st_size
        codes_bytes = (index_dir / "vector_codes.npy").stat().st_size

        log(f"editing {EDITS:,} random files ...")
        all_files = sorted(library.rglob("*.jpg"))
        for i in rng.choice(len(all_files), size=EDITS, replace=False):
            with open(all_files[i], "ab") as handle:
                handle.write(b"!")
        ingest_and_write(library, results, catalog, words, seed=10**6)
        reports = []
        update = measure(lambda: reports.append(update_index(layout, library, threads=2)), 1)
        report = reports[-1]
        view = current_shards(layout, library)
        vectors_only = measure(lambda: write_vectors(index_dir, ResultsStore(layout), view), 1)
        nothing = measure(lambda: reports.append(update_index(layout, library)), 1)
        if reports[-1].committed or reports[-1].vectors is not None:
            raise RuntimeError("the no-change update wrote something")

        log("querying ...")
        index = SearchIndex(layout)
        rows = query_rows(index, words, rng)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    return [
        ms_row(
            f"index: build from {n_images:,} images",
            build,
            1,
            f"{tantivy_bytes / 1e6:.0f} MB Tantivy",
        ),
        ms_row(
            f"index: update after {EDITS:,} edits",
            update,
            1,
            f"{report.added} added, {report.deleted_keys} keys deleted, "
            f"{report.reindexed_shards} shard reindexed; includes the matrix rewrite",
        ),
        ms_row("index: vector matrix rewrite alone", vectors_only),
        ms_row("index: no-change update (stat + fingerprints)", nothing, 1, "nothing written"),
        Row(
            "vectors.npy size (float16, memory-mapped)",
            matrix_bytes / 2**20,
            "MiB",
            f"{n_images:,} x {DIM}",
        ),
        Row(
            "vector_codes.npy size (int8, exact ranking's first pass)",
            codes_bytes / 2**20,
            "MiB",
            "plus 12 bytes of bounds per image",
        ),
        *rows,
        Row("peak RSS of this process", rss_mb, "MiB", "includes building the synthetic library"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "20,000 images")
    parser.add_argument("--images", type=int, default=500_000, help="library size (500,000)")
    args = parser.parse_args(argv)
    n_images = 20_000 if args.quick else args.images
    if not args.json:
        log(machine_description())
    rows = run(n_images)
    title = f"search index ({n_images:,} images, {DIM}-d vectors)"
    publish(title, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
