"""Merge, alias and split from the pages; status errors by kind; the serve command."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from imganalyzer.cli.main import main
from imganalyzer.config import record_run_config
from imganalyzer.steps import people as people_module
from imganalyzer.web import app as app_module
from imganalyzer.web import create_app
from tests.support.results_library import ResultsLibrary

from .conftest import config_of, write_people


@pytest.fixture
def fresh(site: ResultsLibrary) -> TestClient:
    """A client over the site with its people file as the fixture wrote it."""
    site.layout.people_edits.unlink(missing_ok=True)
    shard = site.catalog.shard_ids()[0]
    write_people(site, shard, [e.path for e in site.catalog.read(shard)])
    return TestClient(create_app(config_of(site)), base_url="http://127.0.0.1")


def post(client: TestClient, action: str, **form) -> str:
    response = client.post(f"/people/{action}", data={**form, "csrf": client.app.state.csrf})
    assert response.status_code == 200
    return response.text


def test_alias_merge_and_split_write_the_cli_edits(fresh: TestClient, site) -> None:
    post(fresh, "alias", id="1", value="Ally")
    assert people_module.load_edits(site.layout).aliases == {1: ["Ally"]}
    page = post(fresh, "merge", ids=["1", "2"])
    assert "merge: person 1 now has 6 faces" in page
    assert people_module.load_edits(site.layout).merged == {2: 1}
    faces = fresh.get("/people/1").text
    assert faces.count('name="faces"') == 6
    page = post(fresh, "split", id="1", faces=["face3", "face4"])
    assert "now has 2 faces" in page
    people = people_module.load_people(site.layout)
    assert sorted(len(p.faces) for p in people.people.values()) == [2, 4]


def test_bad_edits_are_reported_not_raised(fresh: TestClient) -> None:
    assert "not done: no person 99" in post(fresh, "name", id="99", value="X")
    assert "not done: merge needs at least two different people" in post(fresh, "merge", ids=["1"])
    assert "not done: name: give a name" in post(fresh, "name", id="1", value=" ")
    assert "not done: unknown action" in post(fresh, "rename", id="1")


def test_status_groups_errors_by_kind(fresh: TestClient) -> None:
    status = fresh.get("/api/status").json()
    assert status["error_groups"] == [
        {"module": "embedding", "error": "not decoded", "count": 1, "paths": ["scans/old.jpg"]}
    ]
    assert "not decoded (1)" in fresh.get("/status").text


def test_serve_on_another_address_prints_a_token(site, monkeypatch, capsys) -> None:
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.update(app=app, **kw))
    record_run_config(config_of(site))
    assert main(["serve", "--results", str(site.results), "--host", "0.0.0.0"]) == 0
    assert started["host"] == "0.0.0.0" and started["port"] == 8765
    printed = capsys.readouterr().err
    token = printed.split("?token=")[1].strip()
    assert len(token) >= 24
    client = TestClient(started["app"], base_url="http://192.0.2.1")
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert app_module.is_loopback("127.0.0.1") and not app_module.is_loopback("0.0.0.0")
