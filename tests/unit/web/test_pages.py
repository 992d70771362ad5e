"""The pages and their JSON over a hand-written results folder."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

from imganalyzer.steps import people as people_module
from tests.support.results_library import ResultsLibrary

from .conftest import FACE_BOX, HOSTILE, csrf_of

PARIS = ["2021/paris/IMG_0001.jpg", "2021/paris/IMG_0002.jpg"]


def shown_paths(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'<span class="path">([^<]*)</span>', page)]


def test_search_by_an_exif_word_shows_the_matching_thumbnails(client: TestClient) -> None:
    page = client.get("/search", params={"q": "fujifilm", "mode": "text"})
    assert page.status_code == 200
    assert sorted(shown_paths(page.text)) == PARIS
    assert "2 images match" in page.text
    assert len(re.findall(r'src="/thumbnail/\d{6}-\d{5}/\d+\?v=\d+"', page.text)) == 2


def test_search_api_takes_the_cli_filters(client: TestClient) -> None:
    found = client.get("/api/search", params={"q": "", "mode": "text", "camera": "Canon"})
    assert [h["path"] for h in found.json()["hits"]] == ["2022/home/cat.jpg"]
    found = client.get("/api/search", params={"mode": "text", "after": "2022", "lens": "x"})
    assert found.json()["hits"] == [] and found.json()["total"] == 0
    nobody = client.get("/api/search", params={"mode": "text", "person": "x"})  # as the CLI says
    assert nobody.status_code == 400 and "no person has a name yet" in nobody.json()["error"]
    bad = client.get("/api/search", params={"q": "x", "after": "soon"})
    assert bad.status_code == 400 and "after: not a date" in bad.json()["error"]


def test_semantic_modes_are_disabled_with_the_reason(client: TestClient) -> None:
    page = client.get("/search", params={"q": "cat", "mode": "hybrid"})
    assert "semantic and hybrid off: the CLIP model could not be loaded" in page.text
    assert re.search(r'value="semantic"\s+disabled', page.text)
    assert "cat.jpg" in page.text  # fell back to text search


def test_paging_and_count(client: TestClient) -> None:
    result = client.get("/api/search", params={"q": "", "mode": "text"}).json()
    assert result["total"] == 6 and len(result["hits"]) == 6 and not result["more"]
    far = client.get("/api/search", params={"q": "", "mode": "text", "page": "9"}).json()
    assert far["hits"] == [] and far["page"] == 9


def test_thumbnails_carry_caching_headers(client: TestClient) -> None:
    card = client.get("/api/search", params={"q": "eiffel", "mode": "text"}).json()["hits"][0]
    first = client.get(card["thumbnail"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert "immutable" in first.headers["cache-control"]
    again = client.get(card["thumbnail"], headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/thumbnail/000001-00000/999").status_code == 404
    assert client.get("/thumbnail/..%2F..%2Fetc/1").status_code == 404


def test_viewer_shows_metadata_boxes_and_people(client: TestClient) -> None:
    page = client.get("/view", params={"path": PARIS[0]}).text
    assert "X-T4" in page and "XF23mmF2 R WR" in page and "48.85840, 2.29450" in page
    assert "Saturday 5 June 2021, 18:30:00" in page and "UTC+02:00" in page
    assert 'viewBox="0 0 600 400"' in page
    x0, y0, x1, y1 = FACE_BOX
    assert f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"' in page
    assert "cat 0.90" in page and "person 1" in page
    assert "the eiffel tower at sunset" in page
    assert "keep</strong>" in page  # its duplicate group with the keeper
    details = client.get("/api/image", params={"path": PARIS[0]}).json()
    assert {b["kind"] for b in details["boxes"]} == {"object", "face"}
    tier = client.get(details["tier"])
    assert tier.status_code == 200 and tier.content[:2] == b"\xff\xd8"
    assert client.get("/view", params={"path": "nope.jpg"}).status_code == 404
    old = client.get("/image", params={"path": PARIS[0]}, follow_redirects=False)
    assert old.status_code == 307 and old.headers["location"].startswith("/view?path=")


def test_hostile_file_name_is_shown_as_text(client: TestClient) -> None:
    for page in (
        client.get("/search", params={"q": "hostile", "mode": "text"}).text,
        client.get("/view", params={"path": HOSTILE}).text,
        client.get("/").text,
    ):
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page


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


def test_pages_send_security_headers(client: TestClient) -> None:
    response = client.get("/status")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
