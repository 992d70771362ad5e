"""Descriptions of each image from a remote vision model (Anthropic or OpenAI-compatible).

Off by default. For every decoded image of a shard, the job sends one tier image (the
largest tier whose long edge is at most ``max_long_edge``, 1568 px by default: the
providers' own limit; downscaled if every tier is larger) as a JPEG through the
provider's Python SDK, and asks for one JSON object: ``description``, ``keywords``,
``objects`` (notable objects) and ``text_seen``.

Sending costs money and is rate-limited by the provider, so the job:

- reuses the ok rows of the shard's previous output whose file version still matches the
  manifest: a re-run never pays twice for an image;
- runs ``concurrency`` requests at once, their starts spaced to ``requests_per_minute``;
- retries 408/409/429/5xx, timeouts and connection errors itself (the SDK's retries are
  off), with exponential backoff and jitter, honouring ``Retry-After``, at most
  ``max_retries`` times; then the image gets an error row and the shard goes on;
- retries a reply that is not the requested JSON once, then writes an error row;
- stops sending when the run's budget (``max_images_per_run``, ``max_cost_usd``) is
  spent; the remaining images get ``"skipped": "budget"`` rows. Jobs of one workflow run
  (same ``IMGANALYZER_RUN_ID``) share the budget through a ledger file.

The API key is read from the environment variable that ``api_key_env`` names, and is never
written to a log, a result, a summary or an exception message.

Output per shard: ``<shard>.jsonl`` rows with ``provider``, ``model``, ``description``,
``keywords``, ``objects``, ``text_seen`` and ``usage`` (when the API reports it).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import fcntl
import io
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.config import ConfigError
from imganalyzer.decode.tiers import TierReader, resize_long_edge
from imganalyzer.files import atomic_write_text
from imganalyzer.results import OK, error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batched import NOT_DECODED, decode_failures

log = logging.getLogger(__name__)

CLOUD_VERSION = "1"
PROVIDERS = ("anthropic", "openai")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4.1-mini"}
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
RUN_ID_ENV = "IMGANALYZER_RUN_ID"
SKIPPED_BUDGET = "budget"
# The providers' recommended maximum: larger images are downscaled by the API anyway.
MAX_LONG_EDGE = 1568
# A Retry-After beyond this is treated as this: a job never sleeps for hours.
MAX_RETRY_AFTER_S = 300.0
# Runs kept in the ledger; older ones are dropped so the file stays small.
LEDGER_RUNS_KEPT = 100
# Loggers that would print requests (and at DEBUG, headers) if a user turned them up.
_HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "openai")
# A shard's output is rewritten after this many new descriptions, so that a job killed
# mid-shard (SIGTERM, node lost) loses little that was paid for.
CHECKPOINT_EVERY = 25
NOT_SENT = "not described: the job stopped before sending this image"
_REPLY_ATTEMPTS = 2  # a malformed reply is retried once
_REDACTED = "[redacted]"

DEFAULT_PROMPT = (
    "Describe this photo for a searchable photo catalogue. Answer with one JSON object and "
    "nothing else, with exactly these keys:\n"
    '"description": one to three sentences on what the photo shows;\n'
    '"keywords": a list of 5 to 15 short lowercase keywords (subjects, scene, style, '
    "colours, mood);\n"
    '"objects": a list of the notable objects visible, each a short noun phrase;\n'
    '"text_seen": the legible text in the image, verbatim, or "" if there is none.'
)


@dataclass
class CloudSettings:
    """The ``cloud`` section of the config. ``model``/``api_key_env`` None: the provider's
    default. Prices per million tokens, when both are set, turn the reported token usage
    into the cost of an image; ``cost_per_image_usd`` is the estimate reserved before each
    request (and the cost when no usage or price is known)."""

    provider: str = "anthropic"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    requests_per_minute: float = 50.0
    max_retries: int = 6
    timeout_s: float = 60.0
    max_images_per_run: int = 1000
    max_cost_usd: float = 5.0
    cost_per_image_usd: float = 0.005
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    max_long_edge: int = MAX_LONG_EDGE
    jpeg_quality: int = 85
    max_output_tokens: int = 1024
    json_mode: bool = True  # OpenAI: response_format json_object (off for servers without it)
    prompt: str = DEFAULT_PROMPT
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> CloudSettings:
        """Settings from ``config["cloud"]`` as ``validate_config`` left it (the schema holds
        every bound and default; a default here equals the schema's, checked by a test)."""
        return cls(**dict(section))

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.provider, "")

    @property
    def key_env(self) -> str:
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.provider, "")


class CloudError(RuntimeError):
    """The job cannot go on (authentication refused, model or endpoint not found)."""


@dataclass(frozen=True)
class CloudShardFiles:
    """The inputs and output of one shard of a cloud job."""

    manifest: str | os.PathLike
    tiers: str | os.PathLike
    technical: str | os.PathLike | None
    out_jsonl: str | os.PathLike


@dataclass
class CloudStats:
    """What one job did: images described (``sent``), reused from the previous output
    (``cached``), left out by the budget, failed (API errors and undecodable images),
    requests retried, and the estimated cost of what was sent."""

    sent: int = 0
    cached: int = 0
    skipped_budget: int = 0
    errors: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0


# --- Pacing, budget --------------------------------------------------------------------------
class RateLimiter:
    """Spaces the starts of requests at least ``60 / requests_per_minute`` s apart, across
    threads; ``hold_off`` pushes the next start back (a 429 pauses every worker)."""

    def __init__(
        self,
        requests_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / requests_per_minute
        self.clock, self.sleep = clock, sleep
        self._next_start = -math.inf
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for this request's turn."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        if start > now:
            self.sleep(start - now)

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            self._next_start = max(self._next_start, self.clock() + seconds)


class Budget:
    """The images and estimated dollars a run may still spend.

    ``reserve`` takes one image's estimate before it is sent; ``settle`` replaces the
    estimate with what the image cost. With a ledger file and a run id the counts live in
    the file (under an exclusive lock, written atomically), so that every job of the run
    shares one budget; without either, the counts are this job's own.
    """

    def __init__(
        self, max_images: int, max_cost_usd: float, ledger: Path | None, run_id: str | None
    ) -> None:
        self.max_images, self.max_cost_usd = max_images, max_cost_usd
        self.ledger = ledger if run_id else None
        self.run_id = run_id or ""
        self.exhausted = False
        self._local = {"images": 0, "cost_usd": 0.0}
        self._lock = threading.Lock()

    def reserve(self, estimate_usd: float) -> bool:
        """Count one more image at ``estimate_usd``; False (and from then on) if over budget."""
        with self._counts() as counts:
            if self.exhausted:
                return False
            over_images = counts["images"] + 1 > self.max_images
            over_cost = counts["cost_usd"] + estimate_usd > self.max_cost_usd + 1e-12
            if over_images or over_cost:
                self.exhausted = True
                return False
            counts["images"] += 1
            counts["cost_usd"] += estimate_usd
            return True

    def settle(self, estimate_usd: float, cost_usd: float) -> None:
        if cost_usd != estimate_usd:
            with self._counts() as counts:
                counts["cost_usd"] = max(0.0, counts["cost_usd"] + cost_usd - estimate_usd)

    def spent(self) -> dict[str, float]:
        with self._counts() as counts:
            return dict(counts)

    @contextlib.contextmanager
    def _counts(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self.ledger is None:
                yield self._local
                return
            with _locked(self.ledger.with_name(self.ledger.name + ".lock")):
                runs = _read_ledger(self.ledger)
                counts = runs.setdefault(self.run_id, {"images": 0, "cost_usd": 0.0})
                before = dict(counts)
                yield counts
                if counts != before:
                    counts["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    runs.pop(self.run_id)
                    runs[self.run_id] = counts  # newest last, so trimming drops the oldest
                    kept = dict(list(runs.items())[-LEDGER_RUNS_KEPT:])
                    atomic_write_text(self.ledger, json.dumps({"runs": kept}, indent=1) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["runs"])
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as error:
        raise CloudError(f"{path}: not a cloud budget ledger ({error}); delete it") from None


def budget_skipped(out_jsonl_paths: Sequence[str | os.PathLike]) -> int:
    """Rows that a budget left out in the existing outputs among ``out_jsonl_paths``."""
    count = 0
    for path in out_jsonl_paths:
        if os.path.exists(path):
            count += sum(row.get("skipped") == SKIPPED_BUDGET for row in read_rows(path))
    return count


# --- Talking to the API ----------------------------------------------------------------------
@dataclass
class Reply:
    text: str
    usage: dict[str, int] | None


class MalformedReply(ValueError):
    """The model's answer is not the JSON object asked for."""


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _NotDecoded(Exception):
    """The tier store holds no image for this row."""


class _ImageError(Exception):
    """The API refused this image (a 4xx other than the retryable and fatal ones)."""


class _Client:
    """One provider's SDK client, its errors mapped to retryable / fatal / per-image."""

    def __init__(self, settings: CloudSettings, api_key: str) -> None:
        self.settings = settings
        common = {"api_key": api_key, "timeout": settings.timeout_s, "max_retries": 0}
        if settings.base_url:
            common["base_url"] = settings.base_url
        if settings.provider == "anthropic":
            import anthropic

            self.sdk, self.client = anthropic, anthropic.Anthropic(**common)
        else:
            import openai

            self.sdk, self.client = openai, openai.OpenAI(**common)

    def describe(self, jpeg: bytes) -> Reply:
        try:
            if self.settings.provider == "anthropic":
                return self._anthropic(jpeg)
            return self._openai(jpeg)
        except self.sdk.APIStatusError as error:
            raise self._status_error(error) from None
        except self.sdk.APIConnectionError as error:  # includes APITimeoutError
            raise _RetryableError(type(error).__name__ + ": " + str(error)) from None

    def _anthropic(self, jpeg: bytes) -> Reply:
        image = {"type": "base64", "media_type": "image/jpeg", "data": _b64(jpeg)}
        message = self.client.messages.create(
            model=self.settings.model_id,
            max_tokens=self.settings.max_output_tokens,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": image},
                        {"type": "text", "text": self.settings.prompt},
                    ],
                }
            ],
        )
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = message.usage
        return Reply(text, _usage(usage.input_tokens, usage.output_tokens) if usage else None)

    def _openai(self, jpeg: bytes) -> Reply:
        extra = {"response_format": {"type": "json_object"}} if self.settings.json_mode else {}
        completion = self.client.chat.completions.create(
            model=self.settings.model_id,
            max_completion_tokens=self.settings.max_output_tokens,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": self.settings.prompt},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/jpeg;base64," + _b64(jpeg)},
                        },
                    ],
                }
            ],
            **extra,
        )
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        usage = completion.usage
        return Reply(text, _usage(usage.prompt_tokens, usage.completion_tokens) if usage else None)

    def _status_error(self, error: Any) -> Exception:
        code = error.status_code
        reason = f"HTTP {code}: {_api_message(error)}"
        if code in (401, 403):
            return CloudError(
                f"cloud: the API refused the key ({reason}); check the key in the environment "
                f"variable {self.settings.key_env} (config key 'cloud.api_key_env')"
            )
        if code == 404:
            return CloudError(
                f"cloud: model or endpoint not found ({reason}); check config keys "
                f"'cloud.model' ({self.settings.model_id!r}) and 'cloud.base_url'"
            )
        if code in (408, 409, 429) or code >= 500:
            return _RetryableError(reason, _retry_after(error.response.headers))
        return _ImageError(reason)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _usage(input_tokens: int | None, output_tokens: int | None) -> dict[str, int] | None:
    if input_tokens is None and output_tokens is None:
        return None
    return {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}


def _api_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return type(error).__name__


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def parse_reply(text: str) -> dict[str, Any]:
    """The model's answer -> {description, keywords, objects, text_seen}, or MalformedReply.

    Tolerates a Markdown code fence or prose around the one JSON object."""
    found = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if found is None:
        raise MalformedReply("no JSON object in the reply")
    try:
        data = json.loads(found.group(0))
    except ValueError as error:
        raise MalformedReply(f"reply is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise MalformedReply("reply is not a JSON object")
    description, text_seen = data.get("description"), data.get("text_seen") or ""
    if not isinstance(description, str) or not description.strip():
        raise MalformedReply("reply has no 'description' string")
    if not isinstance(text_seen, str):
        raise MalformedReply("'text_seen' is not a string")
    return {
        "description": description.strip(),
        "keywords": _strings(data, "keywords"),
        "objects": _strings(data, "objects"),
        "text_seen": text_seen.strip(),
    }


def _strings(data: dict[str, Any], key: str) -> list[str]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        raise MalformedReply(f"'{key}' is not a list of strings")
    return [str(v).strip() for v in values if str(v).strip()]


# --- One image -------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one image: ``fields`` of its ok row, or an ``error``, or skipped."""

    fields: dict[str, Any] | None = None
    error: str | None = None
    skipped: bool = False
    retries: int = 0
    cost_usd: float = 0.0


class _Sender:
    """Sends one image at a time (from several threads): budget, pacing, retries."""

    def __init__(
        self,
        client: _Client,
        settings: CloudSettings,
        limiter: RateLimiter,
        budget: Budget,
        sleep: Callable[[float], None],
        rng: Callable[[], float],
        secret: str,
    ) -> None:
        self.client, self.settings, self.limiter, self.budget = client, settings, limiter, budget
        self.sleep, self.rng, self.secret = sleep, rng, secret
        self.aborted = threading.Event()

    def process(self, load_jpeg: Callable[[], bytes]) -> Outcome:
        if self.aborted.is_set():
            raise CloudError("cloud: job aborted after a fatal API error")
        if self.budget.exhausted:
            return Outcome(skipped=True)
        try:
            jpeg = load_jpeg()
        except _NotDecoded as error:
            return Outcome(error=str(error))
        estimate = self.settings.cost_per_image_usd
        if not self.budget.reserve(estimate):
            return Outcome(skipped=True)
        outcome = Outcome()
        try:
            self._describe(jpeg, outcome)
        except CloudError as error:
            self.aborted.set()
            raise CloudError(self._scrub(str(error))) from None
        except Exception as error:  # noqa: BLE001 (one image never fails the shard)
            log.exception("cloud: internal error")
            outcome.error = f"internal error: {type(error).__name__}: {error}"
        finally:
            self.budget.settle(estimate, outcome.cost_usd)
        if outcome.error is not None:
            outcome.error = self._scrub(outcome.error)
        return outcome

    def _describe(self, jpeg: bytes, outcome: Outcome) -> None:
        for attempt in range(_REPLY_ATTEMPTS):
            reply = self._send(jpeg, outcome)
            if reply is None:
                return
            outcome.cost_usd += self._cost(reply.usage)
            try:
                fields = parse_reply(reply.text)
            except MalformedReply as error:
                outcome.error = f"malformed reply: {error}"
                if attempt + 1 < _REPLY_ATTEMPTS:
                    outcome.retries += 1
                continue
            outcome.fields = {"provider": self.settings.provider, "model": self.settings.model_id}
            outcome.fields.update(fields)
            if reply.usage is not None:
                outcome.fields["usage"] = reply.usage
            outcome.error = None
            return

    def _send(self, jpeg: bytes, outcome: Outcome) -> Reply | None:
        """One request, retried on retryable errors; None (and ``outcome.error``) on failure."""
        for attempt in range(self.settings.max_retries + 1):
            self.limiter.acquire()
            try:
                return self.client.describe(jpeg)
            except _ImageError as error:
                outcome.error = f"API refused the image: {error}"
                return None
            except _RetryableError as error:
                outcome.error = f"gave up after {attempt} retries: {error}"
                if attempt == self.settings.max_retries:
                    return None
                outcome.retries += 1
                self._wait(attempt, error.retry_after)
        return None

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        """Exponential backoff with jitter (half to all of base * 2^attempt, capped); at
        least ``Retry-After``, which also holds back every other request."""
        backoff = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**attempt)
        delay = backoff * (0.5 + 0.5 * self.rng())
        if retry_after is not None:
            self.limiter.hold_off(min(max(delay, retry_after), MAX_RETRY_AFTER_S))
        else:
            self.sleep(delay)

    def _cost(self, usage: dict[str, int] | None) -> float:
        prices = (self.settings.input_usd_per_mtok, self.settings.output_usd_per_mtok)
        if usage is None or None in prices:
            return self.settings.cost_per_image_usd
        return (usage["input_tokens"] * prices[0] + usage["output_tokens"] * prices[1]) / 1e6

    def _scrub(self, text: str) -> str:
        return text.replace(self.secret, _REDACTED) if self.secret else text


# --- The job ---------------------------------------------------------------------------------
def api_key(settings: CloudSettings) -> str:
    """The key from the environment variable ``settings`` names; ConfigError if unset."""
    key = os.environ.get(settings.key_env, "").strip()
    if not key:
        raise ConfigError(
            f"cloud: the environment variable {settings.key_env} holding the "
            f"{settings.provider} API key is not set (config key 'cloud.api_key_env' names it)"
        )
    return key


@contextlib.contextmanager
def quiet_http_loggers() -> Iterator[None]:
    """Hold the HTTP/SDK loggers at WARNING: their DEBUG output includes request headers."""
    loggers = [logging.getLogger(name) for name in _HTTP_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def run_cloud_job(
    shards: Sequence[CloudShardFiles],
    settings: CloudSettings,
    ledger: Path | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> CloudStats:
    """Describe every decoded image of ``shards`` that has no current description yet.

    ``ledger``: the run's budget file (``results/cloud/ledger.json``), shared by the jobs
    of one run (``IMGANALYZER_RUN_ID``). ``clock``/``sleep``/``rng``: injectable for tests.
    Each shard's rows are written as soon as the shard is done.
    """
    secret = api_key(settings)
    started = time.perf_counter()
    stats = CloudStats()
    run_id = os.environ.get(RUN_ID_ENV)
    budget = Budget(settings.max_images_per_run, settings.max_cost_usd, ledger, run_id)
    with quiet_http_loggers():
        sender = _Sender(
            _Client(settings, secret),
            settings,
            RateLimiter(settings.requests_per_minute, clock, sleep),
            budget,
            sleep,
            rng,
            secret,
        )
        with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="cloud") as pool:
            for shard in shards:
                _run_shard(shard, settings, sender, pool, stats)
    stats.seconds = time.perf_counter() - started
    log.info(
        "cloud: %s %s: %d sent, %d cached, %d skipped (budget), %d errors, %d retries, "
        "~$%.4f in %.1f s; run %s spent %s",
        settings.provider, settings.model_id, stats.sent, stats.cached, stats.skipped_budget,
        stats.errors, stats.retries, stats.cost_usd, stats.seconds, run_id or "-",
        budget.spent(),
    )  # fmt: skip
    return stats


def _run_shard(
    shard: CloudShardFiles,
    settings: CloudSettings,
    sender: _Sender,
    pool: ThreadPoolExecutor,
    stats: CloudStats,
) -> None:
    entries = read_manifest(shard.manifest)
    reader = TierReader(shard.tiers)
    if reader.n_images != len(entries):
        raise ValueError(f"{shard.tiers}: {reader.n_images} images, manifest has {len(entries)}")
    tier = choose_tier(reader.tiers, settings.max_long_edge)
    failures = decode_failures(shard.technical, len(entries))
    cached = _cached_rows(shard.out_jsonl, entries, settings)
    rows: list[dict[str, Any] | None] = [None] * len(entries)
    todo = []
    for index, entry in enumerate(entries):
        if index in failures:
            rows[index] = error_row(entry, failures[index])
        elif index in cached:
            rows[index] = cached[index]
        else:
            todo.append(index)
    stats.cached += len(cached)
    stats.errors += len(failures)
    read_lock = threading.Lock()

    def process(index: int) -> Outcome:
        return sender.process(lambda: _tier_jpeg(reader, tier, index, settings, read_lock))

    unsaved = 0  # described images not yet in the output file
    try:
        for index, outcome in zip(todo, pool.map(process, todo), strict=True):
            rows[index] = _row(entries[index], outcome, settings, stats)
            unsaved += outcome.fields is not None
            if unsaved >= CHECKPOINT_EVERY:
                _write_partial(shard.out_jsonl, entries, rows)
                unsaved = 0
    except BaseException:
        if unsaved:
            _write_partial(shard.out_jsonl, entries, rows)
        raise
    write_rows(shard.out_jsonl, rows)


def _write_partial(path: str | os.PathLike, entries: list[Entry], rows: list) -> None:
    """The rows so far, images not done yet as error rows: a job killed mid-shard keeps
    what it paid for, and its re-run sends only the rest."""
    write_rows(path, [row or error_row(e, NOT_SENT) for e, row in zip(entries, rows, strict=True)])


def choose_tier(tiers: Mapping[str, int], max_long_edge: int) -> str:
    """The largest tier not above ``max_long_edge``; if all are larger, the smallest."""
    fitting = [name for name, side in tiers.items() if side <= max_long_edge]
    if fitting:
        return max(fitting, key=tiers.__getitem__)
    return min(tiers, key=tiers.__getitem__)


def _tier_jpeg(
    reader: TierReader, tier: str, index: int, settings: CloudSettings, lock: threading.Lock
) -> bytes:
    with lock:
        images, sizes, ok = reader.read(tier, index, index + 1)
    if not ok[0]:
        raise _NotDecoded(NOT_DECODED)
    height, width = sizes[0]
    rgb = resize_long_edge(np.ascontiguousarray(images[0, :height, :width]), settings.max_long_edge)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=settings.jpeg_quality)
    return buffer.getvalue()


def _row(entry: Entry, outcome: Outcome, settings: CloudSettings, stats: CloudStats) -> dict:
    stats.retries += outcome.retries
    stats.cost_usd += outcome.cost_usd
    if outcome.skipped:
        stats.skipped_budget += 1
        fields = {"provider": settings.provider, "model": settings.model_id}
        return ok_row(entry, {**fields, "skipped": SKIPPED_BUDGET})
    if outcome.fields is not None:
        stats.sent += 1
        return ok_row(entry, outcome.fields)
    stats.errors += 1
    log.warning("cloud: %s: %s", entry.path, outcome.error)
    return error_row(entry, outcome.error or "unknown error")


def _cached_rows(
    out_jsonl: str | os.PathLike, entries: list[Entry], settings: CloudSettings
) -> dict[int, dict[str, Any]]:
    """Row index -> previous ok row of the same file version, provider and model."""
    if not os.path.exists(out_jsonl):
        return {}
    previous = {}
    for row in read_rows(out_jsonl):
        reusable = row.get("status") == OK and "skipped" not in row and "description" in row
        same_model = (row.get("provider"), row.get("model")) == (
            settings.provider,
            settings.model_id,
        )
        if reusable and same_model:
            previous[(row["path"], row["size"], row["mtime_ns"])] = row
    return {
        index: previous[key]
        for index, entry in enumerate(entries)
        if (key := (entry.path, entry.size, entry.mtime_ns)) in previous
    }


def write_cloud_summary(
    path: str | os.PathLike, stats: CloudStats, settings: CloudSettings, shards: Sequence[str]
) -> None:
    """The marker a cloud job writes last: its shards, provider, model and counts (JSON).
    Holds the name of the key's environment variable, never the key."""
    summary = {
        "module": "cloud",
        "version": CLOUD_VERSION,
        "provider": settings.provider,
        "model": settings.model_id,
        "api_key_env": settings.key_env,
        "shards": list(shards),
        **dataclasses.asdict(stats),
    }
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
