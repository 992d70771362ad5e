"""Preflight and ``imganalyzer models fetch``: every configured model found before any job.

The Snakefile calls ``check_models`` in the main process (never in a cluster job's
re-parse). A model counts as available when it is on disk (a local path or the library's
cache) or, for one that can be downloaded, when downloads are allowed (HF_HUB_OFFLINE not
set) and its host answers one request within a few seconds: no retries, no minutes of
back-off. Everything missing is reported in one message with where each model
was looked for, the fetch command and the ``--config modules=...`` that runs without it.

``fetch_models`` (the fetch command) probes the same way before it downloads anything, so
that without internet it ends in seconds with one message naming what is missing and the
cache folders to copy from a machine that has the models: never the command that just
failed.
"""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imganalyzer.errors import ConfigError
from imganalyzer.runtime import weights
from imganalyzer.runtime.registry import (
    FETCH_COMMAND,
    MODELS,
    ModelLocation,
    ModelNotFoundError,
    configured_modules,
)

CONNECT_TIMEOUT_S = 3.0
Probe = Callable[[str], bool]  # host (a name, or an origin ``http://name:port``) -> answers?


class ModelsMissing(ConfigError):
    """One or more configured models are missing and cannot be fetched."""


@dataclass(frozen=True)
class MissingModel:
    location: ModelLocation
    reason: str
    hint: str = ""  # how to provide it, beside the fetch command
    cache: weights.Cache | None = None  # the folder a download would have filled


def check_models(config: Mapping[str, Any], reachable: Probe | None = None) -> None:
    """Raise ModelsMissing (one message for every missing model) unless every configured
    model of the validated ``config`` can be loaded. ``reachable(host)``: the network probe."""
    missing = missing_models(config, reachable or host_reachable)
    if missing:
        raise ModelsMissing(missing_message(missing, config))


@dataclass(frozen=True)
class _Wanted:
    """A configured model, where it loads from, and where a download of it comes from."""

    location: ModelLocation
    kind: weights.WeightsKind
    host: str | None  # None: on disk, or nothing to download


def _wanted(config: Mapping[str, Any], probes: HostProbes | None) -> list[_Wanted]:
    """Every configured model in registry order; the host of each one not on disk is handed
    to ``probes`` as soon as it is known. Open_clip's come last (locating them imports
    torch): the other hosts are probed meanwhile."""
    modules = configured_modules(config)
    slow = weights.KINDS["open_clip"]
    found = {}
    for module in sorted(modules, key=lambda m: weights.chosen(m, config)[0] is slow):
        kind, names = weights.chosen(module, config)
        location = weights.locate(module, config)
        host = None if location.present else kind.host(*names)
        if host is not None and probes is not None and weights.downloads_allowed():
            probes.start(host)
        found[module] = _Wanted(location, kind, host)
    return [found[module] for module in modules]


def _unavailable(wanted: _Wanted, probes: HostProbes) -> str | None:
    """Why a model not on disk cannot be downloaded now (None: it can)."""
    if wanted.kind.missing:
        return wanted.kind.missing
    if wanted.host is None:
        return "not there, and it is not something that can be downloaded"
    if not weights.downloads_allowed():
        return "not in the cache, and HF_HUB_OFFLINE is set"
    if not probes.result(wanted.host):
        return f"not in the cache, and {wanted.host} cannot be reached"
    return None


def _missing(wanted: _Wanted, reason: str, config: Mapping[str, Any]) -> MissingModel:
    module = wanted.location.module
    hint = wanted.kind.hint.format(module=module)
    return MissingModel(wanted.location, reason, hint, weights.cache(module, config))


def missing_models(config: Mapping[str, Any], reachable: Probe) -> list[MissingModel]:
    probes = HostProbes(reachable)
    found = []
    for wanted in _wanted(config, probes):
        if wanted.location.present:
            continue
        reason = _unavailable(wanted, probes)
        if reason is not None:  # else the job downloads it
            found.append(_missing(wanted, reason, config))
    return found


def missing_message(missing: list[MissingModel], config: Mapping[str, Any]) -> str:
    lines = ["Configured models are missing; nothing was run:"]
    lines += _listed(missing)
    caches = _cache_lines(missing)
    if caches:
        lines.append(
            f"Fetch them with `{FETCH_COMMAND}` on a machine with internet; where there is "
            "none, copy these folders from one that has the models (or set the variable):"
        )
        lines += caches
        lines.append("Or set a local path in config.yaml, or run without them:")
    else:
        lines.append("Set a local path in config.yaml, or run without them:")
    without = modules_without(config, {item.location.module for item in missing})
    lines.append(f"  snakemake --config modules='[{', '.join(without)}]'")
    lines += [f"  ({item.location.module}: {item.hint})" for item in missing if item.hint]
    return "\n".join(lines)


def _listed(missing: list[MissingModel]) -> list[str]:
    lines = []
    for item in missing:
        loc = item.location
        lines.append(f"  {loc.module}: {loc.model}: {item.reason}")
        lines.append(f"      looked in {loc.source}")
    return lines


def modules_without(config: Mapping[str, Any], missing: set[str]) -> list[str]:
    """The configured modules minus the missing ones and those that read their results."""
    gone = set(missing)
    while more := {m for m, spec in MODELS.items() if gone.intersection(spec.needs)} - gone:
        gone |= more
    return [module for module in config.get("modules", ()) if module not in gone]


# ---------------------------------------------------------------- imganalyzer models fetch


@dataclass
class FetchReport:
    """What ``fetch_models`` did: the models now on disk (fetched or there before) and the
    ones it could not provide."""

    present: list[ModelLocation] = field(default_factory=list)
    missing: list[MissingModel] = field(default_factory=list)


def fetch_models(
    config: Mapping[str, Any],
    reachable: Probe | None = None,
    fetch: Callable[[str, Mapping[str, Any]], ModelLocation] = weights.fetch,
) -> FetchReport:
    """Download every configured model of ``config`` that is not on disk, when downloads are
    allowed and its host answers one probe (each host probed once, all at the same time,
    ``CONNECT_TIMEOUT_S`` at most). Nothing is tried for a model whose host does not answer,
    so no library spends minutes retrying. ``fetch(module, config)``: the download."""
    probes = HostProbes(reachable or host_reachable)
    report = FetchReport()
    for wanted in _wanted(config, probes):
        if wanted.location.present:
            report.present.append(wanted.location)
            continue
        reason = _unavailable(wanted, probes)
        if reason is None:
            try:
                report.present.append(fetch(wanted.location.module, config))
                continue
            except ModelNotFoundError as error:  # its advice is this command: not repeated
                reason = error.reason or "download failed"
        report.missing.append(_missing(wanted, reason, config))
    return report


def fetch_message(report: FetchReport, config: Mapping[str, Any]) -> str:
    """The fetch command's one message about the models it could not provide: what, where
    each was looked for, and the cache folders to copy from a machine that has them."""
    total = len(report.present) + len(report.missing)
    lines = [f"{len(report.missing)} of {total} configured models could not be fetched:"]
    lines += _listed(report.missing)
    caches = _cache_lines(report.missing)
    if caches:
        lines.append(
            "Copy these folders from a machine that has the models (one with internet "
            "fills them) to the same place here (or elsewhere, with the variable set):"
        )
        lines += caches
    without = modules_without(config, {item.location.module for item in report.missing})
    lines += [
        "Or set local paths in the config, or run without them:",
        f"  snakemake --config modules='[{', '.join(without)}]'",
    ]
    lines += [f"  ({item.location.module}: {item.hint})" for item in report.missing if item.hint]
    return "\n".join(lines)


def _cache_lines(missing: Iterable[MissingModel]) -> list[str]:
    """One line per cache folder the missing models would be downloaded into: where it is
    here, what it is, the variable that moves it and the modules whose models go there."""
    by_folder: dict[weights.Cache, list[str]] = {}
    for item in missing:
        if item.cache is not None:
            by_folder.setdefault(item.cache, []).append(item.location.module)
    width = max((len(str(cache.folder)) for cache in by_folder), default=0)
    lines = []
    for cache, modules in by_folder.items():
        moved = f", or {cache.moved_by}" if cache.moved_by else ""
        lines.append(f"  {str(cache.folder):<{width}}  {cache.name}{moved} ({', '.join(modules)})")
    return lines


# ---------------------------------------------------------------- the network probe


class HostProbes:
    """One probe per host, started as soon as the host is known and run side by side; a
    result waits at most ``CONNECT_TIMEOUT_S`` plus a little from the probe's start (a
    probe still busy then, e.g. stuck in a name lookup, counts as unreachable)."""

    def __init__(self, reachable: Probe) -> None:
        self.reachable = reachable
        self.threads: dict[str, threading.Thread] = {}
        self.answers: dict[str, bool | BaseException] = {}

    def start(self, host: str) -> None:
        if host not in self.threads:

            def probe() -> None:
                try:
                    self.answers[host] = self.reachable(host)
                except BaseException as error:  # noqa: BLE001 (raised where it is read)
                    self.answers[host] = error

            # a daemon: a name lookup that hangs never keeps the process alive
            self.threads[host] = thread = threading.Thread(target=probe, daemon=True)
            thread.start()

    def result(self, host: str) -> bool:
        self.start(host)
        self.threads[host].join(CONNECT_TIMEOUT_S + 0.5)
        answer = self.answers.get(host, False)
        if isinstance(answer, BaseException):
            raise answer
        return answer


_PROBED: dict[str, bool] = {}


def host_reachable(host: str) -> bool:
    """Whether ``host`` (a name: https on port 443; or an origin, ``http://mirror:8080``)
    answers one HEAD request within CONNECT_TIMEOUT_S, through the proxy the environment
    names as a download would go: any HTTP status counts; no answer, a refused connection or
    a failed TLS handshake (a firewall or proxy that takes the connection and drops it) do
    not. Cached per process."""
    if host not in _PROBED:
        url = (host if "://" in host else f"https://{host}") + "/"
        request = urllib.request.Request(url, method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S).close()
            _PROBED[host] = True
        except urllib.error.HTTPError:
            _PROBED[host] = True  # it answered
        except (OSError, ValueError, http.client.HTTPException):
            _PROBED[host] = False
    return _PROBED[host]
