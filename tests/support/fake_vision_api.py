"""A fake remote vision API on 127.0.0.1 for the cloud tests: speaks the Anthropic Messages
shape (``POST /v1/messages``) and the OpenAI chat-completions shape
(``POST /v1/chat/completions``) well enough for the real SDK clients.

Every request is recorded (path, headers, JSON body, and the decoded image's format and
size). Replies are scripted: ``script(*actions)`` queues actions that the next requests
consume in order; once the queue is empty, every request succeeds. An action is one of

- ``ok()``: a well-formed reply;
- ``status(code, retry_after=None)``: an API error (429, 500, 401 ...), with a
  ``Retry-After`` header when given;
- ``slow(seconds)``: a well-formed reply after ``seconds`` (to trigger client timeouts);
- ``malformed()``: a 200 reply whose text content is not the requested JSON object.

The JSON a successful reply describes the image it was sent, so that a test can tell which
image a result row came from: ``description`` is ``"a photo of WxH pixels"``.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from imganalyzer.config import validate_config
from imganalyzer.modules.cloud import CloudSettings

USAGE = {"input_tokens": 1200, "output_tokens": 80}


@dataclass(frozen=True)
class Action:
    kind: str  # "ok" | "status" | "slow" | "malformed"
    code: int = 200
    retry_after: str | None = None
    seconds: float = 0.0


def ok() -> Action:
    return Action("ok")


def status(code: int, retry_after: float | str | None = None) -> Action:
    return Action(
        "status", code=code, retry_after=None if retry_after is None else str(retry_after)
    )


def slow(seconds: float) -> Action:
    return Action("slow", seconds=seconds)


def malformed() -> Action:
    return Action("malformed")


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    image_format: str | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    action: str = "ok"


def description_of(size: tuple[int, int]) -> str:
    return f"a photo of {size[0]}x{size[1]} pixels"


def reply_fields(size: tuple[int, int] | None) -> dict[str, Any]:
    """The JSON object the fake model answers for an image of ``size`` (width, height)."""
    size = size or (0, 0)
    return {
        "description": description_of(size),
        "keywords": ["test", f"w{size[0]}"],
        "objects": ["rectangle"],
        "text_seen": f"{size[1]}",
    }


@dataclass
class FakeVisionApi:
    """The server's state; use as a context manager (``with FakeVisionApi() as api``)."""

    requests: list[Request] = field(default_factory=list)
    max_in_flight: int = 0
    response_delay_s: float = 0.0  # added to every request (to observe concurrency)
    _in_flight: int = 0
    _actions: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FakeVisionApi:
        api = self

        class Handler(_Handler):
            state = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        """The SDK base URL: Anthropic appends /v1/messages, OpenAI /chat/completions."""
        return self.url if provider == "anthropic" else f"{self.url}/v1"

    def script(self, *actions: Action) -> None:
        with self._lock:
            self._actions.extend(actions)

    def _next_action(self) -> Action:
        with self._lock:
            return self._actions.popleft() if self._actions else ok()

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self, request: Request) -> None:
        with self._lock:
            self._in_flight -= 1
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeVisionApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        pass  # keep test output quiet

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        request.image_format, request.image_size = _image_of(self.path, body)
        self.state._enter()
        try:
            action = self.state._next_action()
            request.action = action.kind
            time.sleep(self.state.response_delay_s + action.seconds)
            self._answer(action, request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)
        finally:
            self.state._leave(request)

    def _answer(self, action: Action, request: Request) -> None:
        if action.kind == "status":
            headers = {"Retry-After": action.retry_after} if action.retry_after else {}
            error = {"type": "error", "error": {"type": "api_error", "message": "scripted"}}
            self._send(action.code, error, headers)
            return
        if action.kind == "malformed":
            text = "Sure! Here is a description: a photo, {not json"
        else:
            text = json.dumps(reply_fields(request.image_size))
        if self.path == "/v1/messages":
            self._send(200, _anthropic_message(request.body, text))
        elif self.path == "/v1/chat/completions":
            self._send(200, _openai_completion(request.body, text))
        else:
            self._send(404, {"error": {"type": "not_found", "message": self.path}})

    def _send(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _image_of(path: str, body: dict) -> tuple[str | None, tuple[int, int] | None]:
    """The format and (width, height) of the image a request carries, or (None, None)."""
    data = None
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image" and part["source"]["type"] == "base64":
                data = part["source"]["data"]
            elif part.get("type") == "image_url":
                data = part["image_url"]["url"].split("base64,", 1)[1]
    if data is None:
        return None, None
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return image.format, image.size


def _anthropic_message(body: dict, text: str) -> dict:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": dict(USAGE),
    }


def _openai_completion(body: dict, text: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": USAGE["input_tokens"],
            "completion_tokens": USAGE["output_tokens"],
            "total_tokens": USAGE["input_tokens"] + USAGE["output_tokens"],
        },
    }


def cloud_settings(**section: Any) -> CloudSettings:
    """Cloud settings from a ``cloud`` config section, validated and built the way the
    workflow builds them (the schema fills the defaults)."""
    config = validate_config({"library": "x", "cloud": section}, check_paths=False)
    return CloudSettings.from_config(config["cloud"])


def settings_for(
    api: FakeVisionApi, provider: str = "anthropic", **overrides: Any
) -> CloudSettings:
    """Cloud settings that talk to ``api`` fast (no pacing, short back-offs)."""
    fast = {"requests_per_minute": 1e6, "backoff_base_s": 0.001, "backoff_max_s": 0.01,
            "timeout_s": 5.0, "concurrency": 1, "max_retries": 3}  # fmt: skip
    section = {"provider": provider, "base_url": api.base_url(provider), **fast, **overrides}
    return cloud_settings(**section)
