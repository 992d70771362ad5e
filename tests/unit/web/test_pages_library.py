"""The library pages: people and their edits, duplicate groups with keepers and the delete
list, status."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from imganalyzer.steps import people as people_module
from tests.support.results_library import ResultsLibrary

from .conftest import PARIS, csrf_of


def test_people_edits_need_the_csrf_token(client: TestClient, site: ResultsLibrary) -> None:
    refused = client.post("/people/name", data={"id": "2", "value": "Mallory"})
    assert refused.status_code == 403
    assert people_module.load_edits(site.layout).names == {}
    done = client.post(
        "/people/name", data={"id": "2", "value": "Carol <b>", "csrf": csrf_of(client)}
    )
    assert done.status_code == 200 and "Carol &lt;b&gt;" in done.text
    assert people_module.load_edits(site.layout).names == {2: "Carol <b>"}  # the CLI's file
    assert people_module.load_people(site.layout).people[2].name == "Carol <b>"
    page = client.get("/people").text
    assert '<span class="name">Carol &lt;b&gt;</span>' in page
    assert "4 faces in 4 images" in page
    assert client.get("/face/1.jpg").status_code == 200
    assert client.get("/face/2.jpg").status_code == 404  # no crop


def test_people_grid_shows_face_crops_and_unnamed_clusters(client: TestClient) -> None:
    person = client.get("/people/2").text
    assert person.count('<input type="checkbox" name="faces"') == 4
    people = client.get("/people").text
    assert "Who are they?" in people and 'src="/faces/face0.jpg"' in people


def test_duplicates_keeper_and_delete_list(client: TestClient, site: ResultsLibrary) -> None:
    page = client.get("/duplicates").text
    assert re.search(r'card keeper">\s*<a href="/view\?path=2021/paris/IMG_0001.jpg"', page)
    assert client.get("/duplicates/delete-list.txt").text == PARIS[1] + "\n"
    group = re.search(r'name="group" value="([0-9a-f]+)"', page).group(1)
    picked = client.post(
        "/duplicates/keeper", data={"group": group, "keeper": PARIS[1], "csrf": csrf_of(client)}
    )
    assert picked.status_code == 200
    assert client.get("/duplicates/delete-list.txt").text == PARIS[0] + "\n"
    csv_text = client.get("/duplicates/delete-list.csv").text
    assert csv_text.splitlines()[1].startswith(f"{PARIS[0]},near,{PARIS[1]},")
    assert all((site.library / p).is_file() for p in PARIS)  # nothing deleted


def test_status_page_and_api(client: TestClient) -> None:
    status = client.get("/api/status").json()
    assert status["current"] == 6 and status["mounted"]
    assert status["modules"]["metadata"]["done"] == 6
    assert "<progress" in client.get("/status").text
