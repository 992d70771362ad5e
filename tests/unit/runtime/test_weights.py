"""Locating and fetching weights files and InsightFace packs: a local path, a URL cached in
torch hub's checkpoints (fetched from a file:// URL here), offline mode, and the message of a
missing model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.hub

from imganalyzer.config import validate_config
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelNotFoundError
from imganalyzer.runtime.weights import (
    Cache,
    cache,
    downloads_allowed,
    hub_cache,
    is_url,
    locate_insightface,
    locate_weights_file,
    url_host,
    weights_file,
)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch hub's folder in tmp_path, for the duration of a test."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_a_local_weights_file_is_found_or_named_missing(tmp_path: Path) -> None:
    head = tmp_path / "head.pth"
    head.write_bytes(b"weights")
    assert weights_file("aesthetic", str(head)) == head
    location = locate_weights_file("aesthetic", str(tmp_path / "gone.pth"))
    assert not location.present and location.model == "gone.pth"
    with pytest.raises(ModelNotFoundError) as caught:
        weights_file("aesthetic", str(tmp_path / "gone.pth"))
    assert "no such file" in str(caught.value) and FETCH_COMMAND in str(caught.value)


def test_a_url_is_downloaded_once_into_the_hub_checkpoints(hub: Path, tmp_path: Path) -> None:
    served = tmp_path / "served" / "sac+logos.pth"
    served.parent.mkdir()
    served.write_bytes(b"the head")
    url = served.parent.as_uri() + "/sac%2Blogos.pth"  # quoted, as LAION's URL is
    location = locate_weights_file("aesthetic", url)
    assert location.path == hub / "checkpoints" / "sac+logos.pth" and not location.present
    assert url in location.source
    path = weights_file("aesthetic", url)
    assert path.read_bytes() == b"the head" and locate_weights_file("aesthetic", url).present
    served.unlink()
    assert weights_file("aesthetic", url) == path  # cached: not fetched again


def test_offline_a_missing_url_is_not_fetched(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not downloads_allowed()
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        weights_file("aesthetic", (tmp_path / "x.pth").as_uri())
    assert not (hub / "checkpoints").exists()


@pytest.mark.parametrize(("value", "allowed"), [("", True), ("0", True), ("1", False),
                                                ("true", False), ("ON", False)])  # fmt: skip
def test_downloads_follow_hf_hub_offline(
    value: str, allowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert downloads_allowed() is allowed


def test_urls_and_paths_are_told_apart() -> None:
    assert is_url("https://example.org/a.pth") and is_url("file:///tmp/a.pth")
    assert not is_url("/tmp/a.pth") and not is_url("ViT-L-14") and not is_url("C:/a.pth")


def test_an_insightface_pack_is_a_folder_of_onnx_files_or_a_name_under_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mypack"
    folder.mkdir()
    assert not locate_insightface(str(folder)).present  # no .onnx files yet
    (folder / "det.onnx").write_bytes(b"onnx")
    assert locate_insightface(str(folder)).present
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "home"))
    named = locate_insightface("buffalo_l")
    assert named.path == tmp_path / "home" / "models" / "buffalo_l" and not named.present


def test_a_download_host_is_its_name_for_https_else_its_origin() -> None:
    assert url_host("https://huggingface.co/org/repo") == "huggingface.co"
    assert url_host("https://huggingface.co:443/x") == "huggingface.co"
    assert url_host("https://mirror.example:8443") == "https://mirror.example:8443"
    assert url_host("http://user@mirror.example/hub") == "http://mirror.example"
    assert url_host("file:///tmp/head.pth") is None


def test_each_downloadable_kind_names_the_cache_a_download_fills(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "face"))
    config = validate_config(
        {
            "library": ".",
            "modules": ["embedding", "aesthetic", "objects", "faces"],
            "embedding": {"model": "hf-hub:org/clip"},
            "aesthetic": {"weights": "https://example.org/head.pth"},
            "objects": {"model": "org/gdino"},
        },
        check_paths=False,
    )
    caches = {module: cache(module, config) for module in config["modules"]}
    assert caches["embedding"] == caches["objects"] == hub_cache()
    assert caches["aesthetic"] == Cache(
        "torch hub checkpoints", hub / "checkpoints", "$TORCH_HOME/hub/checkpoints"
    )
    assert caches["faces"] == Cache(
        "InsightFace model packs", tmp_path / "face" / "models", "$INSIGHTFACE_HOME/models"
    )
    config["objects"]["model"] = str(tmp_path)  # a local folder is not downloaded
    config["faces"]["pack"] = str(tmp_path)
    assert cache("objects", config) is None and cache("faces", config) is None
