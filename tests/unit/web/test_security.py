"""Who may use the server and which files it sends."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.testclient import TestClient

from imganalyzer.web import create_app
from imganalyzer.web.security import inside
from tests.support.results_library import ResultsLibrary

from .conftest import config_of

INSIDE = "2021/paris/IMG_0001.jpg"


def test_originals_come_only_from_inside_the_library(
    client: TestClient, site: ResultsLibrary, tmp_path: Path
) -> None:
    found = client.get("/original", params={"path": INSIDE})
    assert found.status_code == 200
    assert found.content == (site.library / INSIDE).read_bytes()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    (site.library / "escape.jpg").symlink_to(secret)
    (site.library / "escape_dir").symlink_to(tmp_path, target_is_directory=True)
    for path in (
        "../results/run/config.yaml",
        "2021/../../results/index/state.json",
        str(secret),
        "/etc/passwd",
        "escape.jpg",
        "escape_dir/secret.jpg",
        "2021",
        "",
        "a\0b",
    ):
        response = client.get("/original", params={"path": path})
        assert response.status_code == 404, path
        assert b"secret" not in response.content


def test_inside_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert inside(tmp_path, "link/x.jpg") == tmp_path / "a" / "x.jpg"
    assert inside(tmp_path / "a", "../a/x.jpg") is None


def test_loopback_server_refuses_other_host_names(site: ResultsLibrary) -> None:
    app = create_app(config_of(site))
    assert TestClient(app, base_url="http://localhost").get("/status").status_code == 200
    rebound = TestClient(app, base_url="http://evil.example").get("/status")
    assert rebound.status_code == 403


def test_token_is_required_everywhere_when_set(site: ResultsLibrary) -> None:
    app = create_app(config_of(site), token="s3cret")
    client = TestClient(app, base_url="http://192.0.2.1")
    for path in ("/", "/status", "/api/search", "/static/app.css", "/original?path=" + INSIDE):
        assert client.get(path).status_code == 401, path
    assert client.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/status?token=s3cret&x=1", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/status?x=1"
    assert "imganalyzer_token" in first.headers["set-cookie"]
    assert client.get("/status").status_code == 200  # the cookie now


def test_csrf_token_of_another_server_is_refused(client: TestClient) -> None:
    response = client.post("/duplicates/keeper", data={"group": "x", "keeper": "y", "csrf": "z"})
    assert response.status_code == 403


def test_csrf_field_sent_as_a_file_is_refused(client: TestClient) -> None:
    token = client.app.state.csrf
    response = client.post(
        "/duplicates/keeper",
        data={"group": "x", "keeper": "y"},
        files={"csrf": ("token.txt", token.encode(), "text/plain")},
    )
    assert response.status_code == 403
