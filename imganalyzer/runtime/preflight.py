"""Preflight: every configured model is found before any job starts.

The Snakefile calls ``check_models`` in the main process (never in a cluster job's
re-parse). A model counts as available when it is on disk (a local path or the library's
cache) or, for one that can be downloaded, when downloads are allowed (HF_HUB_OFFLINE not
set) and its host answers one TCP connection within a few seconds: no retries, no
minutes of back-off. Everything missing is reported in one message with where each model
was looked for, the fetch command and the ``--config modules=...`` that runs without it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imganalyzer.errors import ConfigError
from imganalyzer.runtime import weights
from imganalyzer.runtime.registry import FETCH_COMMAND, MODELS, ModelLocation, configured_modules

CONNECT_TIMEOUT_S = 3.0


class ModelsMissing(ConfigError):
    """One or more configured models are missing and cannot be fetched."""


@dataclass(frozen=True)
class MissingModel:
    location: ModelLocation
    reason: str
    hint: str = ""  # how to provide it, beside the fetch command


def check_models(config: Mapping[str, Any], reachable: Callable[[str], bool] | None = None) -> None:
    """Raise ModelsMissing (one message for every missing model) unless every configured
    model of the validated ``config`` can be loaded. ``reachable(host)``: the network probe."""
    missing = missing_models(config, reachable or host_reachable)
    if missing:
        raise ModelsMissing(missing_message(missing, config))


def missing_models(
    config: Mapping[str, Any], reachable: Callable[[str], bool]
) -> list[MissingModel]:
    found = []
    for module in configured_modules(config):
        location = weights.locate(module, config)
        if location.present:
            continue
        kind, names = weights.chosen(module, config)
        host = kind.host(*names)
        if kind.missing:
            reason = kind.missing
        elif host is None:
            reason = "not there, and it is not something that can be downloaded"
        elif not weights.downloads_allowed():
            reason = "not in the cache, and HF_HUB_OFFLINE is set"
        elif not reachable(host):
            reason = f"not in the cache, and {host} cannot be reached"
        else:
            continue  # the job downloads it
        found.append(MissingModel(location, reason, kind.hint.format(module=module)))
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
    lines += [f"  ({item.location.module}: {item.hint})" for item in missing if item.hint]
    return "\n".join(lines)


def modules_without(config: Mapping[str, Any], missing: set[str]) -> list[str]:
    """The configured modules minus the missing ones and those that read their results."""
    gone = set(missing)
    while more := {m for m, spec in MODELS.items() if gone.intersection(spec.needs)} - gone:
        gone |= more
    return [module for module in config.get("modules", ()) if module not in gone]


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
