"""Rendering: a page knows its place in the menu and carries the server's CSRF token into
its forms; a missing thing is a 404 page whose message is escaped text."""

from __future__ import annotations

import html
import re

from starlette.testclient import TestClient

from .conftest import csrf_of


def test_a_page_marks_its_menu_entry_and_carries_the_csrf_token(client: TestClient) -> None:
    page = client.get("/duplicates").text
    tokens = set(re.findall(r'name="csrf" value="([^"]+)"', page))
    assert tokens == {csrf_of(client)}
    assert re.findall(r'<a href="([^"]*)" aria-current="page">', page) == ["/duplicates"]


def test_a_missing_thing_is_a_404_page_with_its_message_as_text(client: TestClient) -> None:
    response = client.get("/image", params={"path": "<b>nope</b>.jpg"})
    assert response.status_code == 404
    message = re.search(r'<p class="message">(.*?)</p>', response.text, re.S).group(1)
    assert "<b>" not in message and "nope" in html.unescape(message)
    assert client.get("/people/999").status_code == 404
