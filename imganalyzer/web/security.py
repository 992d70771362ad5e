"""Who may use the server and which files it may send.

* Bound to a loopback address, the server answers only requests whose Host is a loopback
  name (a web page elsewhere cannot reach it through DNS rebinding).
* Bound to another address, every request needs the access token: once as ``?token=``
  (which sets a cookie), or in the ``Authorization: Bearer`` header.
* Every POST carries the page's CSRF token (a random value per server start, only readable
  by pages of the server itself).
* Files come only from inside a given root: no ``..``, no absolute path, no symlink that
  leads out of it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
TOKEN_COOKIE = "imganalyzer_token"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def inside(root: str | Path, relative: str) -> Path | None:
    """``root / relative`` if it is an existing file inside ``root`` after resolving every
    symlink, else None."""
    if not relative or "\0" in relative or relative.startswith(("/", "\\")):
        return None
    if any(part == ".." for part in relative.replace("\\", "/").split("/")):
        return None
    try:
        base = Path(root).resolve(strict=True)
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class AccessGuard:
    """ASGI middleware: the Host check without a token, the token check with one."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._refusal(request)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        if self.token is None:
            host = (request.url.hostname or "").lower()
            if not is_loopback(host):
                return PlainTextResponse("forbidden host", status_code=403)
            return None
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        if same(bearer, self.token) or same(request.cookies.get(TOKEN_COOKIE), self.token):
            return None
        if same(request.query_params.get("token"), self.token):
            # Move the token from the address bar into a cookie.
            query = urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            )
            target = request.url.path + (f"?{query}" if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return PlainTextResponse(
            "access token required: open the address `imganalyzer serve` printed",
            status_code=401,
        )
