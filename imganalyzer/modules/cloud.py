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
import functools
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imganalyzer.catalog.manifests import Entry
from imganalyzer.config import ConfigError
from imganalyzer.decode.tiers import resize_long_edge
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK, read_rows
from imganalyzer.runtime.batched import BatchedModel, HostItems, RowBatch, RowFailure, TierBatches
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import MODELS
from imganalyzer.runtime.shards import JobShard

log = logging.getLogger(__name__)

_SPEC = MODELS["cloud"]
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


@dataclass
class CloudStats:
    """What one job did: images described (``sent``), reused from the previous output
    (``cached``), left out by the budget, failed (API errors and undecodable images: the
    job's error rows), requests retried, and the estimated cost of what was sent."""

    sent: int = 0
    cached: int = 0
    skipped_budget: int = 0
    errors: int = 0
    retries: int = 0
    cost_usd: float = 0.0


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
        jpeg = load_jpeg()
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


class _TierImages(TierBatches):
    """The chosen tier's images of a shard's rows, each with its manifest entry."""

    def __init__(self, shard: JobShard, tier: str, rows: np.ndarray) -> None:
        super().__init__(shard.reader, tier, rows)
        self.entries = shard.entries

    def read(self, start: int, stop: int) -> RowBatch:
        batch = super().read(start, stop)
        items = np.empty(len(batch.indices), dtype=object)
        for k, (index, image, (height, width)) in enumerate(
            zip(batch.indices, batch.data, batch.sizes, strict=True)
        ):
            entry = self.entries[int(self.rows[index])]
            items[k] = (entry, np.ascontiguousarray(image[:height, :width]))
        return RowBatch(batch.indices, items, batch.sizes)


class CloudDescriber(BatchedModel):
    """A remote vision model as a batched model: ``predict_batch`` hands a batch's images
    to a pool of ``concurrency`` threads (budget, pacing, retries in ``_Sender``) and returns
    at once; ``postprocess`` (the writer thread) waits for their outcomes, so requests keep
    flowing across batches. Rows already described for the same file version, provider and
    model are reused (``decide``); a stopped job keeps what it paid for (checkpoints)."""

    spec = _SPEC
    on_torch = False
    not_done_reason = NOT_SENT

    def __init__(
        self,
        settings: CloudSettings,
        layout: Layout,
        ledger: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(device="cpu", batch_size="auto")
        self.settings, self.layout, self.ledger = settings, layout, ledger
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.default_batch_size = settings.concurrency
        self.checkpoint_every = CHECKPOINT_EVERY
        self.counts = CloudStats()
        self._cached: dict[str, dict[int, dict[str, Any]]] = {}

    @property
    def model_id(self) -> str:
        return self.settings.model_id

    def use_threads(self, threads: int) -> int:
        return 1  # a loader thread reads the tiers; the requests run in the pool

    def load_model(self, device: Any, dtype: Any) -> None:
        secret = api_key(self.settings)
        run_id = os.environ.get(RUN_ID_ENV)
        self.budget = Budget(
            self.settings.max_images_per_run, self.settings.max_cost_usd, self.ledger, run_id
        )
        limiter = RateLimiter(self.settings.requests_per_minute, self.clock, self.sleep)
        client = _Client(self.settings, secret)
        self.sender = _Sender(
            client, self.settings, limiter, self.budget, self.sleep, self.rng, secret
        )
        self.pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="cloud")
        self.started = time.perf_counter()

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        failed = super().decide(shard, row)
        if failed is not None:
            return failed
        if shard.id not in self._cached:
            previous = self.layout.rows(self.module, shard.id)
            self._cached[shard.id] = _cached_rows(previous, shard.entries, self.settings)
        cached = self._cached[shard.id].get(row)
        if cached is None:
            return None
        self.counts.cached += 1
        return {k: v for k, v in cached.items() if k not in _IDENTITY}

    def source(self, shard: JobShard, rows: np.ndarray) -> TierBatches:
        tier = choose_tier(shard.reader.tiers, self.settings.max_long_edge)
        return _TierImages(shard, tier, rows)

    def preprocess(self, batch: RowBatch) -> HostItems:
        return HostItems(batch.data)

    def predict_batch(self, inputs: HostItems) -> list[tuple[Entry, Future]]:
        jpeg = self._jpeg
        return [
            (entry, self.pool.submit(self.sender.process, functools.partial(jpeg, rgb)))
            for entry, rgb in inputs
        ]

    def postprocess(self, outputs: list[tuple[Entry, Future]]) -> list[Any]:
        return [self._result(entry, future.result()) for entry, future in outputs]

    def row_fields(self, result: dict[str, Any], shard: JobShard, row: int) -> dict[str, Any]:
        return result

    def summary_fields(self) -> dict[str, Any]:
        """Provider, model, the name of the key's environment variable (never the key)."""
        return {
            "version": CLOUD_VERSION,
            "provider": self.settings.provider,
            "api_key_env": self.settings.key_env,
            **{k: v for k, v in dataclasses.asdict(self.counts).items() if k != "errors"},
        }

    def _jpeg(self, rgb: np.ndarray) -> bytes:
        rgb = resize_long_edge(rgb, self.settings.max_long_edge)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=self.settings.jpeg_quality)
        return buffer.getvalue()

    def _result(self, entry: Entry, outcome: Outcome) -> dict[str, Any] | RowFailure:
        counts, settings = self.counts, self.settings
        counts.retries += outcome.retries
        counts.cost_usd += outcome.cost_usd
        if outcome.skipped:
            counts.skipped_budget += 1
            return {"provider": settings.provider, "model": settings.model_id,
                    "skipped": SKIPPED_BUDGET}  # fmt: skip
        if outcome.fields is not None:
            counts.sent += 1
            return outcome.fields
        log.warning("cloud: %s: %s", entry.path, outcome.error)
        return RowFailure(outcome.error or "unknown error")


_IDENTITY = ("path", "size", "mtime_ns", "status")


def run_cloud_job(
    layout: Layout,
    job: str,
    shards: Sequence[str],
    settings: CloudSettings,
    ledger: Path | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> CloudDescriber:
    """Describe every decoded image of a job's shards that has no current description yet
    (``run_model_job``). ``ledger``: the run's budget file (``layout.cloud_ledger``), shared
    by the jobs of one run (``IMGANALYZER_RUN_ID``). ``clock``/``sleep``/``rng``: injectable
    for tests. Returns the describer; ``counts`` says what it did."""
    describer = CloudDescriber(settings, layout, ledger, clock, sleep, rng)
    with quiet_http_loggers():
        run_model_job(describer, layout, job, shards)
    c = describer.counts
    c.errors = describer.stats.errors  # failed decodes, refused images, replies given up on
    log.info(
        "cloud: %s %s: %d sent, %d cached, %d skipped (budget), %d errors, %d retries, "
        "~$%.4f in %.1f s; run %s spent %s",
        settings.provider, settings.model_id, c.sent, c.cached, c.skipped_budget, c.errors,
        c.retries, c.cost_usd, describer.stats.total_s, os.environ.get(RUN_ID_ENV) or "-",
        describer.budget.spent(),
    )  # fmt: skip
    return describer


def choose_tier(tiers: Mapping[str, int], max_long_edge: int) -> str:
    """The largest tier not above ``max_long_edge``; if all are larger, the smallest."""
    fitting = [name for name, side in tiers.items() if side <= max_long_edge]
    if fitting:
        return max(fitting, key=tiers.__getitem__)
    return min(tiers, key=tiers.__getitem__)


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
