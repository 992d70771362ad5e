"""`imganalyzer serve` in a real browser (Debian's Chromium driven by Playwright) over a
results folder the workflow wrote for the example library with tiny models, plus corrupt
files, a copy, a face-like image and a hostile file name: the timeline, viewer, explore,
map, people, search, duplicates and status pages, on a desktop and a 390 px phone."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from imganalyzer.config import default_config, load_run_config
from imganalyzer.example.library import EXAMPLE_EXIF, build_example_library
from imganalyzer.layout import Layout
from imganalyzer.steps import people as people_module
from imganalyzer.web import create_app
from imganalyzer.web.pages_library import FACES_ON_PAGE
from tests.support.tiny_groundingdino import build_tiny_groundingdino
from tests.support.tiny_insightface import build_tiny_insightface

from .conftest import Workspace, _env, make_workspace
from .test_all_modules import FACES, bright_cells

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
HOSTILE = "2024/home/<img src=x onerror=alert(1)>.jpg"
ORIGINAL = "2023/holiday/IMG_2041.JPG"
COPY = "2023/holiday/IMG_2041 copy.JPG"
NIKON = {p for p, exif in EXAMPLE_EXIF.items() if "nikon" in f"{exif.make} {exif.model}".lower()}
CANON = {p for p, exif in EXAMPLE_EXIF.items() if exif.make == "Canon"} | {COPY}
TRUNCATED = "bad/truncated.jpg"
BAD = {TRUNCATED, "bad/empty.jpg", "bad/notes.jpg"}
SECOND_FACES = "people/second.jpg"
PHONE = {"width": 390, "height": 844}
# Set to a folder to save the README's screenshots there.
SCREENSHOTS = os.environ.get("IMGANALYZER_SCREENSHOTS")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict) -> Workspace:
    """The example library plus a copy, a face-like image, a hostile file name and three
    files that cannot be decoded."""
    folder = tmp_path_factory.mktemp("web_models")
    prompts = default_config()["objects"]["prompts"]
    vision = {
        "objects": {"model": str(build_tiny_groundingdino(folder / "groundingdino")),
                    "box_threshold": 0.05, "text_threshold": 0.05, "text_labels": prompts,
                    "person_labels": prompts, "batch_size": 2},
        "faces": {"pack": str(build_tiny_insightface(folder / "faces")), "min_face_size": 8},
        "people": {"min_cluster_size": 1},
    }  # fmt: skip
    modules = ["metadata", "technical", "embedding", "aesthetic", "objects", "faces", "duplicates"]
    config = tiny_models | vision | {"modules": modules}
    ws = make_workspace(tmp_path_factory.mktemp("web"), **config)
    build_example_library(ws.library)
    shutil.copy2(ws.library / ORIGINAL, ws.library / COPY)
    shutil.copy2(ws.library / "2024/home/DSCF4410.JPG", ws.library / HOSTILE)
    from imganalyzer.example.writers import write_jpeg

    write_jpeg(ws.library / FACES, bright_cells())
    write_jpeg(ws.library / SECOND_FACES, bright_cells()[::-1].copy())
    good = (ws.library / ORIGINAL).read_bytes()
    (ws.library / "bad").mkdir()
    (ws.library / TRUNCATED).write_bytes(good[:4000])
    (ws.library / "bad/empty.jpg").write_bytes(b"")
    (ws.library / "bad/notes.jpg").write_text("a text file with an image extension\n")
    ws.snakemake()
    return ws


@pytest.fixture(scope="module")
def server(analysed: Workspace) -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn in a thread."""
    app = create_app(load_run_config(analysed.results))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    uvicorn_server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def watched(page, server: str):  # noqa: ANN001, ANN201
    """The page, failing the test on a console error, a script error, a failed request or
    a broken image."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else 0)
    page.on("pageerror", lambda e: problems.append(f"script: {e}"))
    # a load the browser cancels because the page was left (ERR_ABORTED) is no failure
    page.on(
        "requestfailed",
        lambda r: (
            problems.append(f"failed: {r.url} {r.failure}")
            if "ABORTED" not in str(r.failure)
            else 0
        ),
    )
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else 0)
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    yield page
    assert problems == []


def broken_images(page) -> list[str]:  # noqa: ANN001
    """The addresses of the page's images that do not decode (lazy ones are loaded first)."""
    return page.evaluate(
        """() => Promise.all([...document.images].map(i => {
             i.loading = "eager";
             return i.decode().then(() => i.naturalWidth > 0 ? null : i.src, () => i.src);
           })).then(found => found.filter(Boolean))"""
    )


def sideways_scroll(page) -> int:  # noqa: ANN001
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def results_rows(ws: Workspace, module: str) -> dict[str, dict]:
    from imganalyzer.results import read_rows

    found: dict[str, dict] = {}
    for path in sorted((ws.results / module).glob("*.jsonl")):
        found.update({row["path"]: row for row in read_rows(path)})
    return found


def shot(page, name: str) -> None:  # noqa: ANN001
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/{name}.png")


def tile_paths(page) -> list[str]:  # noqa: ANN001
    return page.locator("ul.jgrid li.tile a").evaluate_all("links => links.map(a => a.title)")


def test_timeline_shows_month_groups_newest_first(watched, server: str, analysed) -> None:
    watched.goto(f"{server}/")
    months = watched.locator("section.month").evaluate_all("s => s.map(m => m.dataset.month)")
    assert months == sorted(months, reverse=True) and len(months) >= 5
    assert {"2024-05", "2023-07"} <= set(months)  # the Ricoh, the Canons in Paris
    # files without a capture date are dated by their file time (today), and say so
    assert "dated by file time" in watched.locator("section.month").first.inner_text()
    shown = tile_paths(watched)
    assert set(shown) == set(results_rows(analysed, "metadata"))
    assert shown.index("2024/home/R0001234.DNG") < shown.index(ORIGINAL)
    for bad in BAD:  # a placeholder naming the error, never a broken image
        tile = watched.locator(f"li.tile:has(a[title='{bad}'])")
        assert tile.locator("img").count() == 0
        assert tile.locator(".placeholder .kind").inner_text().strip() != ""
    kind = watched.locator(f"li.tile:has(a[title='{TRUNCATED}']) .kind").text_content()
    assert kind == "truncated"
    assert broken_images(watched) == []
    shot(watched, "serve-timeline")
    watched.click("text=errors only")
    watched.wait_for_url(re.compile(r"errors=1"))
    assert set(tile_paths(watched)) >= BAD and ORIGINAL not in tile_paths(watched)


def test_viewer_keys_move_through_the_timeline(watched, server: str) -> None:
    watched.goto(f"{server}/")
    order = tile_paths(watched)
    watched.click(f"li.tile a[title='{order[0]}']")
    watched.wait_for_url(re.compile(r"/view\?path="))
    assert watched.inner_text("aside.info h1") == order[0]
    watched.keyboard.press("ArrowRight")
    watched.wait_for_function(f"document.querySelector('aside.info h1').innerText === {order[1]!r}")
    watched.keyboard.press("ArrowRight")
    watched.wait_for_function(f"document.querySelector('aside.info h1').innerText === {order[2]!r}")
    watched.keyboard.press("ArrowLeft")
    watched.wait_for_function(f"document.querySelector('aside.info h1').innerText === {order[1]!r}")
    opened = watched.evaluate("document.body.classList.contains('info-open')")
    watched.keyboard.press("i")
    assert watched.evaluate("document.body.classList.contains('info-open')") != opened
    watched.keyboard.press("i")
    watched.keyboard.press("Escape")
    watched.wait_for_url(re.compile(r"/(\?.*)?#i-[0-9a-f]+$"))
    assert watched.locator("section.month").count() > 0


def test_info_panel_reads_like_a_photographer(watched, server: str) -> None:
    watched.goto(f"{server}/view?path={ORIGINAL}")
    watched.wait_for_load_state("networkidle")
    info = watched.inner_text("aside.info")
    assert "1/250 s · f/5.6 · 50 mm · ISO 400" in info
    assert "Canon EOS R5" in info and "RF24-105mm F4 L IS USM" in info
    assert "Friday 14 July 2023, 18:03:22" in info and "UTC+02:00" in info
    assert "Paris" in info and "on the map" in info
    assert watched.evaluate("document.getElementById('picture').naturalWidth") > 0
    shot(watched, "serve-viewer")
    watched.goto(f"{server}/view?path={TRUNCATED}")
    assert watched.locator(".stage .placeholder .kind").text_content() == "truncated"


def test_map_shows_the_gps_photos(watched, server: str, analysed) -> None:
    gps = {p for p, r in results_rows(analysed, "metadata").items() if r.get("gps_latitude")}
    assert len(gps) >= 6
    watched.goto(f"{server}/map")
    counts = watched.locator("svg.map .cluster text").all_text_contents()
    assert sum(int(c) for c in counts) == len(gps)
    assert watched.locator("svg.map .land path").count() > 100
    shot(watched, "serve-map")
    watched.click("#show-area")
    watched.wait_for_url(re.compile(r"box="))
    assert set(tile_paths(watched)) == gps
    watched.goto(f"{server}/map")
    watched.locator("svg.map .cluster").first.click()  # zooms into that cluster
    watched.wait_for_url(re.compile(r"/map\?box="))
    assert watched.locator("svg.map .cluster").count() >= 1


def test_explore_opens_filtered_grids(watched, server: str, analysed) -> None:
    watched.goto(f"{server}/explore")
    for section in ("people", "places", "things", "cameras", "lenses", "years"):
        assert watched.locator(f"section#{section}").count() == 1, section
    assert broken_images(watched) == []
    shot(watched, "serve-explore")
    metadata = results_rows(analysed, "metadata")
    canon = {p for p, row in metadata.items() if row.get("camera") == "Canon EOS R5"}
    assert canon >= CANON  # and the truncated copy of a Canon photo: its EXIF survived
    watched.click("section#cameras a:has-text('Canon EOS R5')")
    watched.wait_for_url(re.compile(r"camera="))
    assert set(tile_paths(watched)) == canon
    watched.goto(f"{server}/explore")
    france = {p for p, row in metadata.items() if row.get("country") == "France"}
    assert len(france) >= 3
    watched.click("section#places > ul.covers > li > a:has-text('France')")
    watched.wait_for_url(re.compile(r"country=France"))
    assert set(tile_paths(watched)) == france
    watched.goto(f"{server}/explore")
    watched.click("section#years a:has-text('2024')")
    watched.wait_for_url(re.compile(r"year=2024"))
    in_2024 = {
        p for p, row in metadata.items() if str(row.get("datetime_original")).startswith("2024")
    }
    assert set(tile_paths(watched)) == in_2024


def people_list(analysed) -> list[dict]:  # noqa: ANN001
    return json.loads(analysed.imganalyzer("people", "list", "--json").stdout)


def test_merging_two_people_changes_people_list(watched, server: str, analysed) -> None:
    before = people_list(analysed)
    if len(before) < 2:  # the tiny detector found one person: split one off to merge
        person = before[0]
        shown = json.loads(
            analysed.imganalyzer("people", "show", str(person["id"]), "--json").stdout
        )
        analysed.imganalyzer("people", "split", str(person["id"]), shown["faces"][0]["face"])
        before = people_list(analysed)
    assert len(before) >= 2
    first, second = sorted(p["id"] for p in before)[:2]
    watched.goto(f"{server}/people")
    assert broken_images(watched) == []
    shot(watched, "serve-people")
    watched.check(f"#person-{first} input[name=ids]")
    watched.check(f"#person-{second} input[name=ids]")
    watched.click("#merge-button")
    watched.wait_for_url(re.compile(r"/people\?message="))
    after = people_list(analysed)
    assert len(after) == len(before) - 1
    merged = next(p for p in after if p["id"] == first)
    faces = {p["id"]: p["n_faces"] for p in before}
    assert merged["n_faces"] == faces[first] + faces[second]
    assert second not in {p["id"] for p in after}
    watched.goto(f"{server}/people/{first}")
    assert watched.locator("ul.facegrid img").count() == min(merged["n_faces"], FACES_ON_PAGE)
    assert broken_images(watched) == []


def test_search_by_exif_word_shows_the_right_thumbnails(watched, server: str) -> None:
    watched.goto(f"{server}/search")
    watched.fill("input[name=q]", "nikon")
    watched.check("input[value=text]")  # submits the form by itself (app.js)
    watched.wait_for_url(re.compile(r"mode=text"))
    assert set(tile_paths(watched)) == NIKON
    assert f"{len(NIKON)} images match" in watched.inner_text("#count")
    assert broken_images(watched) == []
    ranked = tile_paths(watched)  # the two NIKON Z 6_2 photos and the Nikon LS-5000 slide scan
    watched.click(f"li.tile a[title='{ranked[0]}']")
    watched.wait_for_url(re.compile(r"from=search"))
    for number, path in enumerate(ranked, 1):  # → walks the ranking, and only the ranking
        watched.wait_for_function(f"document.querySelector('aside.info h1').innerText === {path!r}")
        assert watched.inner_text("header .where") == f"{number} / {len(ranked)}"
        assert watched.locator("#prev").count() == (number > 1)
        assert watched.locator("#next").count() == (number < len(ranked))
        watched.keyboard.press("ArrowRight")
    watched.goto(f"{server}/search?q=&mode=text")
    shot(watched, "serve-search")


def test_named_person_is_found_after_index(watched, server: str, analysed: Workspace) -> None:
    people = people_module.load_people(Layout(analysed.results))
    person = next(
        p for p in people.people.values() if FACES in {people.faces[f].path for f in p.faces}
    )
    paths = {people.faces[f].path for f in person.faces}
    watched.goto(f"{server}/people")
    card = watched.locator(f"#person-{person.id}")
    card.locator("input[name=value]").first.fill("Alice Example")
    card.locator("button:has-text('Name')").click()
    watched.wait_for_url(re.compile(r"/people\?message="))
    assert "Alice Example" in watched.inner_text(f"#person-{person.id} .name")
    subprocess.run(
        [sys.executable, "-m", "imganalyzer.cli", "index", "--results", str(analysed.results)],
        check=True, env=_env(), capture_output=True, timeout=300,
    )  # fmt: skip
    watched.goto(f"{server}/search?q=alice&mode=text")
    assert set(tile_paths(watched)) == paths


def test_duplicate_group_shows_its_keeper(watched, server: str) -> None:
    watched.goto(f"{server}/duplicates")
    groups = watched.locator("section.dupgroup").filter(has_text="exact group")
    group = groups.filter(has=watched.get_by_text(COPY, exact=True))
    assert set(group.locator(".path").all_inner_texts()) == {ORIGINAL, COPY}
    keeper = group.locator(".card.keeper")
    assert keeper.count() == 1 and "keeper" in keeper.inner_text()


def test_hostile_file_name_renders_as_text(watched, server: str) -> None:
    watched.goto(f"{server}/search?q=onerror&mode=text")
    assert HOSTILE in tile_paths(watched)
    watched.click("ul.jgrid a")
    assert watched.inner_text("aside.info h1") == HOSTILE
    assert watched.locator("img[src=x]").count() == 0
    watched.goto(f"{server}/")
    assert watched.locator("img[src=x]").count() == 0


PAGES = (
    "/",
    "/?errors=1",
    "/explore",
    "/explore/things",
    "/map",
    "/people",
    "/search?q=coffee",
    "/duplicates",
    "/status",
    f"/view?path={FACES}",
    f"/view?path={TRUNCATED}",
    f"/view?path={ORIGINAL}",
)


def test_every_page_loads_cleanly_on_a_desktop_and_a_phone(watched, server: str) -> None:
    for size in ({"width": 1280, "height": 900}, PHONE):
        watched.set_viewport_size(size)
        for path in PAGES:
            watched.goto(server + path)
            watched.wait_for_load_state("networkidle")
            assert broken_images(watched) == [], path
            assert sideways_scroll(watched) <= 0, (path, size)
    watched.goto(f"{server}/")
    shot(watched, "serve-phone-timeline")
    watched.goto(f"{server}/view?path={ORIGINAL}")
    shot(watched, "serve-phone-viewer")
