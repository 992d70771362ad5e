"""The application: routes, templates, static files and the access guard."""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imganalyzer.config import validate_config
from imganalyzer.web import (
    pages_explore,
    pages_images,
    pages_library,
    pages_map,
    pages_search,
    pages_timeline,
    pages_viewer,
)
from imganalyzer.web.data import ResultsData
from imganalyzer.web.faces import FaceCrops
from imganalyzer.web.pages_explore import Facets
from imganalyzer.web.pages_map import ProjectedPoints, world_frame
from imganalyzer.web.pages_search import SearchCache, TextEncoders
from imganalyzer.web.security import AccessGuard, is_loopback, new_token
from imganalyzer.web.selection import BrowseSource
from imganalyzer.web.thumbnails import ThumbnailZips

HERE = Path(__file__).parent
# Scripts and styles come only from this server; nothing is inlined, nothing is framed.
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(config: dict[str, Any], token: str | None = None) -> Starlette:
    """The web application over ``config["results"]``. ``token``: required on every
    request when given (see :mod:`imganalyzer.web.security`). ``config`` is validated (and
    its defaults filled) here too: a hand-built one gets the checks a loaded one had."""
    validate_config(config, check_paths=False)
    routes = [
        *pages_timeline.routes(),
        *pages_viewer.routes(),
        *pages_explore.routes(),
        *pages_map.routes(),
        *pages_search.routes(),
        *pages_images.routes(),
        *pages_library.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    data = ResultsData(config)
    app = Starlette(routes=routes, lifespan=_warming(data))
    app.state.data = data
    app.state.browse = BrowseSource(data)
    app.state.search_cache = SearchCache()
    app.state.facets = Facets()
    app.state.map_points = ProjectedPoints()
    app.state.face_crops = FaceCrops(data)
    app.state.thumbnail_zips = ThumbnailZips()
    app.state.csrf = secrets.token_urlsafe(24)
    app.state.encoders = TextEncoders()
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.add_middleware(AccessGuard, token=token)
    app.add_middleware(SecurityHeaders)
    return app


def _warming(
    data: ResultsData,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan that reads the manifests in a background thread as the server starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=data.warm, name="warm-manifests", daemon=True).start()
        threading.Thread(target=_warm_browse, args=(app,), name="warm-browse", daemon=True).start()
        yield

    return lifespan


def _warm_browse(app: Starlette) -> None:
    """Load the browse table and count what explore and the map show, as the server starts
    (a second or two per million images), so that no first visitor waits for it."""
    table = app.state.browse.warm()
    if table is not None:
        app.state.facets.warm(table)
        app.state.map_points.clusters(table, world_frame())


def serve(config: dict[str, Any], host: str, port: int, token: str | None) -> None:
    """Run the server until interrupted; print the address to open."""
    import uvicorn

    if not is_loopback(host) and token is None:
        token = new_token()
    app = create_app(config, token)
    address = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    if token:
        address += f"?token={token}"
    print(f"imganalyzer: serving {config['results']} at {address}", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
