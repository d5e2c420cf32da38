"""What every console request needs: the application, the authenticator, the sessions, the templates; and the
two guards of a page — a live session (else to the sign-in page) and, on every POST, its CSRF token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from knhk.app.application import Application
from knhk.config import Settings
from knhk.console.oidc import OidcLogin
from knhk.console.sessions import SESSION_COOKIE, Session, Sessions
from knhk.errors import DependencyUnavailableError, ForbiddenError
from knhk.identity.local import LocalIssuer
from knhk.identity.oidc import Authenticator
from knhk.ops.clock import format_rfc3339

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
TEMPLATES.env.filters["when"] = lambda us: "—" if us is None else format_rfc3339(int(us))
TEMPLATES.env.filters["short"] = lambda value, n=12: "—" if not value else str(value)[:n]


class SignInRequired(Exception):
    """No live session: the page answers with a redirect to the sign-in page (then back to ``next``)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass
class Face:
    """The console's state in one process (bound by the service at start-up)."""

    settings: Settings
    application: Application
    authenticator: Authenticator
    sessions: Sessions
    oidc: OidcLogin | None = None
    local: LocalIssuer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def local_mode(self) -> bool:
        """No OIDC issuer configured: the local development issuer (and its own sign-in page)."""
        return not self.settings.oidc_issuers


def face_of(request: Request) -> Face:
    face: Face | None = getattr(request.app.state, "face", None)
    if face is None:
        raise DependencyUnavailableError("the console is starting", retry_after=1)
    return face


def session_of(request: Request) -> Session:
    """The request's live session (idle clock restarted), or :class:`SignInRequired`."""
    session = face_of(request).sessions.touch(request.cookies.get(SESSION_COOKIE))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.session = session
    return session


def check_csrf(session: Session, token: str | None) -> None:
    """Every POST carries the session's CSRF token (synchronizer token pattern), else 403."""
    if not token or not secrets.compare_digest(token, session.csrf):
        raise ForbiddenError("the form's CSRF token is missing or stale; reload the page and try again",
                             reason="csrf")


def base_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def safe_next(request: Request, value: str | None) -> str:
    """A same-console path to return to after sign-in (anything else becomes the overview)."""
    root = base_path(request)
    if value and value.startswith(root + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return root + "/"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    context.setdefault("title", "KNHK console")
    return TEMPLATES.TemplateResponse(request, template, {
        "session": session, "principal": session.principal if session else None,
        "csrf": session.csrf if session else "", "root": base_path(request), "quote": quote, **context,
    }, status_code=status_code)
