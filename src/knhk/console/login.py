"""Signing in and out: OIDC (``/login/oidc`` → provider → ``/login/callback``) and, with no issuer configured,
the local development issuer's own sign-in page (``/login``, ``POST /login/local``).

Local sign-in mints a token of the local issuer and verifies it like any bearer token, so a local session is
established by the same checks as an API call. It asks for the installation's sign-in code — a random secret in
``<data_dir>/local-issuer/console-code`` (mode 0600), readable by whoever may already mint local tokens — so the
page widens nobody's access beyond what ``knhk token mint`` gives. Every sign-in starts a new session id;
failures are audited as the API's authentication failures are.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from knhk.config import Settings
from knhk.console.face import Face, check_csrf, face_of, render, safe_next, session_of
from knhk.console.sessions import LOGIN_COOKIE, LOGIN_TTL_S, SESSION_COOKIE
from knhk.errors import AuthenticationError, ConfigurationError, ForbiddenError, InvalidInputError
from knhk.identity.rbac import ROLES, Principal

router = APIRouter()


def local_code_file(settings: Settings) -> Path:
    return settings.console_code_file


def local_sign_in_code(settings: Settings) -> str:
    """The installation's local sign-in code, created (0600, never overwritten) on first use."""
    path = local_code_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(18) + "\n")
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the console sign-in code {path}: {exc}") from exc


def _cookie(response: Response, face: Face, name: str, value: str, max_age: int, path: str) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, secure=face.settings.console_cookie_secure,
                        httponly=True, samesite="lax")


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") or "/"


def _signed_in(request: Request, face: Face, principal: Principal, how: str, next_path: str) -> Response:
    """Start the session under a new id (ending any the browser had), set its cookie, go on."""
    principal = face.application.pseudonymised(principal)
    session = face.sessions.begin(principal, how=how, replacing=request.cookies.get(SESSION_COOKIE))
    face.application.record_session(principal, "session.started", how)
    response = RedirectResponse(next_path, status_code=303)
    _cookie(response, face, SESSION_COOKIE, session.id, face.settings.console_session_max_s, _root(request))
    response.delete_cookie(LOGIN_COOKIE, path=_root(request))
    return response


def _failed(request: Request, face: Face, exc: AuthenticationError) -> None:
    client = request.client.host if request.client else "unknown"
    face.application.record_authentication_failure(f"unauthenticated@{client}", "console/login", exc.message,
                                                   str(exc.details.get("reason", "unauthenticated")))


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in page: the provider's button, or the local issuer's form."""
    face = face_of(request)
    target = safe_next(request, next)
    if not face.local_mode:
        return render(request, "login.html", title="Sign in", oidc=face.oidc, next=target)
    login_id = face.sessions.start_login({"csrf": secrets.token_urlsafe(32), "next": target})
    pending = face.sessions.peek_login(login_id) or {}
    response = render(request, "login_local.html", title="Sign in (local)", login_csrf=pending.get("csrf", ""),
                      roles=ROLES, sectors=face.application.sectors(), code_file=local_code_file(face.settings))
    _cookie(response, face, LOGIN_COOKIE, login_id, LOGIN_TTL_S, _root(request))
    return response


@router.post("/login/local")
def login_local(request: Request, csrf: Annotated[str, Form()], code: Annotated[str, Form()],
                name: Annotated[str, Form(min_length=1, max_length=200)],
                roles: Annotated[list[str], Form()], sector: Annotated[str, Form()] = "",
                mfa: Annotated[str, Form()] = "") -> Response:
    """Sign in with the local development issuer (no OIDC issuer configured)."""
    face = face_of(request)
    if not face.local_mode or face.local is None:
        raise ForbiddenError("local sign-in is off: this installation trusts OIDC issuers", reason="local_off")
    pending = face.sessions.take_login(request.cookies.get(LOGIN_COOKIE))
    if pending is None or not secrets.compare_digest(csrf, str(pending.get("csrf", ""))):
        raise ForbiddenError("the sign-in form is stale or was not served here; reload it", reason="csrf")
    try:
        if not secrets.compare_digest(code.strip(), local_sign_in_code(face.settings)):
            raise AuthenticationError("wrong sign-in code", reason="local_code")
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise InvalidInputError(f"unknown role(s) {', '.join(unknown)}")
        minted = face.local.mint(roles, subject=name.strip(), sector=sector or None, mfa=bool(mfa),
                                 ttl_s=face.settings.console_session_max_s)
        principal = face.authenticator.verify(minted.token)
    except AuthenticationError as exc:
        _failed(request, face, exc)
        raise
    return _signed_in(request, face, principal, "local", str(pending.get("next") or _root(request)))


@router.get("/login/oidc")
def login_oidc(request: Request, next: str | None = None, step_up: bool = False) -> Response:
    """Start the authorization code flow (PKCE, state, nonce); ``step_up`` asks for a fresh, MFA sign-in."""
    face = face_of(request)
    if face.oidc is None:
        raise ConfigurationError("no OIDC client is configured for the console (KNHK_CONSOLE_OIDC_CLIENT_ID)")
    public = (face.settings.console_public_url or str(request.base_url)).rstrip("/")
    redirect_uri = f"{public}{request.scope.get('root_path', '')}/login/callback"
    url, pending = face.oidc.begin(redirect_uri, step_up=step_up)
    login_id = face.sessions.start_login({**pending, "next": safe_next(request, next)})
    response = RedirectResponse(url, status_code=303)
    _cookie(response, face, LOGIN_COOKIE, login_id, LOGIN_TTL_S, _root(request))
    return response


@router.get("/login/callback")
def login_callback(request: Request) -> Response:
    """The provider's answer: state checked against this browser's pending sign-in, code exchanged."""
    face = face_of(request)
    if face.oidc is None:
        raise ConfigurationError("no OIDC client is configured for the console")
    pending = face.sessions.take_login(request.cookies.get(LOGIN_COOKIE))
    try:
        if pending is None:
            raise AuthenticationError("no sign-in was started in this browser (or it took over ten minutes)",
                                      reason="no_pending_login")
        principal = face.oidc.complete(pending, dict(request.query_params))
    except AuthenticationError as exc:
        _failed(request, face, exc)
        raise
    return _signed_in(request, face, principal, "oidc", str(pending.get("next") or _root(request)))


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()]) -> Response:
    """End the session server-side: the cookie is worthless afterwards (the provider's own session is its own)."""
    face = face_of(request)
    session = session_of(request)
    check_csrf(session, csrf)
    face.sessions.end(session.id)
    face.application.record_session(session.principal, "session.ended", session.how)
    response = RedirectResponse(f"{_root(request).rstrip('/')}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_root(request))
    return response
