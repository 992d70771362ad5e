"""Web benchmark: latency of `imganalyzer serve`'s pages, thumbnails and search on a synthetic
library, measured by an HTTP client against the real server in the same run.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``):

    .venv/bin/python bench/bench_web.py                      # 1,000,000 images
    .venv/bin/python bench/bench_web.py --images 100000
    .venv/bin/python bench/bench_web.py --quick              # 20,000 images
    .venv/bin/python bench/bench_web.py --workdir /tmp/w1m   # keep the built library there

Builds the results tree of ``bench_search.py`` (its generator: catalogued files, per-shard rows
of every module, 768-d vectors) plus object labels, camera and place names, and a thumbnail zip
per shard (a real 256 px thumbnail in the first shard, a tiny one elsewhere), in two worker
processes; then its index (Tantivy, vectors and the browse table). With ``--workdir`` a built
library is reused, so the (slow) build happens once. Then starts the app on uvicorn (its own
process) and times requests with httpx: the timeline at the top, in the middle and at the end,
a filtered timeline, explore, the map, the viewer, thumbnails, and text, semantic, hybrid and
filtered searches (the same filters each time, as a user trying several words, and new
filters each time), and reads the server's memory. The CLIP text tower is replaced by random
unit vectors: its cost is the model's. Then the same searches through ``SearchIndex.search``
alone, in turns with the ranking before the int8 codes (the ratio), and a check that the
semantic ranking is the exact one. Goals: pages and searches p95 < 100 ms, a thumbnail
p95 < 10 ms.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import imagecodecs
import numpy as np
import uvicorn
from bench_search import DIM, Words, make_library, write_results
from common import Row, bench_parser, machine_description, measure, publish
from previous_search import PreviousPath

from imganalyzer.catalog.manifests import Entry
from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.exif_fields import camera_name
from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, read_rows, write_rows
from imganalyzer.search.index import update_index
from imganalyzer.search.query import SearchIndex
from imganalyzer.web import create_app

REQUESTS = 60
PAGE_GOAL_MS = 100
THUMBNAIL_GOAL_MS = 10
SEARCH_GOAL_MS = 100
# Camera, date and aesthetic filters that about 5.6% of the synthetic images pass.
BROAD_FILTERS = "&camera=X-T4&after=2021&min_aesthetic=4"
LABELS = [f"thing{i}" for i in range(60)]  # object labels, Zipf-like frequencies
PLACES = [(f"Town{i}", f"Country{i % 25}") for i in range(300)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(results: Path, library: Path, port: int) -> subprocess.Popen:
    """The server in its own process, as users run it (a server thread in this process would
    share its interpreter lock with the client and add ~45 ms to every request)."""
    command = [sys.executable, __file__, "--serve", str(results), str(library), str(port)]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/app.css", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


# The server reads every manifest's rows and the browse table in the background as it starts;
# the client starts after that, as a user opening the printed address would.
STARTUP_WAIT_S = 15


def serve(results: str, library: str, port: str) -> None:
    """``--serve``: the app, with random unit vectors standing in for the CLIP text tower."""
    config = {"library": library, "results": results, "modules": ["metadata"]}
    app = create_app(config)
    vectors = np.random.default_rng(1).standard_normal((64, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    counter = iter(range(10**12))
    app.state.encoders._encoder = lambda _text: vectors[next(counter) % len(vectors)]
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def latency(client: httpx.Client, name: str, urls: list[str], goal_ms: float) -> list[Row]:
    client.get(urls[0]).raise_for_status()  # warm: searcher, matrix pages, templates
    seconds = []
    for url in urls[1:]:
        start = time.perf_counter()
        client.get(url).raise_for_status()
        seconds.append(time.perf_counter() - start)
    p50, p95 = statistics.median(seconds), float(np.percentile(seconds, 95))
    verdict = "meets" if p95 * 1e3 < goal_ms else "misses"
    return [
        Row(f"{name} p50", p50 * 1e3, "ms", f"n={len(seconds)}"),
        Row(f"{name} p95", p95 * 1e3, "ms", f"{verdict} the {goal_ms:g} ms goal"),
    ]


# ---------------------------------------------------------------- the synthetic library

_WORDS: Words | None = None


def _worker_init() -> None:
    global _WORDS
    _WORDS = Words(20_000, np.random.default_rng(0))


def write_shard(job: tuple[str, str, int, bool]) -> None:
    """One shard's results (bench_search's rows plus labels, camera and place names) and
    its thumbnail zip."""
    results, shard, seed, real_thumbnails = job
    root = Path(results)
    catalog = Catalog(Layout(root))
    assert _WORDS is not None
    write_results(root, shard, catalog, _WORDS, seed)
    rng = np.random.default_rng(seed + 10**6)
    path = root / "metadata" / f"{shard}.jsonl"
    rows = list(read_rows(path))
    towns = rng.integers(0, len(PLACES), size=len(rows))
    for row, town in zip(rows, towns, strict=True):
        row["camera"] = camera_name(row.get("make"), row.get("model"))
        if row.get("gps_latitude") is not None:
            row["place"], row["country"] = PLACES[int(town)]
    write_rows(path, rows)
    weights = 1.0 / np.arange(1, len(LABELS) + 1)
    picks = rng.choice(len(LABELS), size=(len(rows), 3), p=weights / weights.sum())
    objects = [
        ok_row(
            Entry(r["path"], r["size"], r["mtime_ns"]),
            {"labels": sorted({LABELS[i] for i in p}), "has_text": False, "has_person": False},
        )
        for r, p in zip(rows, picks, strict=True)
    ]
    write_rows(root / "objects" / f"{shard}.jsonl", objects)
    write_thumbnails(root, shard, len(rows), real_thumbnails)


def write_thumbnails(results: Path, shard: str, n: int, real: bool) -> None:
    """A shard's thumbnail zip: one encoded JPEG stored ``n`` times (the server only reads)."""
    side = (192, 256) if real else (12, 16)
    rgb = np.random.default_rng(0).integers(0, 255, (*side, 3), dtype=np.uint8)
    jpeg = imagecodecs.jpeg8_encode(rgb, level=80)
    with ThumbnailWriter(results / "thumbnails" / f"{shard}.zip") as thumbnails:
        for row in range(n):
            thumbnails.add_jpeg(row, jpeg)


def build(workdir: Path, n_images: int) -> tuple[float, float]:
    """The library, its results and index in ``workdir`` (reused when already built there).
    Returns (seconds to write the library and results, seconds to build the index)."""
    library, results = workdir / "library", workdir / "results"
    done = workdir / "built.json"
    if done.is_file():
        built = json.loads(done.read_text())
        if built["images"] == n_images:
            log(f"reusing the {n_images:,}-image library in {workdir}")
            return built["write_s"], built["index_s"]
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log(f"creating {n_images:,} files and their results ...")
    start = time.perf_counter()
    make_library(library, n_images)
    catalog = Catalog(Layout(results))
    shards = catalog.ingest(library, 1000, exclude=[results]).new_shards
    jobs = [(str(results), shard, 1 + i, i == 0) for i, shard in enumerate(shards)]
    with multiprocessing.get_context("fork").Pool(2, initializer=_worker_init) as pool:
        for done_jobs, _ in enumerate(pool.imap_unordered(write_shard, jobs, chunksize=4), 1):
            if done_jobs % 100 == 0:
                log(f"  {done_jobs}/{len(jobs)} shards written")
    write_s = time.perf_counter() - start
    log(f"  {write_s:.0f} s; building the index ...")
    index_s = measure(lambda: update_index(Layout(results), library, threads=2), 1).best
    done.write_text(json.dumps({"images": n_images, "write_s": write_s, "index_s": index_s}))
    return write_s, index_s


# ---------------------------------------------------------------- the measurements


def run(n_images: int, workdir: Path | None) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-web-") as tmp:
        folder = workdir or Path(tmp)
        write_s, index_s = build(folder, n_images)
        results, library = folder / "results", folder / "library"
        port = free_port()
        server = start_server(results, library, port)
        time.sleep(STARTUP_WAIT_S)
        words = Words(20_000, np.random.default_rng(0))
        # distinct queries for every measurement: none is answered from the server's cache
        texts = [words.text(2) for _ in range(8 * (REQUESTS + 1))]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                rows = page_rows(client, results)
                rows += search_rows(client, texts)
            rows.append(server_memory(server))
            rows += library_calls(results, texts[: REQUESTS + 1])
        finally:
            server.terminate()
            server.wait(30)
    return [
        Row("synthetic library + results written", write_s, "s", f"{n_images:,} images"),
        Row("index build (Tantivy, vectors, browse table)", index_s, "s", f"{n_images:,} images"),
        *rows,
    ]


def page_rows(client: httpx.Client, results: Path) -> list[Row]:
    """Timeline (top, middle, end), filtered timeline, explore, map, viewer, thumbnails."""
    from imganalyzer.search.browse import BrowseTable

    table = BrowseTable(Layout(results).index_files.browse)
    rng = np.random.default_rng(5)
    n = REQUESTS + 1

    def cursors(low: float, high: float) -> list[str]:
        at = rng.integers(int(low * (table.n - 1)), int(high * (table.n - 1)) + 1, size=n)
        return [f"/?after={table.cursor(int(p)).text()}" for p in at]

    months = [f"/?month={y:04d}-{m:02d}" for y, m, _, _ in table.months]
    viewer = [f"/view?path={table.key(int(p))}" for p in rng.integers(0, table.n, size=n)]
    rows = latency(client, "timeline, first page", ["/"] * n, PAGE_GOAL_MS)
    rows += latency(client, "timeline, a page in the middle", cursors(0.45, 0.55), PAGE_GOAL_MS)
    rows += latency(client, "timeline, a page at the end", cursors(0.98, 0.999), PAGE_GOAL_MS)
    rows += latency(
        client,
        "timeline, a month (scrubber)",
        [months[i % len(months)] for i in range(n)],
        PAGE_GOAL_MS,
    )
    cameras = table.table("camera")
    filtered = [f"/?camera={cameras[i % len(cameras)]}&year={2015 + i % 10}" for i in range(n)]
    rows += latency(client, "timeline filtered (camera + year)", filtered, PAGE_GOAL_MS)
    rows += latency(client, "explore", ["/explore"] * n, PAGE_GOAL_MS)
    rows += latency(client, "map, whole world", ["/map"] * n, PAGE_GOAL_MS)
    corners = zip(rng.uniform(-170, 150, n), rng.uniform(-55, 60, n), strict=True)
    boxes = [f"/map?box={x:.3f},{y:.3f},{x + 20:.3f},{y + 15:.3f}" for x, y in corners]
    rows += latency(client, "map, an area", boxes, PAGE_GOAL_MS)
    rows += latency(client, "viewer (timeline neighbours)", viewer, PAGE_GOAL_MS)
    shard = table.table("shard")[0]
    thumbnails = [f"/thumbnail/{shard}/{i % 1000}" for i in range(n)]
    return rows + latency(client, "thumbnail", thumbnails, THUMBNAIL_GOAL_MS)


def search_rows(client: httpx.Client, texts: list[str]) -> list[Row]:
    rows = []
    batches = iter(texts[i : i + REQUESTS + 1] for i in range(0, len(texts), REQUESTS + 1))
    for name, mode, extra in (
        ("search API, text", "text", ""),
        ("search API, semantic", "semantic", ""),
        ("search API, hybrid", "hybrid", ""),
        ("search API, hybrid + filters", "hybrid", BROAD_FILTERS),
    ):
        urls = [f"/api/search?q={t}&mode={mode}{extra}" for t in next(batches)]
        rows += latency(client, name, urls, SEARCH_GOAL_MS)
    # the same filters with another aesthetic floor each time: none of them is kept
    urls = [
        f"/api/search?q={t}&mode=hybrid{BROAD_FILTERS}.{i:03d}" for i, t in enumerate(next(batches))
    ]
    rows += latency(
        client, "search API, hybrid + filters new with each query", urls, SEARCH_GOAL_MS
    )
    for mode in ("text", "hybrid"):
        name = f"search page (HTML, 48 results), {mode}"
        urls = [f"/search?q={t}&mode={mode}" for t in next(batches)]
        rows += latency(client, name, urls, SEARCH_GOAL_MS)
    return rows


def server_memory(server: subprocess.Popen) -> Row:
    """The server's resident memory (Linux), after the searches: in all, and its own
    (anonymous) part; the rest are pages of memory-mapped files (Tantivy's, the vector
    matrix's), which the kernel can drop."""
    try:
        status = Path(f"/proc/{server.pid}/status").read_text(encoding="ascii")
        kib = {
            line.split(":")[0]: int(line.split()[1])
            for line in status.splitlines()
            if line.startswith(("VmRSS", "RssAnon", "RssFile"))
        }
        total, anon, files = kib["VmRSS"], kib["RssAnon"], kib["RssFile"]
    except (OSError, KeyError, ValueError):
        return Row("server resident memory", float("nan"), "MiB", "unknown on this system")
    note = f"{anon / 1024:,.0f} MiB its own, {files / 1024:,.0f} MiB of mapped files"
    return Row("server resident memory after the searches", total / 1024, "MiB", note)


def library_calls(results: Path, texts: list[str]) -> list[Row]:
    """The searches through ``SearchIndex.search`` in this process, no server: the ranking
    as the server runs it against the one before the int8 codes (:class:`PreviousPath`),
    query by query in turns so that both see the same load; then a check that the ranking
    is the exact one."""
    from imganalyzer.search.query import Filters, checked_filters, parse_date_bound

    index = SearchIndex(Layout(results), resident=True)
    before = PreviousPath(SearchIndex(Layout(results)))
    vectors = np.random.default_rng(2).standard_normal((len(texts), DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    broad = checked_filters(
        Filters(camera="X-T4", after=parse_date_bound("2021"), min_aesthetic=4.0)
    )
    columns = index.filter_columns
    assert columns is not None
    passing = columns.vector_rows(broad)
    assert passing is not None
    share = f"{len(passing):,} of {len(columns.vector_row):,} images pass the filters"
    rows = []
    for name, mode, filters in (
        ("semantic", "semantic", None),
        ("hybrid", "hybrid", None),
        ("hybrid + filters", "hybrid", broad),
    ):
        now, then = [], []
        for i, text in enumerate(texts):
            for searcher, seconds in ((index, now), (before.index, then)):
                start = time.perf_counter()
                searcher.search(text, mode, filters, 49, lambda _text, i=i: vectors[i])
                seconds.append(time.perf_counter() - start)
        now, then = now[1:], then[1:]  # the first ones warm
        label = f"SearchIndex.search alone, {name}"
        for which, seconds in (("", now), (", previous path", then)):
            rows.append(Row(f"{label}{which} p50", statistics.median(seconds) * 1e3, "ms", ""))
            p95 = float(np.percentile(seconds, 95)) * 1e3
            rows.append(Row(f"{label}{which} p95", p95, "ms", share if filters else ""))
        ratio = statistics.median(then) / statistics.median(now)
        rows.append(Row(f"{name}: previous path / now (p50)", ratio, "x", "same run, in turns"))
    same_words = sum(
        index.text_ranking(text, broad, 100)
        == index._ranked(text, index.text_query(text, broad), 100)
        for text in texts[:EXACT_CHECKS]
    )
    words = Row("filtered words' top 100 = Tantivy's filter", same_words, f"of {EXACT_CHECKS}", "")
    return rows + [exactness_row(index, vectors[:EXACT_CHECKS], passing), words]


EXACT_CHECKS = 5


def exactness_row(index: SearchIndex, queries: np.ndarray, passing: np.ndarray) -> Row:
    """How many of the queries' top 100 (all images, and the filtered ones) are exactly those
    of scoring every vector exactly: the same images in the same order with the same scores."""
    from imganalyzer.search.vector_scan import top_order

    vectors = index.vectors
    assert vectors is not None
    same = 0
    for query in queries:
        for rows in (None, passing):
            got_rows, got_scores = vectors.best(query, 100, rows)
            every = np.arange(len(vectors)) if rows is None else rows
            scores = vectors.exact_scores(query, every)
            best = top_order(scores, every, 100)
            same += np.array_equal(got_rows, every[best]) and np.array_equal(
                got_scores, scores[best]
            )
    checks = 2 * len(queries)
    return Row("semantic top 100 = exact scan of every vector", same, f"of {checks}", "")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(*argv[1:4])
        return
    parser = bench_parser(__doc__, "20,000 images")
    parser.add_argument("--images", type=int, default=1_000_000, help="library size (1,000,000)")
    parser.add_argument("--workdir", type=Path, help="build (or reuse) the library here")
    args = parser.parse_args(argv)
    n_images = 20_000 if args.quick else args.images
    if not args.json:
        log(machine_description())
    publish(f"web server ({n_images:,} images)", run(n_images, args.workdir), args.json)


if __name__ == "__main__":
    sys.exit(main())
