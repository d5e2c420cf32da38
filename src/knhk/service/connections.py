"""Connection bounds of `knhk serve` that uvicorn lacks: a deadline for the request head (SPEC §11 exhaustion).

uvicorn closes a keep-alive connection idle after an answer (``timeout_keep_alive``), but a connection that
opens and sends nothing, or sends its request head a byte at a time, is kept for ever: 2,000 of them hold
2,000 file descriptors and every worker's connection budget. :class:`BoundedHttpToolsProtocol` (uvicorn's
httptools protocol, chosen with ``uvicorn.run(http=...)``) arms a timer when a connection opens and whenever
bytes of a new request arrive after an answer; unless the request head is complete within
``KNHK_HTTP_HEADER_TIMEOUT_S`` the connection is closed — with ``408 Request Timeout`` if part of a head had
arrived, silently if nothing had. A running request is never cut by it: its body has its own deadline
(``KNHK_HTTP_BODY_TIMEOUT_S``, :class:`knhk.service.guards.RequestGuards`). Each close counts in
``knhk_http_timeouts_total{phase="head"}``.

The protocol is created by uvicorn in each worker process, so it reads its setting from the environment
(``knhk serve`` puts the configured value there) once per process.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from knhk.service import metrics

HEADER_TIMEOUT_ENV = "KNHK_HTTP_HEADER_TIMEOUT_S"
_DEFAULT_HEADER_TIMEOUT_S = 10.0
_TIMEOUT_BODY = b"the request head did not arrive in time\n"
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


@cache
def header_timeout_s() -> float:
    """The head deadline of this process (``KNHK_HTTP_HEADER_TIMEOUT_S``, default 10 s)."""
    raw = os.environ.get(HEADER_TIMEOUT_ENV)
    return float(raw) if raw else _DEFAULT_HEADER_TIMEOUT_S


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request head (see the module docstring)."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(partial=False)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(partial=True)  # the first bytes of a new request on a kept-alive connection
        elif self._head_timer is not None:
            self._head_started = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, *, partial: bool) -> None:
        self._head_started = partial
        self._head_timer = self.loop.call_later(header_timeout_s(), self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        metrics.HTTP_TIMEOUTS.labels("head").inc()
        if self._head_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()
