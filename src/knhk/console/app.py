"""The console as an ASGI application, mounted by the service under ``/console``.

:func:`create_console` builds it (pages, sign-in, static assets from the package); :func:`bind` hands it the
service's :class:`~knhk.app.application.Application` (role-based access) and authenticator once they are open.
Every answer carries a strict Content-Security-Policy (scripts and styles from the console itself only; nothing
from a CDN), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from knhk.app.application import Application
from knhk.config import Settings
from knhk.console import login, pages, verify
from knhk.console.face import HERE, Face, SignInRequired, base_path, render
from knhk.console.oidc import OidcLogin
from knhk.console.sessions import Sessions
from knhk.errors import KnhkError
from knhk.identity.local import LocalIssuer
from knhk.identity.oidc import Authenticator

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


def create_console(settings: Settings) -> FastAPI:
    """The console's routes; serve it with :func:`bind` called once the application is open."""
    console = FastAPI(title="KNHK console", docs_url=None, redoc_url=None, openapi_url=None)
    console.state.face = None
    console.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (login, pages, verify):
        console.include_router(module.router)

    @console.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"detail": "sign in first", "code": "unauthenticated"}, status_code=401)
        return RedirectResponse(f"{base_path(request)}/login?next={quote(exc.next_path)}", status_code=303)

    @console.exception_handler(KnhkError)
    async def refused(request: Request, exc: KnhkError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        if request.url.path.endswith(".json"):
            return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.http_status,
                                headers=headers)
        response = render(request, "error.html", status_code=exc.http_status, title="Refused", error=exc,
                          reason=exc.details.get("reason"))
        if headers:
            response.headers.update(headers)
        return response

    @console.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith(f"{base_path(request)}/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return console


def bind(console: FastAPI, settings: Settings, application: Application, authenticator: Authenticator,
         sessions: Sessions | None = None) -> Face:
    """Serve ``application`` through the console (the service calls this in its start-up)."""
    oidc = None
    if settings.oidc_issuers and settings.console_oidc_client_id:
        oidc = OidcLogin(settings, authenticator)
    local = None if settings.oidc_issuers else LocalIssuer.from_settings(settings, clock=application.clock)
    face = Face(settings, application, authenticator, sessions or Sessions(settings), oidc=oidc, local=local)
    console.state.face = face
    return face
