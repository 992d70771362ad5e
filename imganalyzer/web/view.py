"""Rendering pages: the Jinja2 templates (autoescaped) with what every page needs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from imganalyzer.web.data import ResultsData


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page from ``templates/``, given the CSRF token for its forms."""
    templates: Jinja2Templates = request.app.state.templates
    context = {"csrf": request.app.state.csrf, "active": name.removesuffix(".html"), **context}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def data_of(request: Request) -> ResultsData:
    return request.app.state.data


def not_found(request: Request, message: str) -> Response:
    return render(request, "message.html", status_code=404, title="Not found", message=message)


async def form_of(request: Request) -> dict[str, Any]:
    """The POSTed form, or PermissionError when its CSRF token is not this server's."""
    from imganalyzer.web.security import same

    form = await request.form()
    token = form.get("csrf")  # an uploaded file in its place is no token either
    if not same(token if isinstance(token, str) else None, request.app.state.csrf):
        raise PermissionError("the form's CSRF token is missing or wrong: reload the page")
    return {key: form.getlist(key) for key in form}
