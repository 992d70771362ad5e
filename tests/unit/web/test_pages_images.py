"""The image pages: an image's details, boxes and people, its thumbnail and tier with
caching headers, a hostile file name shown as text."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

from .conftest import FACE_BOX, HOSTILE, PARIS


def shown_paths(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'<span class="path">([^<]*)</span>', page)]


def test_thumbnails_carry_caching_headers(client: TestClient) -> None:
    card = client.get("/api/search", params={"q": "eiffel", "mode": "text"}).json()["hits"][0]
    first = client.get(card["thumbnail"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert "immutable" in first.headers["cache-control"]
    again = client.get(card["thumbnail"], headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/thumbnail/000001-00000/999").status_code == 404
    assert client.get("/thumbnail/..%2F..%2Fetc/1").status_code == 404


def test_hostile_file_name_is_shown_as_text(client: TestClient) -> None:
    for page in (
        client.get("/search", params={"q": "hostile", "mode": "text"}).text,
        client.get("/view", params={"path": HOSTILE}).text,
        client.get("/").text,
    ):
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page


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
