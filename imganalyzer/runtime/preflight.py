"""Preflight: every configured model is found before any job starts.

The Snakefile calls ``check_models`` in the main process (never in a cluster job's
re-parse). A model counts as available when it is on disk (a local path or the library's
cache) or, for one that can be downloaded, when downloads are allowed (HF_HUB_OFFLINE not
set) and its host answers one TCP connection within a few seconds: no retries, no
minutes of back-off. Everything missing is reported in one message with where each model
was looked for, the fetch command and the ``--config modules=...`` that runs without it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from imganalyzer.errors import ConfigError
from imganalyzer.runtime import registry as models
from imganalyzer.runtime import weights as model_weights
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelLocation

CONNECT_TIMEOUT_S = 3.0
# Modules that read another module's results: without the first they cannot run either.
NEEDS = {"aesthetic": "embedding", "ocr": "objects"}


class ModelsMissing(ConfigError):
    """One or more configured models are missing and cannot be fetched."""


@dataclass(frozen=True)
class MissingModel:
    location: ModelLocation
    reason: str


def check_models(config: Mapping[str, Any], reachable: Callable[[str], bool] | None = None) -> None:
    """Raise ModelsMissing (one message for every missing model) unless every configured
    model can be loaded. ``reachable(host)``: the network probe (tests replace it)."""
    missing = missing_models(config, reachable or host_reachable)
    if missing:
        raise ModelsMissing(missing_message(missing, config))


def missing_models(
    config: Mapping[str, Any], reachable: Callable[[str], bool]
) -> list[MissingModel]:
    found = []
    for module in models.configured_modules(config):
        location = model_weights.locate(module, config)
        if location.present:
            continue
        host = download_host(module, config)
        if module == "cloud":
            reason = "its API key variable is not set"
        elif host is None:
            reason = "not there, and it is not something that can be downloaded"
        elif not model_weights.downloads_allowed():
            reason = "not in the cache, and HF_HUB_OFFLINE is set"
        elif not reachable(host):
            reason = f"not in the cache, and {host} cannot be reached"
        else:
            continue  # the job downloads it
        found.append(MissingModel(location, reason))
    return found


def missing_message(missing: list[MissingModel], config: Mapping[str, Any]) -> str:
    lines = ["Configured models are missing; nothing was run:"]
    for item in missing:
        loc = item.location
        lines.append(f"  {loc.module}: {loc.model}: {item.reason}")
        lines.append(f"      looked in {loc.source}")
    without = modules_without(config, {item.location.module for item in missing})
    lines += [
        f"Fetch them with `{FETCH_COMMAND}` (on a machine with internet; copy the caches to "
        "offline nodes), set a local path in config.yaml, or run without them:",
        f"  snakemake --config modules='[{', '.join(without)}]'",
    ]
    if "cloud" in {item.location.module for item in missing}:
        lines.append("  (cloud: export the API key variable named by cloud.api_key_env)")
    return "\n".join(lines)


def modules_without(config: Mapping[str, Any], missing: set[str]) -> list[str]:
    """The configured modules minus the missing ones and those that need them."""
    gone = set(missing)
    gone |= {module for module, needed in NEEDS.items() if needed in gone}
    return [module for module in config.get("modules", ()) if module not in gone]


def download_host(module: str, config: Mapping[str, Any]) -> str | None:
    """The host a missing model would be downloaded from; None: it cannot be downloaded."""
    settings = models.model_settings(module, config)
    hub = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if module == "embedding":
        name, pretrained = settings["model"], settings["pretrained"]
        if not model_weights._is_downloadable(name, pretrained):
            return None
        if name.startswith("hf-hub:"):
            return hub
        tag = model_weights._pretrained_tag_config(name, pretrained)
        repo, _, url = model_weights._tag_source(tag)
        return hub if repo else urlparse(url).hostname
    if module == "aesthetic":
        weights = settings["weights"]
        return urlparse(weights).hostname if model_weights.is_url(weights) else None
    if module == "faces":
        return None if _is_local(settings["pack"]) else "github.com"
    if module == "cloud":
        return None
    name = settings["trocr_model"] if module == "ocr" else settings["model"]
    return None if _is_local(name) else hub


def _is_local(name: str) -> bool:
    return Path(name).expanduser().is_dir() or name.startswith((".", "/", "~"))


_PROBED: dict[str, bool] = {}


def host_reachable(host: str) -> bool:
    """One TCP connection to ``host``:443 within CONNECT_TIMEOUT_S (cached per process)."""
    if host not in _PROBED:
        try:
            socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
            _PROBED[host] = True
        except OSError:
            _PROBED[host] = False
    return _PROBED[host]
