"""The provider's SDK client against a fake API on 127.0.0.1: a reply and its token usage
for each provider, and each kind of HTTP error mapped to fatal (the key, the model),
retryable (with the Retry-After it names) or this image's own."""

from __future__ import annotations

import email.utils
import io
import json
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from imganalyzer.modules.cloud import CloudError
from imganalyzer.modules.cloud_api import (
    Client,
    _ImageError,
    _retry_after,
    _RetryableError,
    parse_reply,
)
from tests.support.fake_vision_api import USAGE, FakeVisionApi, reply_fields, settings_for, status

KEY = "sk-test-client-0123456789"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeVisionApi]:
    with FakeVisionApi() as server:
        yield server


def jpeg(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_each_provider_answers_with_text_and_token_usage(api: FakeVisionApi, provider: str) -> None:
    reply = Client(settings_for(api, provider), KEY).describe(jpeg(40, 30))
    assert parse_reply(reply.text) == reply_fields((40, 30))
    assert reply.usage == USAGE
    request = api.requests[-1]
    assert request.image_format == "JPEG" and request.image_size == (40, 30)
    body = json.dumps(request.body)
    assert KEY not in body  # the key travels in a header only


@pytest.mark.parametrize(
    ("code", "error", "words"),
    [
        (401, CloudError, "refused the key"),
        (403, CloudError, "ANTHROPIC_API_KEY"),
        (404, CloudError, "model or endpoint not found"),
        (429, _RetryableError, "HTTP 429"),
        (503, _RetryableError, "HTTP 503"),
        (400, _ImageError, "HTTP 400"),
        (413, _ImageError, "HTTP 413"),
    ],
)
def test_http_errors_are_fatal_retryable_or_the_images_own(
    api: FakeVisionApi, code: int, error: type[Exception], words: str
) -> None:
    api.script(status(code, retry_after=7 if code == 429 else None))
    with pytest.raises(error, match=words) as caught:
        Client(settings_for(api), KEY).describe(jpeg())
    assert KEY not in str(caught.value)
    if code == 429:
        assert caught.value.retry_after == 7.0


def test_a_server_that_is_not_there_is_retryable() -> None:
    with FakeVisionApi() as gone:
        settings = settings_for(gone, timeout_s=1.0)
    with pytest.raises(_RetryableError, match="APIConnectionError"):
        Client(settings, KEY).describe(jpeg())


def test_retry_after_in_seconds_milliseconds_or_as_a_date() -> None:
    assert _retry_after({"retry-after-ms": "1500"}) == 1.5
    assert _retry_after({"retry-after": "12"}) == 12.0
    assert _retry_after({"retry-after": "-3"}) == 0.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after({"retry-after": when}) <= 30
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None
