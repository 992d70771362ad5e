"""Web benchmark: latency of `imganalyzer serve`'s search API, search page and thumbnails on a
synthetic index, measured by an HTTP client against the real server in the same run.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``):

    .venv/bin/python bench/bench_web.py                 # 500,000 images
    .venv/bin/python bench/bench_web.py --images 100000
    .venv/bin/python bench/bench_web.py --quick         # 20,000 images

Builds the results tree of ``bench_search.py`` (its generator: catalogued files, per-shard
rows of every module, 768-d vectors) and its index, one shard's thumbnail zip, then starts the
app on uvicorn (a loopback port, its own process) and times requests with httpx: text, hybrid and
filtered searches through ``/api/search`` and ``/`` (the HTML page with its 48-image grid), and
thumbnails. The CLIP text tower is replaced by random unit vectors (as in bench_search.py):
its cost is the model's, not the server's. Goal: p95 < 150 ms for the search API and page.
"""

from __future__ import annotations

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
from bench_search import DIM, Words, ingest_and_write, make_library
from common import Row, bench_parser, machine_description, measure, publish

from imganalyzer.catalog.store import Catalog
from imganalyzer.decode.thumbnails import ThumbnailWriter
from imganalyzer.layout import Layout
from imganalyzer.search.index import update_index
from imganalyzer.search.query import SearchIndex
from imganalyzer.web import create_app

REQUESTS = 60
GOAL_MS = 150


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
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/app.css", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


# The server reads every manifest's rows in the background as it starts (~1.5 s for 500
# shards here); the client starts after that, as a user opening the printed address would.
STARTUP_WAIT_S = 5


def serve(results: str, library: str, port: str) -> None:
    """``--serve``: the app, with random unit vectors standing in for the CLIP text tower."""
    config = {"library": library, "results": results, "modules": ["metadata"]}
    app = create_app(config)
    vectors = np.random.default_rng(1).standard_normal((64, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    counter = iter(range(10**12))
    app.state.encoders._encoder = lambda _text: vectors[next(counter) % len(vectors)]
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def latency(client: httpx.Client, name: str, urls: list[str]) -> list[Row]:
    client.get(urls[0]).raise_for_status()  # warm: searcher, matrix pages, templates
    seconds = []
    for url in urls[1:]:
        start = time.perf_counter()
        client.get(url).raise_for_status()
        seconds.append(time.perf_counter() - start)
    p50, p95 = statistics.median(seconds), float(np.percentile(seconds, 95))
    verdict = "meets" if p95 * 1e3 < GOAL_MS else "misses"
    return [
        Row(f"{name} p50", p50 * 1e3, "ms", f"n={len(seconds)}"),
        Row(f"{name} p95", p95 * 1e3, "ms", f"{verdict} the {GOAL_MS} ms goal"),
    ]


def write_thumbnails(results: Path, shard: str, n: int) -> None:
    """One shard's thumbnail zip (one encoded JPEG stored ``n`` times: the server only reads)."""
    rgb = np.random.default_rng(0).integers(0, 255, (192, 256, 3), dtype=np.uint8)
    jpeg = imagecodecs.jpeg8_encode(rgb, level=80)
    with ThumbnailWriter(results / "thumbnails" / f"{shard}.zip") as thumbnails:
        for row in range(n):
            thumbnails.add_jpeg(row, jpeg)


def run(n_images: int) -> list[Row]:
    rng = np.random.default_rng(0)
    words = Words(20_000, rng)
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-web-") as tmp:
        library, results = Path(tmp) / "library", Path(tmp) / "results"
        catalog = Catalog(Layout(results))
        log(f"creating {n_images:,} files and their results ...")
        start = time.perf_counter()
        make_library(library, n_images)
        ingest_and_write(library, results, catalog, words, seed=1)
        first = catalog.shard_ids()[0]
        write_thumbnails(results, first, 1000)
        built = time.perf_counter() - start
        log(f"  {built:.0f} s; building the index ...")
        index_build = measure(lambda: update_index(Layout(results), library, threads=2), 1)
        port = free_port()
        server = start_server(results, library, port)
        time.sleep(STARTUP_WAIT_S)
        texts = [words.text(2) for _ in range(REQUESTS + 1)]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                rows = measured(client, texts, first)
            rows += library_calls(results, texts)
        finally:
            server.terminate()
            server.wait(30)
    return [
        Row("synthetic library + results written", built, "s", f"{n_images:,} images"),
        Row("index build", index_build.best, "s", f"{n_images:,} images"),
        *rows,
    ]


def measured(client: httpx.Client, texts: list[str], shard: str) -> list[Row]:
    rows = []
    for name, mode, extra in (
        ("search API, text", "text", ""),
        ("search API, hybrid", "hybrid", ""),
        ("search API, hybrid + filters", "hybrid", "&camera=X-T4&after=2021&min_aesthetic=4"),
    ):
        rows += latency(client, name, [f"/api/search?q={t}&mode={mode}{extra}" for t in texts])
    for mode in ("text", "hybrid"):
        name = f"search page (HTML, 48 results), {mode}"
        rows += latency(client, name, [f"/?q={t}&mode={mode}" for t in texts])
    thumbnails = [f"/thumbnail/{shard}/{i % 1000}" for i in range(len(texts))]
    return rows + latency(client, "thumbnail", thumbnails)


def library_calls(results: Path, texts: list[str]) -> list[Row]:
    """The same searches through ``SearchIndex.search`` in this process, no server: what the
    ranking itself costs on this machine now (the server's share is the difference)."""
    index = SearchIndex(Layout(results))
    vectors = np.random.default_rng(2).standard_normal((len(texts), DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for mode in ("text", "hybrid"):
        seconds = []
        for i, text in enumerate(texts):
            start = time.perf_counter()
            index.search(text, mode, None, 49, lambda _text, i=i: vectors[i])
            seconds.append(time.perf_counter() - start)
        seconds = seconds[1:]  # the first one warms
        name = f"SearchIndex.search alone, {mode}"
        rows.append(Row(f"{name} p50", statistics.median(seconds) * 1e3, "ms", "no server"))
        rows.append(Row(f"{name} p95", float(np.percentile(seconds, 95)) * 1e3, "ms", ""))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(*argv[1:4])
        return
    parser = bench_parser(__doc__, "20,000 images")
    parser.add_argument("--images", type=int, default=500_000, help="library size (500,000)")
    args = parser.parse_args(argv)
    n_images = 20_000 if args.quick else args.images
    if not args.json:
        log(machine_description())
    publish(f"web server ({n_images:,} images)", run(n_images), args.json)


if __name__ == "__main__":
    sys.exit(main())
