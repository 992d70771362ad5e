"""Face crops cut from the stored thumbnails."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_a_face_crop_is_a_jpeg_and_an_unknown_face_is_not_found(client: TestClient) -> None:
    crop = client.get("/faces/face0.jpg")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert client.get("/faces/nope.jpg").status_code == 404
