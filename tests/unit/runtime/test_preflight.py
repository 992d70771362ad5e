"""Preflight: every configured model located before any job, one message for all; and
`models fetch`, which probes each host once before it downloads anything."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch.hub
from huggingface_hub import constants

from imganalyzer.config import validate_config
from imganalyzer.runtime import preflight
from imganalyzer.runtime.preflight import (
    HostProbes,
    ModelsMissing,
    check_models,
    fetch_message,
    fetch_models,
    host_reachable,
    modules_without,
)
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelLocation, ModelNotFoundError
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


# ---------------------------------------------------------------- imganalyzer models fetch


def no_download(module: str, config: dict) -> None:
    raise AssertionError(f"tried to download the model of {module}")


@pytest.fixture
def empty_caches(
    tmp_path: Path, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """Every download cache empty, under tmp_path (torch hub's through TORCH_HOME)."""
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield {
        "hf": empty_hf_cache,
        "torch": tmp_path / "torch" / "hub" / "checkpoints",
        "insightface": tmp_path / "insightface" / "models",
    }
    torch.hub.set_dir(previous)


def every_downloadable_model(**changes) -> dict:
    sections = {
        "modules": ["metadata", "embedding", "aesthetic", "objects", "captions", "faces"],
        "embedding": {"model": "hf-hub:org/clip"},
        "aesthetic": {"weights": "https://weights.example.org/head.pth"},
        "objects": {"model": "org/gdino"},
        "captions": {"model": "org/blip2"},
        "faces": {"pack": "buffalo_l"},
    }
    return configured(**sections | changes)


def test_fetch_offline_probes_each_host_once_downloads_nothing_and_names_the_caches(
    empty_caches: dict[str, Path],
) -> None:
    probed: list[str] = []

    def offline(host: str) -> bool:
        probed.append(host)
        return False

    config = every_downloadable_model()
    report = fetch_models(config, reachable=offline, fetch=no_download)
    assert sorted(probed) == ["github.com", "huggingface.co", "weights.example.org"]
    assert [m.location.module for m in report.missing] == [
        "embedding",
        "aesthetic",
        "objects",
        "captions",
        "faces",
    ]
    message = fetch_message(report, config)
    assert message.startswith("5 of 5 configured models could not be fetched:")
    assert "huggingface.co cannot be reached" in message
    assert "weights.example.org cannot be reached" in message
    copy_lines = message.split("to the same place here")[1].splitlines()
    for folder in empty_caches.values():  # where to copy each cache to, once each
        assert sum(line.startswith(f"  {folder} ") for line in copy_lines) == 1, folder
    assert "$HF_HUB_CACHE (embedding, objects, captions)" in message
    assert "$INSIGHTFACE_HOME/models (faces)" in message
    assert "modules='[metadata]'" in message
    assert FETCH_COMMAND not in message  # never the command that just failed


def test_fetch_with_hf_hub_offline_probes_nothing(
    empty_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = every_downloadable_model()
    never = lambda host: pytest.fail(f"probed {host}")  # noqa: E731
    report = fetch_models(config, reachable=never, fetch=no_download)
    assert len(report.missing) == 5 and not report.present
    assert {m.reason for m in report.missing} == {"not in the cache, and HF_HUB_OFFLINE is set"}


def test_fetch_downloads_what_it_reaches_and_reports_a_failed_download_once(
    empty_caches: dict[str, Path], tmp_path: Path
) -> None:
    def download(module: str, config: dict) -> ModelLocation:
        if module == "objects":
            raise ModelNotFoundError("org/gdino", "the cache", "download failed: 401 gated repo")
        return ModelLocation(module, "a model", "the cache", True, tmp_path)

    config = every_downloadable_model(
        modules=["metadata", "objects", "captions", "faces"], faces={"pack": str(tmp_path)}
    )
    report = fetch_models(config, reachable=lambda host: host == "huggingface.co", fetch=download)
    assert [location.module for location in report.present] == ["captions"]
    assert [(m.location.module, m.reason) for m in report.missing] == [
        ("objects", "download failed: 401 gated repo"),
        ("faces", "not there, and it is not something that can be downloaded"),
    ]
    message = fetch_message(report, config)
    assert FETCH_COMMAND not in message and "401 gated repo" in message
    assert "modules='[metadata, captions]'" in message


def test_a_model_on_disk_is_reported_without_a_probe(tmp_path: Path) -> None:
    config = configured(**local_models(tmp_path))
    report = fetch_models(config, reachable=lambda host: pytest.fail(host), fetch=no_download)
    assert [loc.module for loc in report.present] == ["embedding", "aesthetic", "faces"]
    assert not report.missing


def test_a_probe_that_hangs_counts_as_unreachable_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(preflight, "CONNECT_TIMEOUT_S", 0.1)
    release = threading.Event()
    probes = HostProbes(lambda host: release.wait(30))  # a name lookup that never returns
    started = time.monotonic()
    probes.start("a.example")
    probes.start("b.example")  # probed side by side
    assert not probes.result("a.example") and not probes.result("b.example")
    assert time.monotonic() - started < 5
    release.set()


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment: the probes below go straight to 127.0.0.1."""
    for variable in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.upper(), raising=False)


def test_host_reachable_asks_one_request_and_counts_any_answer(direct: None) -> None:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(404)  # any answer: the host is there
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert host_reachable(f"http://127.0.0.1:{port}")
        # the port answers TCP but no TLS: a firewall or proxy that takes and drops it
        assert not host_reachable(f"https://127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        assert not host_reachable(f"http://127.0.0.1:{port}")
    assert not host_reachable("imganalyzer-test.invalid")  # no such name (RFC 2606)


def test_a_connection_taken_and_never_answered_is_unreachable_after_the_timeout(
    direct: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preflight, "CONNECT_TIMEOUT_S", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts; nobody ever answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        assert not host_reachable(f"https://127.0.0.1:{port}")
        assert time.monotonic() - started < 3
