"""Talking to the provider: its SDK client with errors mapped to retryable / fatal /
per-image, the reply parsed into the fields of a row, and one image sent with budget,
pacing and retries (``Sender``)."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from imganalyzer.modules.cloud import CloudError, CloudSettings
from imganalyzer.modules.cloud_budget import Budget, RateLimiter

if TYPE_CHECKING:  # imported where used: only the configured provider's SDK is loaded
    import anthropic
    import openai

log = logging.getLogger(__name__)

# A Retry-After beyond this is treated as this: a job never sleeps for hours.
MAX_RETRY_AFTER_S = 300.0
# Loggers that would print requests (and at DEBUG, headers) if a user turned them up.
_HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "openai")
_REPLY_ATTEMPTS = 2  # a malformed reply is retried once
_REDACTED = "[redacted]"


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


class Client:
    """One provider's SDK client, its errors mapped to retryable / fatal / per-image."""

    def __init__(self, settings: CloudSettings, api_key: str) -> None:
        self.settings = settings
        base_url = settings.base_url or None  # None: the SDK's default (as if not given)
        self.sdk: ModuleType
        self.client: anthropic.Anthropic | openai.OpenAI
        if settings.provider == "anthropic":
            import anthropic

            self.sdk = anthropic
            self.client = anthropic.Anthropic(
                api_key=api_key, timeout=settings.timeout_s, max_retries=0, base_url=base_url
            )
        else:
            import openai

            self.sdk = openai
            self.client = openai.OpenAI(
                api_key=api_key, timeout=settings.timeout_s, max_retries=0, base_url=base_url
            )

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
        client = cast("anthropic.Anthropic", self.client)  # provider "anthropic"
        image: anthropic.types.Base64ImageSourceParam = {
            "type": "base64",
            "media_type": "image/jpeg",
            "data": _b64(jpeg),
        }
        message = client.messages.create(
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
        client = cast("openai.OpenAI", self.client)  # provider "openai"
        # response_format only when asked for: some OpenAI-compatible servers reject it
        extra: dict[str, Any] = (
            {"response_format": {"type": "json_object"}} if self.settings.json_mode else {}
        )
        completion = client.chat.completions.create(
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


class Sender:
    """Sends one image at a time (from several threads): budget, pacing, retries."""

    def __init__(
        self,
        client: Client,
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
        input_price = self.settings.input_usd_per_mtok
        output_price = self.settings.output_usd_per_mtok
        if usage is None or input_price is None or output_price is None:
            return self.settings.cost_per_image_usd
        return (usage["input_tokens"] * input_price + usage["output_tokens"] * output_price) / 1e6

    def _scrub(self, text: str) -> str:
        return text.replace(self.secret, _REDACTED) if self.secret else text


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
