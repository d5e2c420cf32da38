"""A scripted OpenAI-compatible chat-completions server on a real socket, for the LLM proposer's tests.

``POST /v1/chat/completions`` answers with the next scripted :class:`Reply` (the last one repeats when the
script runs out): a completion whose ``choices[0].message.content`` is the scripted text, a refusal, an HTTP
error status, or an answer delayed past the client's read timeout. Every request is kept (headers and parsed
body) so tests can check what the client sent (the strict ``response_format``, the bearer key, the prompt).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ChatServer", "Reply", "chat_server", "completion"]


@dataclass
class Reply:
    """One scripted answer: ``content`` of the message, or ``status`` ≠ 200 with ``body``, after ``delay_s``."""

    content: str | None = None
    status: int = 200
    delay_s: float = 0.0
    refusal: str | None = None
    finish_reason: str = "stop"
    body: str | None = None  # raw body instead of a completion
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 900, "completion_tokens": 100,
                                                                  "total_tokens": 1000})


def completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
    out: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                           "model": model, "choices": [{"index": 0, "message": message,
                                                        "finish_reason": reply.finish_reason}]}
    if reply.usage is not None:
        out["usage"] = reply.usage
    return out


class ChatServer:
    """The server's script and what it received."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, *replies: Reply) -> None:
        with self.lock:
            self.script = list(replies)

    def next_reply(self) -> Reply:
        with self.lock:
            if not self.script:
                return Reply(status=503, body='{"error": {"message": "no script"}}')
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            body = json.loads(raw)
            with server.lock:
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = server.next_reply()
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.body is not None or reply.status != 200:
                self._send(reply.status, (reply.body or '{"error": {"message": "scripted error"}}').encode())
                return
            self._send(200, json.dumps(completion(reply, str(body.get("model")))).encode())

    return Handler


@contextmanager
def chat_server() -> Iterator[ChatServer]:
    """A started server on 127.0.0.1 (an ephemeral port); ``server.url`` is its ``…/v1`` base URL."""
    state = ChatServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, name="chat-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
