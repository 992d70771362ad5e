"""Preflight: every configured model located before any job, one message for all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from imganalyzer.config import validate_config
from imganalyzer.runtime.preflight import ModelsMissing, check_models, modules_without
from imganalyzer.runtime.weights import chosen


def download_host(module: str, config: dict) -> str | None:
    kind, names = chosen(module, config)
    return kind.host(*names)


def configured(**sections) -> dict:
    """A validated config: the schema's defaults, with ``sections``."""
    return validate_config({"library": "."} | sections, check_paths=False)


def never_reachable(host: str) -> bool:
    return False


def always_reachable(host: str) -> bool:
    return True


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def local_models(tmp_path: Path) -> dict:
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    head = tmp_path / "head.pth"
    head.write_bytes(b"weights")
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "det.onnx").write_bytes(b"onnx")
    return {
        "modules": ["metadata", "embedding", "aesthetic", "faces"],
        "embedding": {"model": f"local-dir:{clip}", "pretrained": None},
        "aesthetic": {"weights": str(head)},
        "faces": {"pack": str(pack)},
    }


def test_local_models_pass_without_touching_the_network(tmp_path: Path) -> None:
    def no_network(host: str) -> bool:
        raise AssertionError(f"asked the network for {host}")

    check_models(configured(**local_models(tmp_path)), reachable=no_network)


def test_every_missing_model_is_listed_once_with_where_and_how(
    tmp_path: Path, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMGANALYZER_TEST_KEY", raising=False)
    config = local_models(tmp_path) | {
        "modules": ["metadata", "embedding", "aesthetic", "objects", "ocr", "faces", "cloud"],
        "embedding": {"model": f"local-dir:{tmp_path / 'gone'}"},
        "objects": {"model": "IDEA-Research/grounding-dino-tiny"},
        "ocr": {"backend": "rapidocr"},
        "cloud": {"api_key_env": "IMGANALYZER_TEST_KEY"},
    }
    with pytest.raises(ModelsMissing) as raised:
        check_models(configured(**config), reachable=never_reachable)
    message = str(raised.value)
    assert message.count("Configured models are missing") == 1
    assert f"embedding: local-dir:{tmp_path / 'gone'}:" in message
    assert "objects: IDEA-Research/grounding-dino-tiny" in message
    assert "huggingface.co cannot be reached" in message
    assert "cloud:" in message and "$IMGANALYZER_TEST_KEY" in message
    assert str(empty_hf_cache) in message  # where it was looked for
    assert "imganalyzer models fetch" in message
    # without embedding there is no aesthetic; without objects no OCR
    assert "modules='[metadata, faces]'" in message
    assert "aesthetic:" not in message and "faces:" not in message


def test_offline_never_probes_the_network(
    tmp_path: Path, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = configured(modules=["objects"], objects={"model": "org/repo"})
    started = time.monotonic()
    with pytest.raises(ModelsMissing, match="HF_HUB_OFFLINE is set"):
        check_models(config, reachable=lambda host: pytest.fail("probed the network"))
    assert time.monotonic() - started < 5


def test_a_downloadable_model_passes_when_its_host_answers(empty_hf_cache: Path) -> None:
    config = configured(modules=["objects", "captions"], objects={"model": "org/repo"})
    check_models(config, reachable=always_reachable)  # the job downloads it


def test_download_hosts(tmp_path: Path) -> None:
    url = "https://example.org/weights/head.pth"
    assert download_host("aesthetic", configured(aesthetic={"weights": url})) == "example.org"
    assert download_host("aesthetic", configured(aesthetic={"weights": str(tmp_path)})) is None
    assert download_host("faces", configured(faces={"pack": "buffalo_l"})) == "github.com"
    assert download_host("objects", configured(objects={"model": "/models/gdino"})) is None
    trocr = {"backend": "trocr", "trocr_model": "microsoft/trocr"}
    assert download_host("ocr", configured(ocr=trocr)) == "huggingface.co"
    assert download_host("ocr", configured()) is None  # rapidocr: inside its wheel


def test_modules_without_drops_dependents() -> None:
    config = {"modules": ["metadata", "embedding", "aesthetic", "objects", "ocr", "duplicates"]}
    assert modules_without(config, {"objects"}) == [
        "metadata",
        "embedding",
        "aesthetic",
        "duplicates",
    ]
