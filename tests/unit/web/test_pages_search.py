"""The search pages and their JSON over a hand-written results folder (tests/unit/web/
conftest.py): words, filters, modes, paging."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

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
