"""Request guards applied before any route runs (pure ASGI middleware).

* Body size: a ``Content-Length`` over the route's limit is refused with 413 before the body is read; a
  body without a length is read up to the limit and refused with 413 beyond it (the route then sees the
  buffered body).
* Body deadline: the whole body must arrive within ``body_timeout_s`` of the request head
  (``KNHK_HTTP_BODY_TIMEOUT_S``), else ``408 Request Timeout`` (problem code ``body_timeout``) with
  ``Connection: close``, and uvicorn closes the connection: a client sending its body a byte at a time holds
  a connection and a task for that long at most (``knhk_http_timeouts_total{phase="body"}``).
* Media type: a request with a body must be ``application/json`` (or ``application/*+json``), else 415; under
  the console's path (``forms_under``) it is an HTML form (``application/x-www-form-urlencoded``) instead.
* Strict JSON: a body must be I-JSON (:mod:`knhk.ops.json_input`: no duplicate keys, no lone surrogates, no
  NaN/Infinity), else 400 naming the problem (and the duplicated ``key``) before any route parses it. The
  parsed document is left in the scope under ``PARSED_BODY`` for routes that take the body as it is (the batch
  ingest, which validates its items itself instead of parsing the body a second time).
* Metrics: every request is counted by method, route *template* and status, and timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from knhk.errors import KnhkError
from knhk.ops.json_input import loads_strict
from knhk.service import metrics
from knhk.service.problems import PROBLEM_JSON

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
PARSED_BODY = "knhk.parsed_body"  # scope key: the strictly parsed JSON body (absent for an empty body)
_WORKER = os.urandom(4).hex().encode()  # an opaque id of the worker process that answered (X-KNHK-Worker)


async def _send_problem(send: Send, status: int, detail: str, code: str, *, close: bool = False,
                        **extra: Any) -> None:
    import orjson

    body = orjson.dumps({"type": f"https://knhk.dev/problems/{code}", "title": {400: "Bad Request",
                         408: "Request Timeout", 413: "Content Too Large", 415: "Unsupported Media Type"}[status],
                         "status": status, "detail": detail, "code": code, **extra})
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuards:
    """Body-size and media-type checks plus request metrics."""

    def __init__(self, app: ASGIApp, *, default_limit: int, limits: dict[str, int], forms_under: str | None = None,
                 body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.forms_under = forms_under
        self.default_limit = default_limit
        self.limits = limits  # path → byte limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-knhk-worker", _WORKER)]
            await send(message)

        try:
            if method.encode() in _BODY_METHODS:
                refused = await self._check(scope, send_wrapper)
                if refused:
                    return
                try:
                    with anyio.fail_after(self.body_timeout_s):
                        buffered = await self._read(scope, receive)
                except TimeoutError:
                    metrics.HTTP_TIMEOUTS.labels("body").inc()
                    await _send_problem(send_wrapper, 408, f"the request body did not arrive within "
                                        f"{self.body_timeout_s:g} s", "body_timeout", close=True)
                    return
                if buffered is None:
                    await _send_problem(send_wrapper, 413, f"the request body exceeds {self._limit(scope)} bytes",
                                        "too_large")
                    return
                receive, body = buffered
                if not self._form(scope) and body.strip():
                    try:
                        scope[PARSED_BODY] = loads_strict(body)
                    except KnhkError as bad_json:
                        await _send_problem(send_wrapper, 400, bad_json.message, bad_json.code, **bad_json.details)
                        return
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.REQUESTS.labels(method, template, str(status_holder["status"])).inc()
            metrics.REQUEST_DURATION.labels(method, template).observe(time.perf_counter() - started)

    def _form(self, scope: Scope) -> bool:
        return self.forms_under is not None and str(scope["path"]).startswith(self.forms_under)

    def _limit(self, scope: Scope) -> int:
        return self.limits.get(scope["path"], self.default_limit)

    async def _check(self, scope: Scope, send: Send) -> bool:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        limit = self._limit(scope)
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size > limit:
                await _send_problem(send, 413, f"the request body of {size} bytes exceeds {limit} bytes", "too_large")
                return True
            if size == 0:
                return False
        elif b"transfer-encoding" not in headers:
            return False
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if self._form(scope):
            if ctype == b"application/x-www-form-urlencoded":
                return False
            await _send_problem(send, 415, f"send the form as application/x-www-form-urlencoded (got "
                                f"{ctype.decode('latin-1') or 'none'})", "unsupported_media_type")
            return True
        if not (ctype == b"application/json" or (ctype.startswith(b"application/") and ctype.endswith(b"+json"))):
            shown = ctype.decode("latin-1") or "none"
            await _send_problem(send, 415, f"send the body as application/json (got {shown})", "unsupported_media_type")
            return True
        return False

    async def _read(self, scope: Scope, receive: Receive) -> tuple[Receive, bytes] | None:
        """Read the whole body (at most the limit) and a replay of it; None when it is larger."""
        limit = self._limit(scope)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, body

