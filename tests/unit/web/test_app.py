"""The application: security headers on every page, static files."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_pages_send_security_headers(client: TestClient) -> None:
    response = client.get("/status")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
