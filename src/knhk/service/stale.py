"""Marks answers served from the last-seen fallback during a database outage (pure ASGI middleware).

A read the database could not answer but that was answered before is served from
:class:`knhk.ops.stale.LastSeen`; this middleware adds ``X-KNHK-Stale: true`` (and ``Cache-Control: no-store``)
to such a response, so it is never taken for a fresh one. Fresh answers carry neither header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from knhk.ops import stale

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = "X-KNHK-Stale"


class StaleMarker:
    """Adds ``X-KNHK-Stale: true`` to responses answered (partly) from the last-seen fallback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with stale.tracking() as marks:

            async def send_marked(message: Message) -> None:
                if message["type"] == "http.response.start" and marks:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                    headers += [(HEADER.lower().encode(), b"true"), (b"cache-control", b"no-store")]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_marked)
