"""`imganalyzer serve` in a real browser (Debian's Chromium driven by Playwright) over a
results folder the workflow wrote for the example library with tiny models."""

from __future__ import annotations

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
from imganalyzer.steps import people as people_module
from imganalyzer.web import create_app
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
# Set to a folder to save the README's screenshots there.
SCREENSHOTS = os.environ.get("IMGANALYZER_SCREENSHOTS")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict) -> Workspace:
    """The example library plus a copy, a face-like image and a hostile file name."""
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
    """The page, failing the test on a console error, a script error or a failed request."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else 0)
    page.on("pageerror", lambda e: problems.append(f"script: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else 0)
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    yield page
    assert problems == []


def shown_paths(page) -> set[str]:  # noqa: ANN001
    return set(page.locator("ul.grid .path").all_inner_texts())


def test_search_by_exif_word_shows_the_right_thumbnails(watched, server: str) -> None:
    watched.goto(f"{server}/")
    watched.fill("input[name=q]", "nikon")
    watched.check("input[value=text]")  # submits the form by itself (app.js)
    watched.wait_for_url(re.compile(r"mode=text"))
    assert shown_paths(watched) == NIKON
    assert f"{len(NIKON)} images match" in watched.inner_text("#count")
    for image in watched.locator("ul.grid img").all():
        assert image.evaluate("i => i.complete && i.naturalWidth > 0")
    if SCREENSHOTS:
        watched.goto(f"{server}/?q=&mode=text")
        watched.screenshot(path=f"{SCREENSHOTS}/serve-search.png")


def test_image_page_shows_metadata_and_boxes(watched, server: str) -> None:
    watched.goto(f"{server}/?q=canon&mode=text")
    watched.click(f"ul.grid a:has-text('{ORIGINAL}')")
    watched.wait_for_url(re.compile(r"/image\?path="))
    assert watched.inner_text("h1") == ORIGINAL
    facts = watched.inner_text("dl.metadata")
    assert "Canon EOS R5" in facts and "RF24-105mm F4 L IS USM" in facts and "48.8583" in facts
    assert watched.locator("svg.boxes rect").count() > 0
    assert watched.evaluate("document.getElementById('picture').naturalWidth") > 0
    watched.uncheck("#toggle-boxes")
    assert not watched.locator("svg.boxes").is_visible()
    watched.check("#toggle-boxes")
    if SCREENSHOTS:
        watched.screenshot(path=f"{SCREENSHOTS}/serve-image.png")


def test_named_person_is_found_after_index(watched, server: str, analysed: Workspace) -> None:
    people = people_module.load_people(analysed.results)
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
    watched.goto(f"{server}/people/{person.id}")
    subprocess.run(
        [sys.executable, "-m", "imganalyzer.cli", "index", "--results", str(analysed.results)],
        check=True, env=_env(), capture_output=True, timeout=300,
    )  # fmt: skip
    watched.goto(f"{server}/?q=alice&mode=text")
    assert shown_paths(watched) == paths


def test_duplicate_group_shows_its_keeper(watched, server: str) -> None:
    watched.goto(f"{server}/duplicates")
    groups = watched.locator("section.dupgroup").filter(has_text="exact group")
    group = groups.filter(has=watched.get_by_text(COPY, exact=True))
    assert set(group.locator(".path").all_inner_texts()) == {ORIGINAL, COPY}
    keeper = group.locator(".card.keeper")
    assert keeper.count() == 1 and "keeper" in keeper.inner_text()


def test_hostile_file_name_renders_as_text(watched, server: str) -> None:
    watched.goto(f"{server}/?q=onerror&mode=text")
    assert HOSTILE in shown_paths(watched)
    watched.click("ul.grid a")
    assert watched.inner_text("h1") == HOSTILE
    assert watched.locator("img[src=x]").count() == 0


def test_every_page_loads_cleanly(watched, server: str) -> None:
    for path in ("/", "/?q=coffee", "/people", "/duplicates", "/status", f"/image?path={FACES}"):
        watched.goto(server + path)
        watched.wait_for_load_state("networkidle")
